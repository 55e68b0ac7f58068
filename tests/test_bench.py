"""The bench scripts run: the GPU cost script at tiny size on CPU, so it does not rot between GPU loans."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.tiny
ROOT = Path(__file__).resolve().parents[1]


def test_propagation_cost_script_runs_at_tiny_size() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.propagation_cost", "--model", "tiny", "--device", "cpu", "--dtype", "float32"]
        + ["--steps", "2", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "s/sample" in line]
    assert len(lines) == 2 and "2 steps cfg 5" in lines[0] and "4 steps cfg 1.2" in lines[1]
