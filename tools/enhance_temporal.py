"""Ditto step 6: the temporal enhancer, a light second pass over the generated video that removes
flicker and restores detail (the paper re-noises and runs Wan2.2's low-noise expert for 4 steps). A backend
that makes fewer frames than the video holds makes them for a window of it, never stretched back
(tools/frame_window.py)."""

from __future__ import annotations

from pydantic import BaseModel

from models.protocols import LatentEnhancer, VideoEnhancer, VideoLatents
from tools.base import ArtifactRef, Tool, ToolContext, ToolError
from tools.frame_window import SourceWindow, frames_to_make, window_of, window_start
from tools.video_latents import HandedLatents, taken


class EnhanceTemporalInput(BaseModel, frozen=True, extra="forbid"):
    video: ArtifactRef
    clip: ArtifactRef  # the source frames the video was made for: their motion guides the filter
    seed: int
    memory_level: int = 0  # raised after an out-of-memory error: half the frames per level, a tiled VAE
    keyframe_index: int = 0  # the key frame's place in the clip: a shorter window keeps it
    depth_video: ArtifactRef | None = None  # the depth video of the same frames: cut with the source
    # The latents `video` was decoded from (propagate's output): the enhancer starts from them where it can,
    # instead of encoding the video again.
    latents: HandedLatents | None = None


class EnhanceTemporalOutput(BaseModel, frozen=True):
    enhanced_video: ArtifactRef
    made_for: SourceWindow  # the frames of `clip` the enhanced video holds, frame for frame


class EnhanceTemporal(Tool):
    # 2: fewer frames are made for a window of the video, never stretched; 3: from the propagation's latents
    name, version = "enhance_temporal", "3"
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
        latents, why_not = self.handed_latents(inp, ctx, start, count)
        ctx.usage["started_from"] = "the propagation's latents" if latents else f"the video, encoded: {why_not}"
        # An empty prompt, as in the paper's enhancer script: the pass restores, it does not re-edit.
        if latents is not None and isinstance(self.enhancer, LatentEnhancer):
            height, width = window.shape[1:3]
            enhanced = self.enhancer.enhance_latents(
                latents, height, width, prompt="", seed=inp.seed, memory_level=inp.memory_level
            )
        else:
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

    def handed_latents(
        self, inp: EnhanceTemporalInput, ctx: ToolContext, start: int, count: int
    ) -> tuple[VideoLatents | None, str]:
        """The handed latents the enhancer starts from, or None and why it encodes the video instead."""
        handed = inp.latents
        if handed is None:
            return None, "no latents handed (a propagator without them, or its call made before they were)"
        if not isinstance(self.enhancer, LatentEnhancer):
            return None, f"the enhancer {self.enhancer.spec_id} does not start from latents"
        if handed.video != inp.video:
            return None, "the latents are of another video"
        if (start, count) != (0, handed.frames):
            return None, f"frames {start}-{start + count - 1} enhanced, the latents are of all {handed.frames}"
        latents = taken(ctx, handed)
        why_not = self.enhancer.latents_refused(latents)
        return (None, why_not) if why_not else (latents, "")
