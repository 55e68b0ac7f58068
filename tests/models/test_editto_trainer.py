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

from models.editto_trainer import Curriculum, EdittoTrainer, Triplet  # noqa: E402
from models.tiny import materialize  # noqa: E402


def trainer(**kw: object) -> EdittoTrainer:
    args = {
        "device": "cpu",
        "dtype": "float32",
        "lr": 3e-3,
        "height": 32,
        "width": 32,
        "num_frames": 9,
        "curriculum": Curriculum(0, 20),
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
    resumed.load(tmp_path / "ckpt")
    assert [resumed.train_step(triplets[i % 2]) for i in range(3, 6)] == losses[3:]
    for name, param in resumed.trained.items():
        assert torch.equal(param, straight.trained[name])
