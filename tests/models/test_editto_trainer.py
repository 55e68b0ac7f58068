"""Editto training on the tiny VACE model: it learns, trains only what it should, follows its curriculum,
accumulates the global batch, resumes bit-exactly from a checkpoint, starts again from a checkpoint after a
failure, trains at the configured rate after a resume, and keeps small steps in float32 on a bf16 model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = [pytest.mark.tiny, pytest.mark.slow]

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from models.editto_inputs import load_triplet  # noqa: E402
from models.editto_recipe import Curriculum  # noqa: E402
from models.editto_trainer import EdittoTrainer, sha256_file  # noqa: E402
from models.frames import consecutive, crop_resize  # noqa: E402
from models.pool import ModelPool  # noqa: E402
from models.protocols import EDITTO_TRAINING_STATE as TRAINING_STATE  # noqa: E402
from models.protocols import EDITTO_WEIGHTS as WEIGHTS  # noqa: E402
from models.protocols import CheckpointFiles, Triplet, TripletFiles  # noqa: E402
from models.registry import backend_id, build_backend  # noqa: E402
from store.video_io import encode_video, read_video  # noqa: E402


def trainer(**kw: object) -> EdittoTrainer:
    args = {
        "device": "cpu",
        "dtype": "float32",
        "lr": 3e-3,
        "height": 32,
        "width": 32,
        "num_frames": 9,
        "lora_rank": 4,
        "curriculum_end": 20,
        "eval_draws": 2,
        "edit_steps": 2,
        "guidance_scale": 1.0,
        "global_batch": 1,
        **kw,
    }
    spec = {"kind": "wan_vace", "path": "tiny:wan_vace", **args}
    built = build_backend("editto", spec, ModelPool())  # as a run builds it: its options validated
    assert built.spec_id == backend_id("editto", spec)  # what the tool declares from config, unloaded
    return built


def as_files(triplet: Triplet, folder: Path) -> TripletFiles:
    """A triplet as the store holds it: two videos and the edited key frame."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    encode_video(triplet.source, 12.0, folder / "source.mp4")
    encode_video(triplet.edited, 12.0, folder / "edited.mp4")
    cv2.imwrite(str(folder / "reference.png"), cv2.cvtColor(triplet.reference, cv2.COLOR_RGB2BGR))
    return TripletFiles(folder / "source.mp4", folder / "edited.mp4", folder / "reference.png", triplet.instruction)


@pytest.fixture(scope="module")
def triplets(tmp_path_factory: pytest.TempPathFactory) -> list[TripletFiles]:
    rng = np.random.default_rng(0)
    out, root = [], tmp_path_factory.mktemp("triplets")
    for i, text in enumerate(("invert the colours", "make it darker")):
        src = (rng.random((11, 32, 48, 3)) * 255).astype(np.uint8)  # longer and wider than Editto's 9x32x32
        edited = 255 - src if i == 0 else src // 3
        out.append(as_files(Triplet(src, edited, edited[0], text), root / str(i)))
    return out


def files(folder: Path) -> CheckpointFiles:
    return CheckpointFiles(sha256_file(folder / WEIGHTS), folder / WEIGHTS, folder / TRAINING_STATE)


