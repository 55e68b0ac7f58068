"""The command line: one module per command (main.py puts them together), each parsing its flags and calling
a plain function in agent/ or store/; render.py turns their records into text for a terminal."""
