"""A text-only cpu run on the default clips: subtitles are burned in where the key frame has them and stay
there in every frame, however the scene moves under them (issue 21: they used to slide with the scene)."""

from __future__ import annotations

import json

import pytest

from agent.quotas import default_categories
from agent.runner import Factory
from models.cpu.overlay import edit_region
from store.video_io import read_video

pytestmark = pytest.mark.slow


def test_a_text_only_run_accepts_subtitles_that_stay_where_they_are(small_config) -> None:  # type: ignore[no-untyped-def]
    others = {name: {"target": 0, "min_share": 0} for name in default_categories() if name != "text"}
    config = small_config(categories=others)
    assert Factory(config).execute().totals.accepted >= 2
    for record_path in (config.out / "dataset").glob("*/record.json"):
        record = json.loads(record_path.read_text())
        assert record["category"] == "text" and record["scores"]["video"]["region_stability"] >= 7
        source, edited = (read_video(record_path.parent / name)[0] for name in ("source.mp4", "edited.mp4"))
        # The changed region of each frame (changed pixels, the strip's holes filled, the codec's noise left out)
        # against the first frame's: the subtitle on its strip, in the same place in every frame.
        regions = [edit_region(s, e) for s, e in zip(source, edited, strict=True)]
        assert 0.05 < regions[0].mean() < 0.4
        overlaps = [(r & regions[0]).sum() / (r | regions[0]).sum() for r in regions]
        assert min(overlaps) >= 0.9, (record["instruction"], [round(x, 2) for x in overlaps])
