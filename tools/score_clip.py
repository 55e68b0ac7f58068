"""The held-out evaluation's automatic scores, by the paper's metric names: CLIP-T (the edited video against
its target description) and CLIP-F (consecutive edited frames against each other), beside the VLM judge."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from models.protocols import VideoTextScorer
from tools.base import ArtifactRef, Resources, ToolContext, ToolError


class ScoreClipInput(BaseModel, frozen=True, extra="forbid"):
    video: ArtifactRef
    text: str  # the target description


class ScoreClipOutput(BaseModel, frozen=True):
    scores: dict[str, float]  # CLIP-T and CLIP-F, x100 as the paper reports them


class ScoreClip:
    name: ClassVar[str] = "score_clip"
    version: ClassVar[str] = "1"
    templates: ClassVar[tuple[str, ...]] = ()
    Input, Output = ScoreClipInput, ScoreClipOutput

    def __init__(self, scorer: VideoTextScorer, resources: Resources) -> None:
        self.scorer, self.resources, self.backend_id = scorer, resources, scorer.spec_id

    def __call__(self, inp: ScoreClipInput, ctx: ToolContext) -> ScoreClipOutput:
        frames, _ = ctx.io.read_video(inp.video)
        if not inp.text.strip():
            raise ToolError("bad_input", "no target description to score the video against", field="text")
        return ScoreClipOutput(scores=self.scorer.score(frames, inp.text))
