"""CLIP-T and CLIP-F through transformers' CLIP classes, on the tiny random CLIP."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.tiny


def test_clip_f_is_100_for_a_still_video_and_lower_for_changing_frames() -> None:
    from models.clip_score import ClipScorer
    from models.registry import backend_id
    from models.tiny import materialize

    scorer = ClipScorer(str(materialize("clip")), device="cpu", dtype="float32")
    assert scorer.spec_id == backend_id("clip_scorer", {"kind": "clip", "path": "tiny:clip", "device": "cpu"})
    rng = np.random.default_rng(0)
    still = np.repeat(rng.integers(0, 255, (1, 40, 48, 3), dtype=np.uint8), 4, axis=0)
    changing = rng.integers(0, 255, (4, 40, 48, 3), dtype=np.uint8)
    a, b = scorer.score(still, "a rabbit in a meadow"), scorer.score(changing, "a rabbit in a meadow")
    assert set(a) == {"CLIP-T", "CLIP-F"}
    assert a["CLIP-F"] == pytest.approx(100.0, abs=1e-3) and b["CLIP-F"] < 99.9
    assert -100 <= a["CLIP-T"] <= 100 and a["CLIP-T"] != scorer.score(still, "a red car")["CLIP-T"]
