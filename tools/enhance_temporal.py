"""Ditto step 6: the temporal enhancer, a light second pass over the generated video that removes
flicker and restores detail (the paper re-noises and runs Wan2.2's low-noise expert for 4 steps). A backend
that makes fewer frames than the video holds makes them for a window of it, never stretched back
(tools/frame_window.py)."""

from __future__ import annotations

from pydantic import BaseModel

from models.protocols import VideoEnhancer
from tools.base import ArtifactRef, Tool, ToolContext, ToolError
from tools.frame_window import SourceWindow, frames_to_make, window_of, window_start


class EnhanceTemporalInput(BaseModel, frozen=True, extra="forbid"):
    video: ArtifactRef
    clip: ArtifactRef  # the source frames the video was made for: their motion guides the filter
    seed: int
    memory_level: int = 0  # raised after an out-of-memory error: half the frames per level, a tiled VAE
    keyframe_index: int = 0  # the key frame's place in the clip: a shorter window keeps it
    depth_video: ArtifactRef | None = None  # the depth video of the same frames: cut with the source


class EnhanceTemporalOutput(BaseModel, frozen=True):
    enhanced_video: ArtifactRef
    made_for: SourceWindow  # the frames of `clip` the enhanced video holds, frame for frame


class EnhanceTemporal(Tool):
    name, version = "enhance_temporal", "2"  # 2: fewer frames are made for a window of the video, never stretched
    Input, Output = EnhanceTemporalInput, EnhanceTemporalOutput
    backend_step = "enhancer"

    def setup(self, enhancer: VideoEnhancer) -> None:
        self.enhancer = enhancer

    def __call__(self, inp: EnhanceTemporalInput, ctx: ToolContext) -> EnhanceTemporalOutput:
        video, fps = ctx.io.read_video(inp.video)
        source, _ = ctx.io.read_video(inp.clip)
        if source.shape != video.shape:
            raise ToolError(
                "bad_input", f"the clip {source.shape} does not match the video {video.shape}", field="clip"
            )
        count = frames_to_make(self.enhancer.frames_made, len(video), inp.memory_level)
        start = window_start(inp.keyframe_index, len(video), count)
        window = video[start : start + count]
        # An empty prompt, as in the paper's enhancer script: the pass restores, it does not re-edit.
        enhanced = self.enhancer.enhance(
            window, source[start : start + count], prompt="", seed=inp.seed, memory_level=inp.memory_level
        )
        if enhanced.shape != window.shape:
            raise ToolError(
                "tool_failed",
                f"the enhancer returned {enhanced.shape}, expected {window.shape}",
                field="enhanced_video",
            )
        made_for = window_of(ctx, inp.clip, source, fps, inp.depth_video, inp.keyframe_index, start, count)
        return EnhanceTemporalOutput(
            enhanced_video=ctx.io.write_video(enhanced, fps, kind="enhanced_video"), made_for=made_for
        )
