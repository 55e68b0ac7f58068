"""enhance_temporal keeps the tool contract; a video of the wrong shape is tool_failed naming
enhanced_video."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from tests.contracts import Bench, Failure, ToolContract
from tools.base import Resources
from tools.enhance_temporal import EnhanceTemporal, EnhanceTemporalInput


class OneFrame:
    spec_id = "one-frame"

    def enhance(self, video: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        return video[:1]


class TestEnhanceTemporal(ToolContract):
    tool_name = "enhance_temporal"

    def good_input(self, bench: Bench) -> BaseModel:
        return EnhanceTemporalInput(video=bench.edited_video, clip=bench.ingested.clip, seed=1)

    def failures(self, bench: Bench) -> list[Failure]:
        return [(EnhanceTemporal(OneFrame(), Resources()), self.good_input(bench), "tool_failed", "enhanced_video")]

    def test_keeps_the_video_shape(self, bench: Bench) -> None:
        out = bench.run("enhance_temporal", self.good_input(bench))
        video, _ = bench.io.read_video(bench.edited_video)
        assert bench.io.read_video(out.enhanced_video)[0].shape == video.shape
