"""The report's scale bench, at CI's size: a small cpu run cloned to 60 episodes, the report written, and its
first render and a filter timed in Debian's Chromium (where it is installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_the_report_bench_writes_and_renders_a_cloned_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.report_scale", "--episodes", "60", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = dict(line.strip().split(": ") for line in done.stdout.splitlines())
    assert figures["episodes"] == "60" and float(figures["report written s"]) > 0
    if Path("/usr/bin/chromium").is_file():
        assert float(figures["first render s"]) > 0 and float(figures["filter s"]) > 0
