"""Ditto step 7 and the key-frame gate: a judge scores an edit (0-10 per criterion, with reasons).
It scores; policy decides. The judge decodes under the answer's JSON schema, so a model's answer parses;
one that still does not (an endpoint that refused structured output) is asked again with its problems named,
then recorded as a failure, never passed silently."""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from models.protocols import LOCAL_CATEGORIES, Correction, Judge, JudgeRequest, ModelReply
from tools.answers import AnswerError, ask_until_valid, parsed, reply_of
from tools.base import ArtifactRef, Tool, ToolContext, ToolError, Verdict

# A rubric template names its criteria in a header line, `{# criteria: a, b #}`: the answer schema requires
# exactly those, so a rubric edited or overridden to score something else changes the schema with it.
CRITERIA_HEADER = re.compile(r"\{#\s*criteria:([^#]*)#\}")
CRITERION = re.compile(r"[a-z][a-z0-9_]*")


def text_pattern(max_chars: int, first: str = "") -> str:
    """One line of JSON-safe text (no control characters, quotes or backslashes), at most max_chars long.
    A pattern, not maxLength: the grammar engine's maxLength lets raw control characters through, which
    strict JSON refuses; the pattern is read the same way by the grammar and by pydantic."""
    body = r'[^\x00-\x1f"\\]'
    return f"^{first}{body}{{{0 if first else 1},{max_chars - 1 if first else max_chars}}}$"


class JudgeConfig(BaseModel, extra="forbid"):
    # Tries of an answer that does not validate (the re-ask names its problems); one fixes most slips of a model
    # that could not decode under the schema, more rarely helps.
    parse_attempts: int = Field(2, ge=1)
    # One short reason per criterion. The bound makes every answer finite, so a model decoding under the
    # schema always closes it within the backend's max_new_tokens (see docs/judges.md).
    max_reason_chars: int = Field(200, ge=1)


Score = Annotated[float, Field(ge=0, le=10)]


class JudgeAnswer(BaseModel, frozen=True, extra="forbid"):
    """A verdict as the judge writes it: a score from 0 to 10 and one reason for every criterion of the
    rubric, and nothing else. `for_criteria` makes the model of one rubric; its JSON schema is what the
    judge decodes under, and the same model parses the answer."""

    scores: BaseModel
    reasons: BaseModel

    @staticmethod
    @lru_cache(maxsize=32)
    def for_criteria(criteria: tuple[str, ...], max_reason_chars: int) -> type[JudgeAnswer]:
        # Fields are named c0, c1, ... with the criterion as alias: a criterion may be any snake_case name,
        # even one that would shadow a pydantic attribute (`copy`, `schema`).
        strict = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)
        reason = Annotated[str, Field(pattern=text_pattern(max_reason_chars))]
        scores = create_model(
            "Scores", __config__=strict, **{f"c{i}": (Score, Field(alias=c)) for i, c in enumerate(criteria)}
        )
        reasons = create_model(
            "Reasons", __config__=strict, **{f"c{i}": (reason, Field(alias=c)) for i, c in enumerate(criteria)}
        )
        return create_model("JudgeAnswer", __base__=JudgeAnswer, scores=(scores, ...), reasons=(reasons, ...))

    def verdict(self, judge: str) -> Verdict:
        return Verdict(judge=judge, scores=self.scores.model_dump(), reasons=self.reasons.model_dump())


def listed_criteria(template_text: str) -> tuple[str, ...]:
    """The criteria a template's header names, in order (none without a header)."""
    header = CRITERIA_HEADER.search(template_text)
    return tuple(c.strip() for c in header.group(1).split(",") if c.strip()) if header else ()


def rubric_criteria(ctx: ToolContext, template: str) -> tuple[str, ...]:
    source = ctx.prompts.source(template)
    criteria = listed_criteria(source.text)
    if not criteria or not all(CRITERION.fullmatch(c) for c in criteria) or len(set(criteria)) < len(criteria):
        raise ToolError(
            "bad_input",
            f"template {source.path} must name its criteria once each, in snake_case, in a header line such as "
            "{# criteria: instruction_fidelity, safety #}",
            field="template",
        )
    return criteria


