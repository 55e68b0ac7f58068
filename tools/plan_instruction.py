"""Ditto step 2b: an edit instruction and a description of the edited result, written from the caption.
With judge feedback it rewrites a rejected instruction. The answer is data: validated, never executed.

An answer that fails validation is re-asked with the problems named, a bounded number of times; then the
rule planner answers instead, and the output says so. A bad answer never fails the call; an unreachable
endpoint does, and so does a rule planner with no edit of the asked category left that fits the clip
(category_unfit: the episode is planned in its next category)."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import unicodedata
from typing import Any, ClassVar

from pydantic import BaseModel, Field, ValidationError, field_validator

from models.cpu.rule_planner import RulePlanner
from models.protocols import CategoryUnfitError, Correction, Planner, PlannerUnavailableError, PlanReply, PlanRequest
from tools.base import Resources, ToolContext, ToolError


class PlanInstructionConfig(BaseModel, extra="forbid"):
    """The planner's settings. Which categories it writes, and their mix, are the agent's (RunConfig.categories)."""

    # Re-asks after an answer fails validation. One fixes most slips (a stray sentence, a near-miss
    # category); a model that fails three times in a row is not converging, and the rule planner answers.
    max_reasks: int = Field(2, ge=0)


class PlanInstructionInput(BaseModel, frozen=True, extra="forbid"):
    caption: str
    category: str  # the one edit category asked for
    category_description: str  # what the category means, from the taxonomy in config
    clip_seed: int
    slot: int
    avoid: tuple[str, ...] = ()  # instructions already used on this clip, by any of its episodes
    feedback: str | None = None  # the judge's reasons when rewriting a rejected instruction
    previous_instruction: str | None = None


# Planner text lands in CSV cells, HTML reports, other models' prompts and shell sessions that copy it:
# none of these belong in an edit instruction, so an answer carrying one is re-asked, never cleaned up.
FORBIDDEN_TEXT = (
    (re.compile(r"<\s*/?\s*[A-Za-z!?][^>]*>"), "markup (an HTML or XML tag)"),
    (re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}"), "template syntax ({{ }}, {% %} or {# #})"),
    (re.compile(r"\$\(|\$\{|`|;|\||&&"), "shell metacharacters ($( ), ${ }, backticks, ;, | or &&)"),
    (re.compile(r"\.\.[/\\]|(?:^|[\s\"'(=])~?/[\w.-]|\b[A-Za-z]:\\"), "a file path"),
    (re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://|\bwww\.", re.IGNORECASE), "a URL"),
)
FORMULA_PREFIXES = ("=", "+", "-", "@")  # a spreadsheet opening metadata.csv would run the cell as a formula
SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")  # "e.g. " counts as an end too: the bound is loose enough
MAX_INSTRUCTION_SENTENCES = 2
MAX_TARGET_SENTENCES = 5  # a target may restate the caption (two or three sentences) and add the edit
FORMULA_PROBLEM = "starts with =, +, - or @ (read as a spreadsheet formula)"


def text_problems(value: str, max_sentences: int) -> list[str]:
    """What makes `value` unfit as natural-language planner text; empty when it is fit."""
    problems = [f"contains {what}" for pattern, what in FORBIDDEN_TEXT if pattern.search(value)]
    if value.startswith(FORMULA_PREFIXES):
        problems.append(FORMULA_PROBLEM)
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        problems.append("contains control or invisible characters")
    words = re.findall(r"[^\W\d_]{2,}", value)
    letters = sum(ch.isalpha() for ch in value)
    if len(words) < 2 or letters < len(value.replace(" ", "")) / 2:
        problems.append("is not natural-language prose")
    sentences = len(SENTENCE_END.findall(value)) + (0 if value.endswith((".", "!", "?")) else 1)
    if sentences > max_sentences:
        problems.append(f"has {sentences} sentences; at most {max_sentences} are allowed")
    return problems


class PlanAnswer(BaseModel, frozen=True, extra="ignore"):
    """The planner's answer. Its JSON schema is what an endpoint with structured output decodes under."""

    instruction: str = Field(min_length=8, max_length=240, description="one imperative sentence, plain prose")
    category: str = Field(description="the category asked for")
    target_description: str = Field(
        min_length=8, max_length=1500, description="the edited video, described in plain prose"
    )

    @field_validator("instruction", "target_description")
    @classmethod
    def single_paragraph(cls, value: str) -> str:
        return " ".join(value.split())


