"""What a first hour meets, each said in one line on the terminal with what to do: a damaged ditto.db (named,
whatever command opens it), a report on an install without matplotlib."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import run_main

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("command", [[], ["traces"]])  # the run, and a command that reads the store
def test_a_damaged_store_is_named_with_what_to_do(command: list[str], finished_run: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(finished_run, tmp_path / "out"))
    db = out / "ditto.db"
    with sqlite3.connect(db) as conn:  # the rows into the file, from the write-ahead log
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    data[4096:-4096] = b"\xff" * (len(data) - 8192)  # every page but the header's and the last overwritten
    db.write_bytes(data)
    done = run_main(*command, "--out", str(out))
    assert done.returncode == 1 and not done.stderr, done.stderr[-3000:]
    assert done.stdout.count("\n") == 1, done.stdout
    assert done.stdout.startswith(f"error: {db} is damaged (database disk image is malformed): restore it from")
    assert f"sqlite3 {db} .recover" in done.stdout


def test_a_report_without_matplotlib_says_so_on_the_terminal(run_copy: Path) -> None:
    """The report still works on the base install; only the HTML said its plots were missing."""
    done = run_main("report", "--out", str(run_copy), without=("matplotlib",))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 plots in" in done.stdout
    assert "No plots: matplotlib is not installed (pip install -e '.[report]')." in done.stdout
