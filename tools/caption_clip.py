"""Ditto step 2a: a dense description of the source clip, which the planner writes the instruction from."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from models.protocols import Captioner
from tools.base import ArtifactRef, Resources, ToolContext, ToolError


class CaptionClipInput(BaseModel, frozen=True, extra="forbid"):
    clip: ArtifactRef


class CaptionClipOutput(BaseModel, frozen=True):
    caption: str


class CaptionClip:
    name: ClassVar[str] = "caption_clip"
    version: ClassVar[str] = "1"
    templates: ClassVar[tuple[str, ...]] = ("caption_clip.j2",)
    Input, Output = CaptionClipInput, CaptionClipOutput

    def __init__(self, captioner: Captioner, resources: Resources) -> None:
        self.captioner, self.resources, self.backend_id = captioner, resources, captioner.spec_id

    def __call__(self, inp: CaptionClipInput, ctx: ToolContext) -> CaptionClipOutput:
        frames, fps = ctx.io.read_video(inp.clip)
        prompt = ctx.render("caption_clip.j2", num_frames=len(frames), fps=round(fps, 2))
        caption = self.captioner.caption(frames, fps, prompt).strip()
        if not caption:
            raise ToolError("llm_schema", "the captioner returned an empty description", field="caption")
        return CaptionClipOutput(caption=caption[:2000])
