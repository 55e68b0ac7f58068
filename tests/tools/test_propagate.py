"""propagate keeps the tool contract; a key frame outside the clip is bad input naming keyframe_index, and
a video of the wrong shape is tool_failed naming edited_video."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from tests.contracts import Bench, Failure, ToolContract
from tools.base import Resources
from tools.propagate import Propagate, PropagateInput


class DropsFrames:
    spec_id = "drops-frames"

    def propagate(self, source: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        return source[::2]


class TestPropagate(ToolContract):
    tool_name = "propagate"

    def good_input(self, bench: Bench) -> BaseModel:
        return PropagateInput(
            clip=bench.ingested.clip,
            edited_keyframe=bench.edited_keyframe,
            keyframe_index=bench.ingested.keyframe_index,
            depth=None,
            prompt="A black and white video.",
            seed=1,
        )

    def failures(self, bench: Bench) -> list[Failure]:
        good = self.good_input(bench)
        return [
            (bench.tool("propagate"), good.model_copy(update={"keyframe_index": 99}), "bad_input", "keyframe_index"),
            (Propagate(DropsFrames(), Resources()), good, "tool_failed", "edited_video"),
        ]

    def test_the_video_has_the_source_shape(self, bench: Bench) -> None:
        out = bench.run("propagate", self.good_input(bench))
        source, _ = bench.io.read_video(bench.ingested.clip)
        assert bench.io.read_video(out.edited_video)[0].shape == source.shape
