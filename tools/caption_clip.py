"""Ditto step 2a: a dense description of the source clip, which the planner writes the instruction from."""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel, Field, create_model

from models.protocols import Captioner, CaptionRequest, Correction, ModelReply
from tools.answers import AnswerError, ask_until_valid, parsed, reply_of
from tools.base import ArtifactRef, Tool, ToolContext, ToolError
from tools.judge import text_pattern

FIRST_CHAR = r'[^\x00-\x20"\\]'  # a caption starts with something visible


class CaptionClipConfig(BaseModel, extra="forbid"):
    # Bounds the answer, so a model decoding under the schema always closes it within max_new_tokens.
    max_chars: int = Field(1000, ge=1)
    # Tries of an answer that does not validate (the re-ask names its problems), as tools.judge.parse_attempts.
    parse_attempts: int = Field(2, ge=1)


class CaptionClipInput(BaseModel, frozen=True, extra="forbid"):
    clip: ArtifactRef


class CaptionClipOutput(BaseModel, frozen=True):
    caption: str


def caption_answer(max_chars: int) -> type[BaseModel]:
    """The captioner's answer, {"caption": "..."}: one line of text; its JSON schema is what the
    captioner decodes under, and the same model parses the answer."""
    text = (str, Field(pattern=text_pattern(max_chars, first=FIRST_CHAR)))
    return create_model("CaptionAnswer", __config__={"extra": "forbid"}, caption=text)


class CaptionClip(Tool):
    name, version = "caption_clip", "3"  # 3: an answer that does not parse is re-asked with its problems named
    Input, Output = CaptionClipInput, CaptionClipOutput
    templates = ("caption_clip.j2", "answer.reask.j2")
    backend_step, config_section = "captioner", "caption_clip"
    config: CaptionClipConfig

    def setup(self, captioner: Captioner) -> None:
        self.captioner = captioner
        self.answer = caption_answer(self.config.max_chars)

    def __call__(self, inp: CaptionClipInput, ctx: ToolContext) -> CaptionClipOutput:
        frames, fps = ctx.io.read_video(inp.clip)
        # A captioner that reads no prompt (the metric one) gets none, and the trace shows none.
        prompt = (
            ctx.render(
                "caption_clip.j2",
                num_frames=len(frames),
                fps=round(fps, 2),
                frames_shown=min(self.captioner.frames_shown, len(frames)),
            )
            if self.captioner.reads_prompts
            else ""
        )
        request = CaptionRequest(frames, fps, prompt, answer_schema=self.answer.model_json_schema())

        def ask(corrections: tuple[Correction, ...]) -> ModelReply:
            asked = dataclasses.replace(request, corrections=corrections)
            return reply_of(lambda: self.captioner.caption(asked), ctx, "captioner")

        try:
            answer = ask_until_valid(
                ask,
                lambda text: parsed(self.answer, text),
                self.config.parse_attempts - 1,
                ctx,
                lambda problems: ctx.render("answer.reask.j2", problems=problems),
            )
        except AnswerError as err:
            raise ToolError(
                "llm_schema", f"the captioner's answer does not fit the schema: {err}", field="caption"
            ) from err
        return CaptionClipOutput(caption=answer.caption)  # type: ignore[attr-defined]
