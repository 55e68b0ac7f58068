"""estimate_depth keeps the tool contract. No cpu profile runs it (the cpu propagator reads structure from
the frames), so its backend here is brightness as depth, a plain DepthEstimator."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from tests.contracts import Bench, Failure, ToolContract, set_up_on
from tools.base import Tool
from tools.estimate_depth import EstimateDepth, EstimateDepthInput


class BrightnessDepth:
    spec_id = "brightness-depth"

    def estimate(self, frames: np.ndarray) -> np.ndarray:
        grey = frames.mean(axis=-1, dtype=np.float32)
        return (grey - grey.min()) / max(float(np.ptp(grey)), 1e-6)


class OneFrameDepth(BrightnessDepth):
    def estimate(self, frames: np.ndarray) -> np.ndarray:
        return super().estimate(frames)[:1]


class TestEstimateDepth(ToolContract):
    tool_name = "estimate_depth"

    def make_tool(self, bench: Bench) -> Tool:
        return set_up_on(EstimateDepth(), BrightnessDepth())

    def good_input(self, bench: Bench) -> BaseModel:
        return EstimateDepthInput(clip=bench.ingested.clip)

    def failures(self, bench: Bench) -> list[Failure]:
        return [(set_up_on(EstimateDepth(), OneFrameDepth()), self.good_input(bench), "tool_failed", "depth")]

    def test_depth_is_one_map_per_frame_in_0_1_and_a_grey_video(self, bench: Bench) -> None:
        out = self.make_tool(bench)(self.good_input(bench), bench.context())
        frames, _ = bench.io.read_video(bench.ingested.clip)
        depth = bench.io.read_array(out.depth)
        assert depth.shape == frames.shape[:3] and depth.min() >= 0 and depth.max() <= 1
        assert bench.io.read_video(out.depth_video)[0].shape == frames.shape