def test_curriculum_schedules() -> None:
    lin, cos = Curriculum(10, 20, "linear"), Curriculum(10, 20, "cosine")
    assert [lin.drop_probability(s) for s in (0, 10, 15, 20, 99)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert cos.drop_probability(15) == pytest.approx(0.5) and cos.drop_probability(12) < lin.drop_probability(12)


def test_loss_falls_and_only_the_lora_adapters_change(triplets: list[TripletFiles]) -> None:
    t = trainer(lr=2e-2)
    sample = load_triplet(triplets[0], 9)
    before_eval = t.eval_loss(sample)
    assert t.eval_loss(sample) == before_eval  # deterministic: fixed timesteps and noise per sample
    before = {n: p.detach().clone() for n, p in t.pipe.transformer.named_parameters()}
    for _ in range(8):
        t.global_step(triplets[:1])
    assert t.eval_loss(sample) < 0.9 * before_eval
    changed = {n for n, p in t.pipe.transformer.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(t.trained)
    assert all(n.startswith("vace_blocks.") and (".lora_A." in n or ".lora_B." in n) for n in changed)
    linears = {n.split(".lora_")[0] for n in changed}  # train.sh's targets: attention q, k, v, o and both FFN linears
    assert {n.split(".", 2)[2] for n in linears} == {
        f"{attn}.{p}" for attn in ("attn1", "attn2") for p in ("to_q", "to_k", "to_v", "to_out.0")
    } | {"ffn.net.0.proj", "ffn.net.2"}


def test_checkpoint_resumes_bit_exactly(tmp_path: Path, triplets: list[TripletFiles]) -> None:
    straight = trainer(seed=3)
    losses = [straight.global_step(triplets) for _ in range(4)]
    first = trainer(seed=3)
    for _ in range(2):
        first.global_step(triplets)
    first.save(tmp_path / "ckpt")
    card = json.loads((tmp_path / "ckpt" / "card.json").read_text())
    assert card["step"] == 2 and card["reference_drop_probability"] == pytest.approx(0.1)
    resumed = trainer(seed=99)  # the checkpoint's RNG state wins over the seed
    resumed.restore(files(tmp_path / "ckpt"))
    assert [resumed.global_step(triplets) for _ in range(2)] == losses[2:]
    for name, param in resumed.trained.items():
        assert torch.equal(param, straight.trained[name])


def test_rounds_continue_from_a_checkpoint_and_base_means_base(tmp_path: Path, triplets: list[TripletFiles]) -> None:
    t = trainer(seed=5, global_batch=2)  # each step accumulates two samples
    card = t.train(triplets, 2, None, tmp_path / "r1", heldout=[triplets[1]])
    assert card["step"] == 2 and card["samples_seen"] == 4 and card["accumulation"] == 2
    assert len(card["step_losses"]) == 2 and card["mean_loss"] > 0 and len(card["heldout_flow_losses"]) == 1
    assert card["heldout_flow_losses_with_reference"] != card["heldout_flow_losses"]
    card = t.train(triplets, 1, files(tmp_path / "r1"), tmp_path / "r2")  # held in memory: no reload
    assert card["step"] == 3 and card["samples_seen"] == 6
    fresh = trainer(seed=5, global_batch=2)
    fresh.train(triplets, 1, files(tmp_path / "r1"), tmp_path / "r2b")  # another process: loads r1
    assert sha256_file(tmp_path / "r2b" / WEIGHTS) == sha256_file(tmp_path / "r2" / WEIGHTS)
    again = t.train(triplets, 2, None, tmp_path / "again", heldout=[triplets[1]])  # from the base model again
    assert sha256_file(tmp_path / "again" / WEIGHTS) == sha256_file(tmp_path / "r1" / WEIGHTS)
    assert (
        again["heldout_flow_losses"] == json.loads((tmp_path / "r1" / "card.json").read_text())["heldout_flow_losses"]
    )


def test_a_failed_round_is_retried_from_its_checkpoint(
    tmp_path: Path, triplets: list[TripletFiles], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that fails on its second step (a bad clip, out of memory) must not leave its first step in the
    model: the retry starts from the checkpoint, as a fresh process would."""
    t = trainer(seed=2)
    t.train(triplets, 2, None, tmp_path / "r1")
    real_step, taken = t.global_step, []

    def fails_on_the_second(examples: list[TripletFiles]) -> float:
        taken.append(1)
        if len(taken) == 2:
            raise RuntimeError("a bad clip")
        return real_step(examples)

    monkeypatch.setattr(t, "global_step", fails_on_the_second)
    with pytest.raises(RuntimeError, match="a bad clip"):
        t.train(triplets, 3, files(tmp_path / "r1"), tmp_path / "r2")
    monkeypatch.undo()
    card = t.train(triplets, 2, files(tmp_path / "r1"), tmp_path / "r2")
    assert card["step"] == 4
    fresh = trainer(seed=2)
    fresh.train(triplets, 2, files(tmp_path / "r1"), tmp_path / "r2b")
    assert sha256_file(tmp_path / "r2" / WEIGHTS) == sha256_file(tmp_path / "r2b" / WEIGHTS)


def test_a_resume_trains_at_the_configured_rate_and_says_what_changed(
    tmp_path: Path, triplets: list[TripletFiles], caplog: pytest.LogCaptureFixture
) -> None:
    trainer(seed=4, lr=3e-3).train(triplets, 1, None, tmp_path / "r1")
    slow = trainer(seed=4, lr=1e-5, curriculum_end=40)
    with caplog.at_level(logging.WARNING, logger="models.editto_trainer"):
        card = slow.train(triplets, 1, files(tmp_path / "r1"), tmp_path / "r2")
    assert [g["lr"] for g in slow.optimizer.param_groups] == [1e-5]
    r1, r2 = load_file(tmp_path / "r1" / WEIGHTS), load_file(tmp_path / "r2" / WEIGHTS)
    assert 0 < max((r2[n] - r1[n]).abs().max().item() for n in r1) < 5e-5  # a step of 1e-5, not of 3e-3
    saved = torch.load(tmp_path / "r1" / TRAINING_STATE, weights_only=True)
    assert saved["settings"]["lr"] == 3e-3 and saved["settings"]["curriculum"]["end_step"] == 20
    assert saved["spec"]["method"] == "lora4a4"
    assert card["changed_on_resume"]["lr"] == {"was": 3e-3, "now": 1e-5}
    assert card["changed_on_resume"]["curriculum"]["now"]["end_step"] == 40 and card["lr"] == 1e-5
    assert "lr" in caplog.text and "curriculum" in caplog.text
    with pytest.raises(ValueError, match="was trained as"):  # another LoRA rank cannot take these weights
        trainer(lora_rank=8).restore(files(tmp_path / "r1"))


def test_a_bf16_model_trains_float32_adapters_whose_small_steps_survive(triplets: list[TripletFiles]) -> None:
    t = trainer(dtype="bfloat16", lr=1e-4)
    assert all(p.dtype == torch.float32 for p in t.trained.values())
    assert t.pipe.transformer.vace_blocks[0].attn1.to_q.base_layer.weight.dtype == torch.bfloat16
    before = {n: p.detach().clone() for n, p in t.trained.items() if ".lora_A." in n}
    for _ in range(2):  # lora_B leaves zero on the first step; lora_A gets a gradient from the second
        t.global_step(triplets[:1])
    for name, old in before.items():
        large = old.abs() >= 0.0625  # where a bf16 weight's rounding step (2.4e-4 and up) exceeds a 1e-4 step
        assert large.any() and (t.trained[name][large] != old[large]).float().mean() > 0.9, name


def test_the_projections_option_keeps_a_float32_master_copy(triplets: list[TripletFiles]) -> None:
    t = trainer(dtype="bfloat16", lr=1e-4, lora_rank=None)
    before = {n: p.detach().clone() for n, p in t.pipe.transformer.named_parameters()}
    t.global_step(triplets[:1])
    changed = {n for n, p in t.pipe.transformer.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(t.trained) and all(".proj_in." in n or ".proj_out." in n for n in changed)
    assert all(t.trained[n].dtype == torch.float32 for n in changed)
    weight = next(n for n in changed if n.endswith(".weight"))
    large = before[weight].abs() >= 0.0625
    assert (t.trained[weight][large] != before[weight][large]).float().mean() > 0.9


def test_edit_from_the_instruction_alone_uses_the_checkpoint(tmp_path: Path, triplets: list[TripletFiles]) -> None:
    t = trainer(seed=1, lr=5e-2)
    source = read_video(triplets[0].source)[0]
    base = CheckpointFiles("base", Path("unused"), None)
    window, before = t.edit(source, "invert the colours", base, seed=0)
    reference = load_triplet(triplets[0], 9).reference
    with_reference = t.edit(source, "invert the colours", base, seed=0, reference=reference)[1]
    assert with_reference.shape == before.shape and not np.array_equal(with_reference, before)
    # the first 9 frames as they are, centre-cropped to 32x32: no time warp, no stretching
    assert np.array_equal(window, crop_resize(consecutive(source, 9), 32, 32))
    assert before.shape == window.shape == (9, 32, 32, 3) and before.dtype == np.uint8
    t.train(triplets, 2, None, tmp_path / "r1")
    after = t.edit(source, "invert the colours", files(tmp_path / "r1"), seed=0)[1]
    assert not np.array_equal(before, after)
    other = trainer(seed=1, lr=5e-2)  # a fresh process loads the weights named by the checkpoint
    assert np.array_equal(other.edit(source, "invert the colours", files(tmp_path / "r1"), seed=0)[1], after)


def test_a_round_that_cannot_fit_its_gpu_is_refused_before_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate is checked against the GPU's free memory before anything moves onto it (no GPU here:
    CUDA's answer is stood in for)."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (0, 80 * 2**30))
    with pytest.raises(ValueError, match=r"needs ~.* GiB estimated peak") as refused:
        trainer(device="cuda:0")
    message = str(refused.value)
    assert "\n" not in message and "cuda:0" in message and "lower backends.editto num_frames (9)" in message
