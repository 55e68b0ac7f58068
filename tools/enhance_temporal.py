"""Ditto step 6: the temporal enhancer, a light second pass over the generated video that removes
flicker and restores detail (the paper re-noises and runs Wan2.2's low-noise expert for 4 steps)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from models.protocols import VideoEnhancer
from tools.base import ArtifactRef, Resources, ToolContext, ToolError


class EnhanceTemporalInput(BaseModel, frozen=True, extra="forbid"):
    video: ArtifactRef
    clip: ArtifactRef  # the source: its motion guides the filter
    seed: int
    memory_level: int = 0  # raised after an out-of-memory error: fewer frames, a tiled VAE


class EnhanceTemporalOutput(BaseModel, frozen=True):
    enhanced_video: ArtifactRef


class EnhanceTemporal:
    name: ClassVar[str] = "enhance_temporal"
    version: ClassVar[str] = "1"
    templates: ClassVar[tuple[str, ...]] = ()
    Input, Output = EnhanceTemporalInput, EnhanceTemporalOutput

    def __init__(self, enhancer: VideoEnhancer, resources: Resources) -> None:
        self.enhancer, self.resources, self.backend_id = enhancer, resources, enhancer.spec_id

    def __call__(self, inp: EnhanceTemporalInput, ctx: ToolContext) -> EnhanceTemporalOutput:
        video, fps = ctx.io.read_video(inp.video)
        source, _ = ctx.io.read_video(inp.clip)
        # An empty prompt, as in the paper's enhancer script: the pass restores, it does not re-edit.
        enhanced = self.enhancer.enhance(video, source, prompt="", seed=inp.seed, memory_level=inp.memory_level)
        if enhanced.shape != video.shape:
            raise ToolError(
                "tool_failed", f"the enhancer returned {enhanced.shape}, expected {video.shape}", field="enhanced_video"
            )
        return EnhanceTemporalOutput(enhanced_video=ctx.io.write_video(enhanced, fps, kind="enhanced_video"))
