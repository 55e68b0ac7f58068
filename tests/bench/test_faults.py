"""The fault bench runs whole, at CI's size (its hostile-planner step once crashed unseen, and RESULTS.md's
figures could not be made again): every kill, bad input, hostile answer and bad flag it injects must leave
nothing lost, duplicated or charged twice, and each must be refused by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_the_fault_bench_finds_no_fault_at_ci_size() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.faults", "--quick", "--kills", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = {name: int(value) for name, value in (line.rsplit(None, 1) for line in done.stdout.splitlines())}
    assert figures["kills survived"] == 1
    assert figures["bad inputs refused by name"] == figures["bad inputs that should be refused"] == 7
    assert figures["bad flags refused in one line naming the flag"] == figures["bad flags tried"] >= 5
    assert figures["planner answers re-asked"] > 0 and figures["planner fallbacks to the rule planner"] > 0
    for zero in (
        "runs crashed by bad input",
        "runs left behind by bad flags",
        "samples lost",
        "duplicates",
        "double charges",
        "bad artifacts",
        "decisions differ",
        "episodes lost to the planner",
        "hostile planner text kept",
    ):
        assert figures[zero] == 0, zero
