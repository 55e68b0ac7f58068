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


def test_flops_are_counted_on_the_meta_device_at_real_size() -> None:
    from bench import meta_flops

    one, two = (meta_flops.wan_forward("tiny", frames, 32, 32, True) for frames in (3, 6))
    assert two > one > 0  # more tokens, more work (the 512 text tokens' cost is the same in both)
    grid = meta_flops.vl_grid(468, 832, 16, 448 * 448)
    flops, decode_bytes = meta_flops.qwen_vl_call([grid], 100, 10)
    assert flops > 2 * 7e9 * (grid[0] * grid[1] * grid[2] // 4)  # at least 2 FLOPs per LM weight per token
    assert decode_bytes == pytest.approx(10 * 2 * 7.6e9, rel=0.02)  # every bf16 LM weight read per answer token
