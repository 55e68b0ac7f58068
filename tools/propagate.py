"""Ditto step 5: the edited video, generated from the edited key frame (reference), the depth video
(structure) and the target description (prompt)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from models.protocols import VideoPropagator
from tools.base import ArtifactRef, Resources, ToolContext, ToolError


class PropagateInput(BaseModel, frozen=True, extra="forbid"):
    clip: ArtifactRef
    edited_keyframe: ArtifactRef
    keyframe_index: int
    depth: ArtifactRef | None
    prompt: str
    seed: int
    memory_level: int = 0  # raised after an out-of-memory error: fewer frames generated, a tiled VAE
    # Weight of the control video (the depth) in the generation: the edit category's, lowered on a retry after
    # the video judge named a shape criterion. None: no control video.
    control_strength: float | None = Field(None, ge=0, le=1)
    category: str = ""  # the edit's category: what kind of edit is carried (a subtitle stays on screen)


class PropagateOutput(BaseModel, frozen=True):
    edited_video: ArtifactRef


class Propagate:
    name: ClassVar[str] = "propagate"
    version: ClassVar[str] = "2"  # 2: control strength and category
    templates: ClassVar[tuple[str, ...]] = ()
    Input, Output = PropagateInput, PropagateOutput

    def __init__(self, propagator: VideoPropagator, resources: Resources) -> None:
        self.propagator, self.resources, self.backend_id = propagator, resources, propagator.spec_id

    def __call__(self, inp: PropagateInput, ctx: ToolContext) -> PropagateOutput:
        source, fps = ctx.io.read_video(inp.clip)
        if not 0 <= inp.keyframe_index < len(source):
            raise ToolError(
                "bad_input", f"key frame {inp.keyframe_index} is outside {len(source)} frames", field="keyframe_index"
            )
        depth = ctx.io.read_array(inp.depth).astype("float32") if inp.depth else None
        video = self.propagator.propagate(
            source,
            ctx.io.read_image(inp.edited_keyframe),
            inp.keyframe_index,
            depth,
            inp.prompt,
            inp.seed,
            memory_level=inp.memory_level,
            control_strength=inp.control_strength,
            category=inp.category,
        )
        if video.shape != source.shape:
            raise ToolError(
                "tool_failed", f"the propagator returned {video.shape}, expected {source.shape}", field="edited_video"
            )
        return PropagateOutput(edited_video=ctx.io.write_video(video, fps, kind="edited_video"))
