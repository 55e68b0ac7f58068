"""enhance_temporal keeps the tool contract; a video of the wrong shape is tool_failed naming
enhanced_video."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from tests.contracts import Bench, Failure, ToolContract, set_up_on
from tools.enhance_temporal import EnhanceTemporal, EnhanceTemporalInput


class OneFrame:
    spec_id = "one-frame"

    def frames_made(self, frames: int) -> int:
        return frames

    def enhance(self, video: np.ndarray, *args: object, **kwargs: object) -> np.ndarray:
        return video[:1]


class TestEnhanceTemporal(ToolContract):
    tool_name = "enhance_temporal"

    def good_input(self, bench: Bench) -> BaseModel:
        return EnhanceTemporalInput(video=bench.edited_video, clip=bench.ingested.clip, seed=1)

    def failures(self, bench: Bench) -> list[Failure]:
        return [(set_up_on(EnhanceTemporal(), OneFrame()), self.good_input(bench), "tool_failed", "enhanced_video")]

    def test_keeps_the_video_shape(self, bench: Bench) -> None:
        out = bench.run("enhance_temporal", self.good_input(bench))
        video, _ = bench.io.read_video(bench.edited_video)
        assert bench.io.read_video(out.enhanced_video)[0].shape == video.shape

    def test_a_lower_memory_level_enhances_a_window_around_the_key_frame(self, bench: Bench) -> None:
        inp = self.good_input(bench).model_copy(update={"memory_level": 1, "keyframe_index": 4})
        out = bench.run("enhance_temporal", inp)
        made = out.made_for
        assert (made.start, made.frames, made.of, made.keyframe_index) == (2, 5, 9, 2)  # centred on the key frame
        video, _ = bench.io.read_video(bench.edited_video)
        assert bench.io.read_video(out.enhanced_video)[0].shape == bench.io.read_video(made.clip)[0].shape
        assert bench.io.read_video(out.enhanced_video)[0].shape == (5, *video.shape[1:])
