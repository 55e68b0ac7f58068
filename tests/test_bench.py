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


@pytest.mark.slow
def test_gpu_cost_script_times_every_part_of_every_stage_and_the_whole_calls_at_tiny_size(tmp_path: Path) -> None:
    """The fast preset (the paper preset's CFG passes are counted by tests/models/test_fast_preset.py)."""
    log = tmp_path / "gpu_costs.log"
    cpu = ["--size", "tiny", "--device", "cpu", "--dtype", "float32", "--quantization", "none", "--repeats", "1"]
    lines = bench("gpu_costs", "--preset", "fast", *cpu, "--log", str(log))
    timed = [line.split()[:2] for line in lines if "runs [" in line]
    wan = [["fast", s] for s in ("propagate", "enhance_temporal") for _ in range(4)]  # text, pass, VAE, whole call
    assert timed == wan + [["fast", "edit_keyframe"]] * 2 + [["every", "judge_video"]]
    assert "4 transformer passes a call" in next(x for x in lines if x.startswith("fast   propagate"))
    assert "1 transformer pass a call" in next(x for x in lines if x.startswith("fast   enhance_temporal"))
    # The fast preset's SageAttention cannot run on a CPU: PyTorch's runs, and the line says so.
    assert next(x for x in lines if x.startswith("fast   propagate")).split()[2] == "native,"
    # What a call runs once under way: VACE's control video and reference frame encoded (its blank half cached),
    # the enhancer started from the propagation's latents (the fast preset hands them), so it only decodes.
    wan_lines = [x for x in lines if x.startswith(("fast   propagate", "fast   enhance_temporal")) and "runs [" in x]
    vae = [x[25:71].strip() for x in wan_lines if " VAE " in x]
    assert vae == ["VAE encodes + decode", "VAE decode (latents handed on)"]
    whole = [x for x in lines if "whole call" in x]
    assert len(whole) == 2 and all("sum of parts" in x for x in whole)  # each Wan call beside its parts
    assert log.read_text().splitlines() == [x for x in lines if x.strip()]  # the raw log holds what it printed


@pytest.mark.slow
def test_flops_quick_counts_every_stage_of_every_preset() -> None:
    lines = bench("flops", "--quick")
    tools = ("caption_clip", "plan_instruction", "edit_keyframe", "propagate", "enhance_temporal", "judge_keyframe")
    rows = [
        line for line in lines if line.startswith(tuple(f"| {t} |" for t in (*tools, "estimate_depth", "judge_video")))
    ]
    assert len(rows) == 4 * (len(tools) + 2)  # fast, fast_480p, paper, full
    assert any("4 steps CFG 1, FP8, SageAttention" in r for r in rows) and any("4 steps CFG 1.2 |" in r for r in rows)
    assert sum(line.startswith("| all | resident") for line in lines) == 4
    assert lines[-1].endswith("nothing written (--quick)")


@pytest.mark.slow
def test_policy_quick_ends_with_the_shipped_policys_cost_naming_the_card() -> None:
    lines = bench("policy", "--setting", "paper", "--preset", "fast", "--quick")
    figure, what = lines[-1].removeprefix("GPU-min per accepted: ").split(" ", 1)
    assert float(figure) > 0 and what == "(the shipped policy; fast preset, 1280x720x101, one H200 SXM)"
    assert lines[0].startswith("The shipped policy (the full profile's) with the fast preset (configs/fast.yaml")
    assert any(line.startswith("| key-frame \\ video |") for line in lines)  # the sensitivity table below it


def test_a_setting_the_preset_does_not_run_is_refused_naming_the_presets_that_do() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.policy", "--setting", "ours", "--preset", "fast", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2
    assert "--setting ours: the fast preset runs 1280x720x101; at that size: ['fast_480p', 'full']" in result.stderr


def test_flops_are_counted_on_the_meta_device_at_real_size() -> None:
    from bench import meta_flops

    one, two = (meta_flops.wan_forward("tiny", frames, 32, 32, True) for frames in (3, 6))
    assert two.total > one.total > 0  # more tokens, more work (the 512 text tokens' cost is the same in both)
    assert 0 < one.fp8 < one.total  # the block linears, not attention or the embedders
    assert 0 < one.attention < one.total - one.fp8 and two.attention > 2 * one.attention  # self-attention: quadratic
    grid = meta_flops.vl_grid(56, 112, 2, 448 * 448)  # a small image: the vision tower's windows cost time here
    flops, decode_bytes = meta_flops.qwen_vl_call([grid], 100, 10)
    assert flops.total > 2 * 7e9 * (grid[0] * grid[1] * grid[2] // 4)  # at least 2 FLOPs per LM weight per token
    assert 0 < flops.decode < flops.total and flops.attention == flops.vae == 0
    assert decode_bytes == pytest.approx(10 * 2 * 7.6e9, rel=0.02)  # every bf16 LM weight read per answer token


def test_the_gpu_script_splits_a_pass_by_kind_of_work() -> None:
    """What MFU per kind of work divides by: a pass's matmul and attention time, here as CPU time."""
    import argparse

    import torch
    from diffusers import WanTransformer3DModel

    from bench.gpu_costs import Bench
    from bench.meta_flops import TRANSFORMERS, wan_inputs

    bench = Bench(argparse.Namespace(device="cpu", dtype="float32", repeats=1, call_repeats=0, size="tiny"), None)
    model = bench.built(lambda: WanTransformer3DModel(**TRANSFORMERS["tiny"]))
    inputs = {
        k: torch.zeros(v.shape) if isinstance(v, torch.Tensor) else v
        for k, v in wan_inputs("tiny", 3, 32, 32, False).items()
    }
    split = bench.split_by_kind(lambda: model(**inputs))
    assert split["bf16 matmul"] > 0 and split["attention"] > 0 and split["fp8 matmul"] == 0


@pytest.mark.slow
def test_editto_rounds_quick_prints_each_gpu_count_and_the_evaluation() -> None:
    lines = bench("editto_rounds", "--quick", "--gpus", "1", "8")
    assert lines[0].startswith("Editto round, full profile: 8 steps x 64 samples")
    assert [line.split(" | ")[1] for line in lines if line.startswith("| 1 |") or line.startswith("| 8 |")] == [
        "1 x 1 x 64",
        "8 x 1 x 8",
    ]
    assert lines[-1].startswith("held-out evaluation after it, on one GPU: 16 samples")