class PlanInstructionOutput(PlanAnswer, frozen=True):
    planner: str = Field(description="the planner that wrote it: the configured one, or the rule planner fallback")


def answer_schema(categories: list[str]) -> dict[str, Any]:
    """PlanAnswer's JSON schema with the category narrowed to the allowed ones and nothing else admitted."""
    schema = PlanAnswer.model_json_schema()
    schema["properties"]["category"]["enum"] = list(categories)
    schema["additionalProperties"] = False
    return schema


class AnswerError(ValueError):
    """An answer that cannot be used; `problems` are told to the planner when it is asked again."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_json_object(raw: str) -> dict:
    """The first JSON object in a model's answer (models wrap JSON in prose or code fences)."""
    start, end = raw.find("{"), raw.rfind("}")
    if start < 0:
        raise ValueError(f"no JSON object in the answer: {raw[:200]!r}")
    if end < start:
        raise ValueError("the JSON object in the answer is not closed (cut off?)")
    value = json.loads(raw[start : end + 1])
    if not isinstance(value, dict):
        raise ValueError("the answer is JSON but not an object")
    return value


def same_instruction(a: str, b: str) -> bool:
    """Equal up to case, spacing and punctuation: 'Make it night.' repeats 'make it night'."""
    return re.findall(r"\w+", a.casefold()) == re.findall(r"\w+", b.casefold())


def planner_written(target: str, caption: str) -> str:
    """The target description less a verbatim copy of the caption it starts with: the caption is the
    captioner's text (a random-weight captioner writes garbage), what follows is the planner's."""
    head = " ".join(caption.split()).rstrip(".")
    return target[len(head) :].lstrip(". ") if head and target.startswith(head) else target


def validate_answer(raw: str, categories: list[str], avoid: tuple[str, ...], caption: str) -> PlanAnswer:
    """Parse and check one raw answer; raises AnswerError naming every problem found."""
    try:
        answer = PlanAnswer.model_validate(parse_json_object(raw))
    except json.JSONDecodeError as err:
        raise AnswerError([f"the answer is not valid JSON ({err.msg} at character {err.pos})"]) from err
    except ValidationError as err:
        raise AnswerError([f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in err.errors()]) from err
    except ValueError as err:
        raise AnswerError([str(err)]) from err
    problems = [f"instruction {p}" for p in text_problems(answer.instruction, MAX_INSTRUCTION_SENTENCES)]
    own = planner_written(answer.target_description, caption)
    problems += [f"target_description {p}" for p in text_problems(own, MAX_TARGET_SENTENCES)]
    if own != answer.target_description and answer.target_description.startswith(FORMULA_PREFIXES):
        problems.append(f"target_description {FORMULA_PROBLEM}")  # the whole CSV cell counts
    if answer.category not in categories:
        close = difflib.get_close_matches(answer.category, categories, n=1, cutoff=0.4)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        problems.append(f"category {answer.category[:40]!r} is not allowed{hint} Allowed: {', '.join(categories)}")
    if any(same_instruction(answer.instruction, used) for used in avoid):
        problems.append("instruction repeats one already used on this video; write a different edit")
    if problems:
        raise AnswerError(problems)
    return answer


def record_usage(ctx: ToolContext, reply: PlanReply) -> None:
    """Each model call's figures, and their totals, into the call's trace."""
    if not reply.usage:
        return  # a planner that calls no model
    ctx.usage.setdefault("calls", []).append(reply.usage)
    for key in ("latency_s", "prompt_tokens", "completion_tokens", "transport_retries"):
        ctx.usage[key] = ctx.usage.get(key, 0) + (reply.usage.get(key) or 0)


