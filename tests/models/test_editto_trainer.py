"""Editto training on the tiny VACE model: it learns, trains only what it should, follows its curriculum,
and resumes bit-exactly from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = [pytest.mark.tiny, pytest.mark.slow]

import torch  # noqa: E402

from models.editto_trainer import Curriculum, EdittoTrainer, sha256_file  # noqa: E402
from models.protocols import EDITTO_TRAINING_STATE as TRAINING_STATE  # noqa: E402
from models.protocols import EDITTO_WEIGHTS as WEIGHTS  # noqa: E402
from models.protocols import CheckpointFiles, Triplet  # noqa: E402
from models.tiny import materialize  # noqa: E402


def trainer(**kw: object) -> EdittoTrainer:
    args = {
        "device": "cpu",
        "dtype": "float32",
        "lr": 3e-3,
        "height": 32,
        "width": 32,
        "num_frames": 9,
        "curriculum_end": 20,
        "edit_steps": 2,
        "guidance_scale": 1.0,
        **kw,
    }
    return EdittoTrainer(str(materialize("wan_vace")), **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def triplets() -> list[Triplet]:
    rng = np.random.default_rng(0)
    out = []
    for i, text in enumerate(("invert the colours", "make it darker")):
        src = (rng.random((9, 32, 32, 3)) * 255).astype(np.uint8)
        edited = 255 - src if i == 0 else src // 3
        out.append(Triplet(src, edited, edited[0], text))
    return out


def test_curriculum_schedules() -> None:
    lin, cos = Curriculum(10, 20, "linear"), Curriculum(10, 20, "cosine")
    assert [lin.drop_probability(s) for s in (0, 10, 15, 20, 99)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert cos.drop_probability(15) == pytest.approx(0.5) and cos.drop_probability(12) < lin.drop_probability(12)


def test_loss_falls_and_only_context_projections_change(triplets: list[Triplet]) -> None:
    t = trainer()
    before_eval = [t.eval_loss(tr) for tr in triplets]
    before = {n: p.detach().clone() for n, p in t.pipe.transformer.named_parameters()}
    for step in range(40):
        t.train_step(triplets[step % 2])
    after_eval = [t.eval_loss(tr) for tr in triplets]
    assert np.mean(after_eval) < 0.8 * np.mean(before_eval)
    changed = {n for n, p in t.pipe.transformer.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(t.trained) and all(".proj_in." in n or ".proj_out." in n for n in changed)


def test_checkpoint_resumes_bit_exactly(tmp_path: Path, triplets: list[Triplet]) -> None:
    straight = trainer(seed=3)
    losses = [straight.train_step(triplets[i % 2]) for i in range(6)]
    first = trainer(seed=3)
    for i in range(3):
        first.train_step(triplets[i % 2])
    first.save(tmp_path / "ckpt")
    card = json.loads((tmp_path / "ckpt" / "card.json").read_text())
    assert card["step"] == 3 and card["reference_drop_probability"] == pytest.approx(0.15)
    resumed = trainer(seed=99)  # the checkpoint's RNG state wins over the seed
    resumed.restore(files(tmp_path / "ckpt"))
    assert [resumed.train_step(triplets[i % 2]) for i in range(3, 6)] == losses[3:]
    for name, param in resumed.trained.items():
        assert torch.equal(param, straight.trained[name])


def files(folder: Path) -> CheckpointFiles:
    return CheckpointFiles(sha256_file(folder / WEIGHTS), folder / WEIGHTS, folder / TRAINING_STATE)


def test_rounds_continue_from_a_checkpoint_and_base_means_base(tmp_path: Path, triplets: list[Triplet]) -> None:
    t = trainer(seed=5)
    card = t.train(triplets, 4, None, tmp_path / "r1")
    assert card["step"] == 4 and card["mean_loss"] > 0
    card = t.train(triplets, 3, files(tmp_path / "r1"), tmp_path / "r2")  # held in memory: no reload
    assert card["step"] == 7 and card["samples_seen"] == 7
    fresh = trainer(seed=5)
    fresh.train(triplets, 3, files(tmp_path / "r1"), tmp_path / "r2b")  # another process: loads r1
    assert sha256_file(tmp_path / "r2b" / WEIGHTS) == sha256_file(tmp_path / "r2" / WEIGHTS)
    t.train(triplets, 4, None, tmp_path / "again")  # from the base model: the same as the first round
    assert sha256_file(tmp_path / "again" / WEIGHTS) == sha256_file(tmp_path / "r1" / WEIGHTS)


def test_edit_from_the_instruction_alone_uses_the_checkpoint(tmp_path: Path, triplets: list[Triplet]) -> None:
    t = trainer(seed=1, lr=5e-2)
    source = triplets[0].source[:7, :20, :24]  # any size and length: Editto fits its output back to it
    before = t.edit(source, "invert the colours", CheckpointFiles("base", Path("unused"), None), seed=0)
    t.train(triplets, 3, None, tmp_path / "r1")
    after = t.edit(source, "invert the colours", files(tmp_path / "r1"), seed=0)
    assert before.shape == after.shape == source.shape and before.dtype == np.uint8
    assert not np.array_equal(before, after)
    other = trainer(seed=1, lr=5e-2)  # a fresh process loads the weights named by the checkpoint
    assert np.array_equal(other.edit(source, "invert the colours", files(tmp_path / "r1"), seed=0), after)


def test_lora_option_trains_only_adapters(triplets: list[Triplet]) -> None:
    t = trainer(lora_rank=4)
    base = {n: p.detach().clone() for n, p in t.pipe.transformer.named_parameters() if "lora_" not in n}
    assert t.trained and all(".lora_A." in n or ".lora_B." in n for n in t.trained)
    for step in range(3):
        t.train_step(triplets[step % 2])
    assert all(torch.equal(p, base[n]) for n, p in t.pipe.transformer.named_parameters() if n in base)
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in t.trained.items() if ".lora_B." in n)
