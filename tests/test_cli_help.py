"""--help reads right in an 80-column terminal: the main job needs no command word, flags take no value, and
descriptions are paragraphs, not the docstrings' line breaks."""

from __future__ import annotations

from typer.testing import CliRunner

from main import app


def test_help_in_80_columns_shows_flags_as_flags_and_the_main_job_without_a_command() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    assert result.exit_code == 0
    text = result.output
    assert "[OPTIONS] [COMMAND [ARGS]...]" in text and "Without a command it runs the factory" in " ".join(text.split())
    flags = [line for line in text.splitlines() if any(f in line for f in ("--new-run", "--print-config", "-v "))]
    assert len(flags) == 3 and not any("<bool>" in line for line in flags), flags
    # The traces command's docstring breaks after "per"; the help wraps at the terminal's width instead.
    assert any("figures per edit category, what the" in line for line in text.splitlines()), text