def answer_model(judge: Judge, ctx: ToolContext, template: str, config: JudgeConfig) -> type[JudgeAnswer]:
    """The schema of this call's answer: the rubric's criteria, or the metric judge's own."""
    criteria = judge.criteria or rubric_criteria(ctx, template)
    return JudgeAnswer.for_criteria(tuple(criteria), config.max_reason_chars)


class JudgeInput(BaseModel, frozen=True, extra="forbid"):
    source: ArtifactRef
    edited: ArtifactRef
    instruction: str
    target_description: str
    category: str = ""  # the edit's category: the rubric and metric judges hold local and global edits apart


def ask_judge(
    judge: Judge, request: JudgeRequest, answer: type[JudgeAnswer], attempts: int, ctx: ToolContext
) -> Verdict:
    """The judge's verdict, asked up to `attempts` times. A backend that decodes under request.answer_schema
    always parses; the re-asks are for one that cannot (an endpoint that refused structured output)."""

    def ask(corrections: tuple[Correction, ...]) -> ModelReply:
        return reply_of(lambda: judge.judge(dataclasses.replace(request, corrections=corrections)), ctx, "judge")

    try:
        verdict = ask_until_valid(
            ask,
            lambda text: parsed(answer, text),
            attempts - 1,
            ctx,
            lambda problems: ctx.render("answer.reask.j2", problems=problems),
        )
    except AnswerError:
        errors = [p for r in ctx.usage["rejected"] for p in r["problems"]]
        raise ToolError(
            "llm_schema", f"the judge's answer did not parse in {attempts} tries: {errors}", field="answer"
        ) from None
    return verdict.verdict(judge.spec_id)


def score_edit(
    judge: Judge, config: JudgeConfig, ctx: ToolContext, template: str, inp: JudgeInput, source: Any, edited: Any
) -> Verdict:
    """Both judges: the rubric rendered for the edit's category, the answer's schema from its criteria, the
    verdict asked for. A judge that reads no rubric (a metric judge, with criteria of its own) gets none: none is
    rendered, so the trace shows no prompt its verdict did not come from, and none is in its calls' keys."""
    prompt = ""
    if judge.reads_prompts:
        prompt = ctx.render(
            template,
            instruction=inp.instruction,
            target_description=inp.target_description,
            category=inp.category,
            local=inp.category in LOCAL_CATEGORIES,
            frames_shown=min(judge.frames_shown, len(source)) if source.ndim == 4 else 0,  # a video's frames as images
        )
    answer = answer_model(judge, ctx, template, config)
    request = JudgeRequest(
        source=source,
        edited=edited,
        prompt=prompt,
        instruction=inp.instruction,
        category=inp.category or None,
        answer_schema=answer.model_json_schema(),
    )
    return ask_judge(judge, request, answer, config.parse_attempts, ctx)


class JudgeKeyframe(Tool):
    name, version = "judge_keyframe", "3"  # 3: an answer that does not parse is re-asked with its problems named
    Input, Output = JudgeInput, Verdict
    templates = ("judge_keyframe.j2", "answer.reask.j2")
    backend_step, config_section = "keyframe_judge", "judge"
    config: JudgeConfig

    def setup(self, judge: Judge) -> None:
        self.judge = judge

    def __call__(self, inp: JudgeInput, ctx: ToolContext) -> Verdict:
        source, edited = ctx.io.read_image(inp.source), ctx.io.read_image(inp.edited)
        return score_edit(self.judge, self.config, ctx, "judge_keyframe.j2", inp, source, edited)


class JudgeVideo(Tool):
    name, version = "judge_video", "3"  # 3: an answer that does not parse is re-asked with its problems named
    Input, Output = JudgeInput, Verdict
    templates = ("judge_video.j2", "answer.reask.j2")
    backend_step, config_section = "video_judge", "judge"
    used_in = ("episode", "training")  # a training round's held-out evaluation too
    config: JudgeConfig

    def setup(self, judge: Judge) -> None:
        self.judge = judge

    def __call__(self, inp: JudgeInput, ctx: ToolContext) -> Verdict:
        source, _ = ctx.io.read_video(inp.source)
        edited, _ = ctx.io.read_video(inp.edited)
        if source.shape != edited.shape:
            raise ToolError(
                "bad_input", f"edited video {edited.shape} does not match the source {source.shape}", field="edited"
            )
        return score_edit(self.judge, self.config, ctx, "judge_video.j2", inp, source, edited)
