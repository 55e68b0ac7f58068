"""The pieces of Editto's recipe that need no model: DiffSynth's Wan timesteps and loss weights, the frames
Editto sees, and the memory estimate that refuses a round that cannot fit (docs/training.md's table is its output)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from models.editto_memory import ModelSize, TrainingShape, estimate, refusal  # noqa: E402
from models.editto_recipe import FlowMatchSchedule  # noqa: E402
from models.frames import consecutive, crop_resize  # noqa: E402

TRAINING_PAGE = Path(__file__).parents[2] / "docs" / "training.md"


@pytest.mark.slow
def test_timesteps_and_loss_weights_are_diffsynths_for_wan() -> None:
    from diffsynth.diffusion.flow_match import FlowMatchScheduler

    theirs = FlowMatchScheduler("Wan")
    theirs.set_timesteps(1000, training=True)  # what DiffSynth's training module does
    ours = FlowMatchSchedule()
    torch.testing.assert_close(ours.sigmas.float(), theirs.sigmas.float())
    torch.testing.assert_close(ours.timesteps.float(), theirs.timesteps.float())
    torch.testing.assert_close(ours.weights.float(), theirs.linear_timesteps_weights.float(), rtol=1e-5, atol=1e-5)
    assert ours.sigmas.mean() > 0.6  # shifted toward noise: plain uniform sigma would average 0.5
    draws = [ours.draw(torch.Generator().manual_seed(s)) for s in range(3)]
    assert all(d.timestep == pytest.approx(d.sigma * 1000) for d in draws)
    assert FlowMatchSchedule(1.0, "none").weights.unique().tolist() == [1.0]


def test_editto_sees_the_first_frames_crop_resized() -> None:
    clip = np.arange(11 * 32 * 48 * 3, dtype=np.uint64).reshape(11, 32, 48, 3).astype(np.uint8)
    assert np.array_equal(consecutive(clip, 9), clip[:9])  # motion at its own speed, not spread over the clip
    assert len(consecutive(clip[:7], 9)) == 5  # a shorter clip: the longest 4k+1 run it has
    assert np.array_equal(crop_resize(clip, 32, 32), clip[:, :, 8:40])  # the middle, not a squeezed whole
    wide = crop_resize(clip[:1], 16, 8)  # scaled to cover, then cropped: 2:1 from 3:2
    assert wide.shape == (1, 8, 16, 3)


MODEL = ModelSize(
    transformer_params=17_000_000_000,
    text_encoder_params=5_700_000_000,
    vae_params=127_000_000,
    dim=5120,
    ffn_dim=13824,
    num_layers=40,
    vace_blocks=8,
    patch=(1, 2, 2),
    block_params=404_000_000,
    outside_blocks_params=235_000_000,
)


def shape(**kw: object) -> TrainingShape:
    args = {"height": 480, "width": 832, "num_frames": 73, "trained_values": 122_683_392, "lora": True}
    return TrainingShape(**{**args, "gradient_checkpointing": True, "offload_text_encoder": True, **kw})  # type: ignore[arg-type]


def test_the_memory_estimate_refuses_in_one_line_naming_what_to_change() -> None:
    ours = estimate(MODEL, shape())
    assert ours.tokens == 20 * 30 * 52  # 19 latent frames + the reference, 480/16 x 832/16
    assert 60 < ours.peak_gib < 80
    assert refusal(MODEL, shape(), "cuda:0", free_gib=79.0, total_gib=79.2) is None
    without = estimate(MODEL, shape(gradient_checkpointing=False))
    assert without.activations_gib > 5 * ours.activations_gib
    line = refusal(MODEL, shape(gradient_checkpointing=False), "cuda:0", free_gib=139.0, total_gib=139.8)
    assert line and "\n" not in line and "gradient_checkpointing: true" in line and "cuda:0" in line
    kept = estimate(MODEL, shape(offload_text_encoder=False))
    assert kept.weights_gib - ours.weights_gib == pytest.approx(5.7e9 * 2 / 2**30)
    line = refusal(
        MODEL, shape(offload_text_encoder=False, workers=64), "cuda:0", free_gib=ours.peak_gib / 3, total_gib=79.2
    )
    assert line and "offload_text_encoder: true" in line
    line = refusal(MODEL, shape(), "cuda:1", free_gib=10.0, total_gib=10.0)
    assert line and "num_frames (73)" in line


def test_sharding_splits_weights_and_training_state_and_a_refusal_names_the_width_that_fits() -> None:
    one, eight = estimate(MODEL, shape()), estimate(MODEL, shape(workers=8))
    # a worker holds 1/8 of the transformer, plus the two blocks and the rest it gathers whole while they run
    gathered = (2 * MODEL.block_params + MODEL.outside_blocks_params) * 7 / 8 * 2 / 2**30
    assert eight.weights_gib == pytest.approx(one.weights_gib - 17e9 * 2 * 7 / 8 / 2**30 + gathered)
    assert eight.training_state_gib == pytest.approx(one.training_state_gib / 8)
    assert eight.activations_gib == one.activations_gib  # one sample a worker, whatever the width
    line = refusal(MODEL, shape(), "cuda:0", free_gib=40.0, total_gib=40.0)
    widths = [n for n in range(2, 65) if estimate(MODEL, shape(workers=n)).peak_gib <= 40.0]
    assert line and "\n" not in line and f"--gpus {widths[0]}" in line and widths[0] > 2
    assert refusal(MODEL, shape(workers=widths[0]), "cuda:0", free_gib=40.0, total_gib=40.0) is None
    dividing = next(n for n in widths if 64 % n == 0)  # a width must split the global batch evenly
    line = refusal(MODEL, shape(), "cuda:0", free_gib=40.0, total_gib=40.0, global_batch=64)
    assert line and f"--gpus {dividing}" in line and (dividing == widths[0] or f"--gpus {widths[0]}" not in line)


def test_the_training_page_shows_what_the_estimate_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from models.editto_memory import main

    main([])  # python -m models.editto_memory, as docs/training.md says
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("| Editto, Wan2.1-VACE-14B")
    assert printed in TRAINING_PAGE.read_text(encoding="utf-8")


def test_a_round_the_cluster_cannot_hold_is_refused_in_one_line_naming_the_width_that_fits() -> None:
    """8 GPUs, one of them the train_editto actor's (its held-out evaluation's, --executor ray): 8 workers do not
    fit beside it; the line says so and names the widest round that fits and divides the global batch."""
    from models.editto_parallel import room_refusal

    gpu_worker, total = {"GPU": 1.0, "CPU": 1.0}, {"GPU": 8.0, "CPU": 64.0}
    free, actor = {"GPU": 7.0, "CPU": 40.0}, {"GPU": 1.0}
    line = room_refusal(8, 64, gpu_worker, free, total, actor)
    assert line is not None and "\n" not in line
    assert "needs 8 GPU free and the Ray cluster has 7 (8 in all" in line and "1 of them this round's own" in line
    assert "set backends.editto workers to 4" in line and "pools.<tool>.actors" in line
    assert room_refusal(4, 64, gpu_worker, free, total, actor) is None
    no_cpu_left = room_refusal(2, 2, {"CPU": 0.0}, {"CPU": 0.0}, {"CPU": 2.0}, {})
    assert no_cpu_left is not None and "train on 1 device" in no_cpu_left
