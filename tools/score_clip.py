"""The held-out evaluation's automatic scores, by the paper's metric names: CLIP-T (the edited video against
its target description) and CLIP-F (consecutive edited frames against each other), beside the VLM judge."""

from __future__ import annotations

from pydantic import BaseModel

from models.protocols import VideoTextScorer
from tools.base import ArtifactRef, Tool, ToolContext, ToolError


class ScoreClipInput(BaseModel, frozen=True, extra="forbid"):
    video: ArtifactRef
    text: str  # the target description


class ScoreClipOutput(BaseModel, frozen=True):
    scores: dict[str, float]  # CLIP-T and CLIP-F, x100 as the paper reports them


class ScoreClip(Tool):
    name, version = "score_clip", "1"
    Input, Output = ScoreClipInput, ScoreClipOutput
    backend_step = "clip_scorer"
    optional = True  # without a CLIP backend the held-out evaluation has the judge's scores alone
    used_in = ("training",)

    def setup(self, scorer: VideoTextScorer) -> None:
        self.scorer = scorer

    def __call__(self, inp: ScoreClipInput, ctx: ToolContext) -> ScoreClipOutput:
        frames, _ = ctx.io.read_video(inp.video)
        if not inp.text.strip():
            raise ToolError("bad_input", "no target description to score the video against", field="text")
        return ScoreClipOutput(scores=self.scorer.score(frames, inp.text))
