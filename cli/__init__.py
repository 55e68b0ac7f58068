"""What the command line shows: rich tables, the progress bar and trace printing. main.py parses flags and
calls into agent/store; this package turns their records into text for a terminal."""
