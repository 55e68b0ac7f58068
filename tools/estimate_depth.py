"""Ditto step 4: a depth video of the source clip, which carries its layout and motion into generation."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel

from models.protocols import DepthEstimator
from tools.base import ArtifactRef, Tool, ToolContext, ToolError


class EstimateDepthInput(BaseModel, frozen=True, extra="forbid"):
    clip: ArtifactRef


class EstimateDepthOutput(BaseModel, frozen=True):
    depth: ArtifactRef  # float16 [T,H,W] in [0,1], near = 1
    depth_video: ArtifactRef  # the same as a grey mp4, for people and for the dataset


class EstimateDepth(Tool):
    name, version = "estimate_depth", "1"
    Input, Output = EstimateDepthInput, EstimateDepthOutput
    backend_step = "depth"
    optional = True  # without a depth backend there is no depth video (the cpu propagator reads the frames)

    def setup(self, estimator: DepthEstimator) -> None:
        self.estimator = estimator

    def __call__(self, inp: EstimateDepthInput, ctx: ToolContext) -> EstimateDepthOutput:
        frames, fps = ctx.io.read_video(inp.clip)
        depth = self.estimator.estimate(frames)
        if depth.shape != frames.shape[:3]:
            raise ToolError("tool_failed", f"depth has shape {depth.shape}, expected {frames.shape[:3]}", field="depth")
        grey = np.repeat((np.clip(depth, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=-1)
        return EstimateDepthOutput(
            depth=ctx.io.write_array(depth.astype(np.float16), kind="depth"),
            depth_video=ctx.io.write_video(grey, fps, kind="depth_video"),
        )
