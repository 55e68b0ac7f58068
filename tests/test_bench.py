"""The documented bench commands run, in their quick modes, so that a template, config or model change can
never break one unseen: FLOPs of both presets, the policy simulation, and the GPU cost script at tiny size on
CPU (each takes seconds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.tiny
ROOT = Path(__file__).resolve().parents[1]


def bench(module: str, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.splitlines()


def test_gpu_cost_script_times_every_stage_of_both_presets_at_tiny_size(tmp_path: Path) -> None:
    log = tmp_path / "gpu_costs.log"
    cpu = ["--size", "tiny", "--device", "cpu", "--dtype", "float32", "--quantization", "none", "--repeats", "1"]
    lines = bench("gpu_costs", "--preset", "paper", "fast", *cpu, "--log", str(log))
    timed = [line.split()[:2] for line in lines if "per call" in line]
    stages = ("propagate", "enhance_temporal", "edit_keyframe")
    assert timed == [[p, s] for s in stages for p in ("paper", "fast")] + [["both", "judge_video"]]
    # The paper preset runs CFG (two passes a step); the fast one does not, and its enhancer runs one step.
    assert "x 8 " in next(x for x in lines if x.startswith("paper  propagate"))
    assert "x 4 " in next(x for x in lines if x.startswith("fast   propagate"))
    assert "x 1 " in next(x for x in lines if x.startswith("fast   enhance_temporal"))
    assert log.read_text().splitlines() == [x for x in lines if x.strip()]  # the raw log holds what it printed


def test_flops_quick_counts_every_stage_of_both_presets() -> None:
    lines = bench("flops", "--quick")
    rows = [line for line in lines if line.startswith("| tiny |")]
    tools = ("caption_clip", "edit_keyframe", "propagate", "enhance_temporal", "judge_keyframe", "estimate_depth")
    assert len(rows) == 2 * (len(tools) + 1)  # and judge_video
    assert any("4 steps CFG 1, FP8" in r for r in rows) and any("4 steps CFG 1.2 |" in r for r in rows)
    assert sum(line.startswith("| all | resident") for line in lines) == 2
    assert lines[-1].endswith("nothing written (--quick)")


def test_policy_quick_ends_with_the_recommended_policys_cost() -> None:
    lines = bench("policy", "--setting", "paper", "--preset", "fast", "--quick")
    assert lines[-1].startswith("GPU-min per accepted: ") and float(lines[-1].split(": ")[1]) > 0
    assert any(line.startswith("| key-frame \\ video |") for line in lines)  # the sensitivity table beside it


def test_flops_are_counted_on_the_meta_device_at_real_size() -> None:
    from bench import meta_flops

    one, two = (meta_flops.wan_forward("tiny", frames, 32, 32, True) for frames in (3, 6))
    assert two.total > one.total > 0  # more tokens, more work (the 512 text tokens' cost is the same in both)
    assert 0 < one.fp8 < one.total  # the block linears, not attention or the embedders
    grid = meta_flops.vl_grid(56, 112, 2, 448 * 448)  # a small image: the vision tower's windows cost time here
    flops, decode_bytes = meta_flops.qwen_vl_call([grid], 100, 10)
    assert flops > 2 * 7e9 * (grid[0] * grid[1] * grid[2] // 4)  # at least 2 FLOPs per LM weight per token
    assert decode_bytes == pytest.approx(10 * 2 * 7.6e9, rel=0.02)  # every bf16 LM weight read per answer token
