"""propagate keeps the tool contract; a key frame outside the clip is bad input naming keyframe_index, and
a video of the wrong shape is tool_failed naming edited_video."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from tests.contracts import Bench, Failure, ToolContract, set_up_on
from tools.propagate import Propagate, PropagateInput


class DropsFrames:
    spec_id = "drops-frames"

    def frames_made(self, frames: int) -> int:
        return frames

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
            (set_up_on(Propagate(), DropsFrames()), good, "tool_failed", "edited_video"),
        ]

    def test_the_video_has_the_source_shape(self, bench: Bench) -> None:
        out = bench.run("propagate", self.good_input(bench))
        source, _ = bench.io.read_video(bench.ingested.clip)
        assert bench.io.read_video(out.edited_video)[0].shape == source.shape

    def test_a_lower_memory_level_makes_half_the_frames_as_a_window_of_the_clip(self, bench: Bench) -> None:
        """On the cpu path: 5 of the 9 frames, from the key frame on, at the clip's rate; the source frames the
        video was made for come with it, so the sample's source and edit hold the same frames."""
        out = bench.run("propagate", self.good_input(bench).model_copy(update={"memory_level": 1}))
        source, fps = bench.io.read_video(bench.ingested.clip)
        window, window_fps = bench.io.read_video(out.made_for.clip)
        edited, _ = bench.io.read_video(out.edited_video)
        made = out.made_for
        assert (made.start, made.frames, made.of, made.keyframe_index) == (0, 5, 9, 0)
        assert edited.shape == window.shape == (5, *source.shape[1:]) and window_fps == fps
        assert np.abs(window.astype(int) - source[:5]).mean() < 2  # the same frames, encoded once more
        whole = bench.run("propagate", self.good_input(bench)).made_for
        assert (whole.clip, whole.frames, whole.of) == (bench.ingested.clip, 9, 9)
