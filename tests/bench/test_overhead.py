"""The orchestration bench runs the real run loop with tools that do nothing, and LangGraph alone beside it:
its command, at CI's size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_measures_the_run_loop_and_the_langgraph_floor() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.overhead", "--episodes", "12", "--concurrency", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 2 |")]
    cells = [c.strip() for c in rows[0].strip().strip("|").split("|")]
    assert cells[:2] == ["2", "12"]  # concurrency, episodes finished
    assert all(float(c) > 0 for c in cells[2:])
    floor = next(line for line in done.stdout.splitlines() if line.startswith("LangGraph alone"))
    assert float(floor.split(": ")[1].split(" ms")[0]) > 0
