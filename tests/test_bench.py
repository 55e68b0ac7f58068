"""The GPU cost script runs at tiny size on CPU, so that it does not rot between GPU loans."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.tiny
ROOT = Path(__file__).resolve().parents[1]


def gpu_costs(*args: str) -> list[str]:
    tiny = ["--model", "tiny", "--device", "cpu", "--dtype", "float32"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpu_costs", *tiny, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if "s/sample" in line]


def test_gpu_cost_script_runs_every_stage_at_tiny_size() -> None:
    lines = gpu_costs("--steps", "2", "4", "--attention", "native")
    assert len(lines) == 2 and "2 steps cfg 5" in lines[0] and "4 steps cfg 1.2" in lines[1]
    assert "strength 0.1 of 40" in gpu_costs("--stage", "enhance")[0]
    assert "judge qwen2.5-vl" in gpu_costs("--stage", "judge")[0]
