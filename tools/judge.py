"""Ditto step 7 and the key-frame gate: a judge scores an edit (0-10 per criterion, with reasons).
It scores; policy decides. An answer that does not parse is asked again, then recorded as a failure,
never passed silently."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, ValidationError, model_validator

from models.protocols import LOCAL_CATEGORIES, Judge, JudgeRequest
from tools.base import ArtifactRef, Resources, ToolContext, ToolError, Verdict
from tools.plan_instruction import parse_json_object


class JudgeConfig(BaseModel, extra="forbid"):
    parse_attempts: int = 2  # a sampled VLM answer may parse on the second try; more rarely helps


class JudgeAnswer(BaseModel, frozen=True, extra="ignore"):
    scores: dict[str, float] = Field(description="criterion -> score from 0 to 10")
    reasons: dict[str, str] = Field(default_factory=dict, description="criterion -> one short reason")

    @model_validator(mode="after")
    def scores_in_range(self) -> JudgeAnswer:
        if not self.scores:
            raise ValueError("no scores")
        bad = {k: v for k, v in self.scores.items() if not 0 <= v <= 10}
        if bad:
            raise ValueError(f"scores outside 0..10: {bad}")
        return self


class JudgeInput(BaseModel, frozen=True, extra="forbid"):
    source: ArtifactRef
    edited: ArtifactRef
    instruction: str
    target_description: str
    category: str = ""  # the edit's category: the rubric and metric judges hold local and global edits apart


def ask_judge(judge: Judge, request: JudgeRequest, attempts: int) -> Verdict:
    errors = []
    for _ in range(attempts):
        raw = judge.judge(request)
        try:
            answer = JudgeAnswer.model_validate(parse_json_object(raw))
            return Verdict(
                judge=judge.spec_id, scores=answer.scores, reasons={k: answer.reasons.get(k, "") for k in answer.scores}
            )
        except (ValueError, ValidationError) as err:
            errors.append(str(err).splitlines()[0])
    raise ToolError("llm_schema", f"the judge's answer did not parse in {attempts} tries: {errors}", field="answer")


class JudgeKeyframe:
    name: ClassVar[str] = "judge_keyframe"
    version: ClassVar[str] = "1"
    templates: ClassVar[tuple[str, ...]] = ("judge_keyframe.j2",)
    Input, Output = JudgeInput, Verdict

    def __init__(self, judge: Judge, config: JudgeConfig, resources: Resources) -> None:
        self.judge, self.config, self.resources, self.backend_id = judge, config, resources, judge.spec_id

    def __call__(self, inp: JudgeInput, ctx: ToolContext) -> Verdict:
        prompt = ctx.render(
            "judge_keyframe.j2",
            instruction=inp.instruction,
            target_description=inp.target_description,
            category=inp.category,
            local=inp.category in LOCAL_CATEGORIES,
        )
        request = JudgeRequest(
            source=ctx.io.read_image(inp.source),
            edited=ctx.io.read_image(inp.edited),
            prompt=prompt,
            instruction=inp.instruction,
            category=inp.category or None,
        )
        return ask_judge(self.judge, request, self.config.parse_attempts)


class JudgeVideo:
    name: ClassVar[str] = "judge_video"
    version: ClassVar[str] = "1"
    templates: ClassVar[tuple[str, ...]] = ("judge_video.j2",)
    Input, Output = JudgeInput, Verdict

    def __init__(self, judge: Judge, config: JudgeConfig, resources: Resources) -> None:
        self.judge, self.config, self.resources, self.backend_id = judge, config, resources, judge.spec_id

    def __call__(self, inp: JudgeInput, ctx: ToolContext) -> Verdict:
        prompt = ctx.render(
            "judge_video.j2",
            instruction=inp.instruction,
            target_description=inp.target_description,
            category=inp.category,
            local=inp.category in LOCAL_CATEGORIES,
        )
        source, _ = ctx.io.read_video(inp.source)
        edited, _ = ctx.io.read_video(inp.edited)
        if source.shape != edited.shape:
            raise ToolError(
                "bad_input", f"edited video {edited.shape} does not match the source {source.shape}", field="edited"
            )
        request = JudgeRequest(
            source=source, edited=edited, prompt=prompt, instruction=inp.instruction, category=inp.category or None
        )
        return ask_judge(self.judge, request, self.config.parse_attempts)