class PlanInstruction:
    name: ClassVar[str] = "plan_instruction"
    version: ClassVar[str] = "2"
    templates: ClassVar[tuple[str, ...]] = (
        "plan_instruction.system.j2",
        "plan_instruction.user.j2",
        "plan_instruction.reask.j2",
        "rewrite_instruction.user.j2",
        "edit_vocabulary.yaml",
    )
    Input, Output = PlanInstructionInput, PlanInstructionOutput

    def __init__(self, planner: Planner, config: PlanInstructionConfig, resources: Resources) -> None:
        self.planner, self.config, self.resources = planner, config, resources
        self.fallback: Planner = RulePlanner()  # needs no model: it always answers, from the vocabulary
        self.backend_id = planner.spec_id

    def __call__(self, inp: PlanInstructionInput, ctx: ToolContext) -> PlanInstructionOutput:
        request = self.build_request(inp, ctx)
        allowed = [inp.category]  # one category is asked for; an answer in another is re-asked
        for reask in range(self.config.max_reasks + 1):
            reply = self.ask(self.planner, request, ctx)
            try:
                answer = validate_answer(reply.text, allowed, inp.avoid, inp.caption)
                return PlanInstructionOutput(**answer.model_dump(), planner=self.planner.spec_id)
            except AnswerError as err:
                ctx.usage.setdefault("rejected", []).append({"answer": reply.text[:500], "problems": err.problems})
                if reask == self.config.max_reasks:
                    break
                message = ctx.render("plan_instruction.reask.j2", problems=err.problems, categories=allowed)
                correction = Correction(answer=reply.text, reask=message)
                request = dataclasses.replace(request, corrections=(*request.corrections, correction))
        ctx.usage["fallback"] = self.fallback.spec_id
        reply = self.ask(self.fallback, request, ctx)
        try:
            answer = validate_answer(reply.text, allowed, inp.avoid, inp.caption)
        except AnswerError as err:
            raise ToolError(
                "llm_schema",
                f"{len(ctx.usage['rejected'])} answers failed validation, and so did the rule planner's: {err}",
                field="answer",
            ) from err
        return PlanInstructionOutput(**answer.model_dump(), planner=self.fallback.spec_id)

    def build_request(self, inp: PlanInstructionInput, ctx: ToolContext) -> PlanRequest:
        avoid = list(inp.avoid)
        system = ctx.render(
            "plan_instruction.system.j2", category=inp.category, category_description=inp.category_description
        )
        if inp.feedback is not None:
            user = ctx.render(
                "rewrite_instruction.user.j2",
                caption=inp.caption,
                instruction=inp.previous_instruction or "",
                feedback=inp.feedback,
                avoid=avoid,
            )
        else:
            user = ctx.render("plan_instruction.user.j2", caption=inp.caption, avoid=avoid)
        return PlanRequest(
            caption=inp.caption,
            system_prompt=system,
            user_prompt=user,
            vocabulary=ctx.load_data("edit_vocabulary.yaml"),
            avoid=avoid,
            clip_seed=inp.clip_seed,
            slot=inp.slot,
            category=inp.category,
            answer_schema=answer_schema([inp.category]),
        )

    @staticmethod
    def ask(planner: Planner, request: PlanRequest, ctx: ToolContext) -> PlanReply:
        try:
            reply = planner.plan(request)
        except CategoryUnfitError as err:  # a ValueError, but the episode goes on in another category
            raise ToolError("category_unfit", str(err), field="category") from err
        except PlannerUnavailableError as err:
            if err.usage:
                record_usage(ctx, PlanReply("", err.usage))
            raise ToolError("backend_unavailable", str(err), field="planner") from err
        except ValueError as err:
            raise ToolError("bad_input", str(err), field="avoid") from err
        record_usage(ctx, reply)
        return reply
