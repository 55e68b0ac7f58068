"""Ditto step 2b: an edit instruction and a description of the edited result, written from the caption (and,
for a vision-language planner, frames of the clip). With judge feedback it rewrites a rejected instruction.
The answer is data: validated, never executed.

An answer that fails validation is re-asked with the problems named, a bounded number of times; then the
rule planner answers instead, and the output says so. A bad answer never fails the call; an unreachable
endpoint does, and so does a planner that answers that no edit of the asked category fits the clip (the
rule planner with none left, a model with its reason): category_unfit, and the episode is planned in its
next category."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from models.cpu.rule_planner import RulePlanner
from models.protocols import CategoryUnfitError, ModelReply, Planner, PlanRequest
from models.registry import backend_class
from tools.answers import AnswerError, ask_until_valid, parse_json_object, reply_of
from tools.base import ArtifactRef, BackendSpec, Tool, ToolContext, ToolError

MAX_INSTRUCTION_SENTENCES = 2
MAX_TARGET_SENTENCES = 5  # a target may restate the caption (two or three sentences) and add the edit


# Planner text in the answer's schema: sentences of words (letters and digits, apostrophes and hyphens after
# the first, “typographic quotes” around, a comma or colon after) ending in . ! or ?. Everything text_problems
# refuses (markup, template syntax, shell characters, paths, links, a formula prefix, control characters) is
# left out by construction, and so is the straight double quote, at which a grammar would end the JSON string.
# A model decoding under it writes prose of bounded length whatever its weights.
WORD = "“?[A-Za-z0-9][A-Za-z0-9'-]{0,15}”?[,:]?"
WORD_CHARS = 19  # the longest word WORD admits
MAX_WORDS = 16  # per sentence, at most (PlanInstructionConfig.max_words)


def prose_pattern(max_words: int, max_sentences: int) -> str:
    """Up to `max_sentences` sentences of 2 to `max_words` words each."""
    sentence = f"{WORD}(?: {WORD}){{1,{max_words - 1}}}[.!?]"
    return f"^{sentence}(?: {sentence}){{0,{max_sentences - 1}}}$"


def prose_max_chars(max_words: int, max_sentences: int) -> int:
    """The longest text prose_pattern admits: its words, the spaces between them and the full stops."""
    return max_sentences * max_words * (WORD_CHARS + 1) + max_sentences - 1


class PlanInstructionConfig(BaseModel, extra="forbid"):
    """The planner's settings. Which categories it writes, and their mix, are the agent's (RunConfig.categories)."""

    # Re-asks after an answer fails validation. One fixes most slips (a stray sentence, a near-miss
    # category); a model that fails three times in a row is not converging, and the rule planner answers.
    max_reasks: int = Field(2, ge=0)
    # Bounds of the answer's schema (prose_pattern): words per sentence, and sentences in a target description.
    # They bound every answer a model decoding under the schema can write (within PlanAnswer's length bounds),
    # so the backend's max_new_tokens can cover the longest.
    max_words: int = Field(MAX_WORDS, ge=2, le=MAX_WORDS)
    max_target_sentences: int = Field(MAX_TARGET_SENTENCES, ge=1, le=MAX_TARGET_SENTENCES)


class PlanInstructionInput(BaseModel, frozen=True, extra="forbid"):
    caption: str
    clip: ArtifactRef | None = None  # the source clip, whose frames a vision-language planner sees
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

    # The longest the schema admits at its largest bounds: an answer it admits is never too long.
    instruction: str = Field(
        min_length=8, max_length=prose_max_chars(MAX_WORDS, 1), description="one imperative sentence, plain prose"
    )
    category: str = Field(description="the category asked for")
    target_description: str = Field(
        min_length=8,
        max_length=prose_max_chars(MAX_WORDS, MAX_TARGET_SENTENCES),
        description="the edited video, described in plain prose",
    )

    @field_validator("instruction", "target_description")
    @classmethod
    def single_paragraph(cls, value: str) -> str:
        return " ".join(value.split())


class PlanInstructionOutput(PlanAnswer, frozen=True):
    planner: str = Field(description="the planner that wrote it: the configured one, or the rule planner fallback")
    # The edit the instruction makes as the configured editor reads it ('style:warm_grade'): two wordings of one
    # edit read alike. None where the editor does not say (a diffusion editor takes any instruction).
    effect: str | None = None


class UnfitAnswer(BaseModel, frozen=True, extra="forbid"):
    """The planner's other answer: no edit of the asked category fits this clip, and why."""

    does_not_fit: str = Field(
        min_length=8,
        max_length=prose_max_chars(MAX_WORDS, 1),
        description="why no edit of the asked category fits this video, in one sentence",
    )


def _prose_field(schema: dict[str, Any], max_words: int, max_sentences: int) -> dict[str, Any]:
    # The pattern bounds the length: grammar engines take a pattern or length bounds, not both (xgrammar warns).
    bounded = {k: v for k, v in schema.items() if k not in ("minLength", "maxLength")}
    return {**bounded, "pattern": prose_pattern(max_words, max_sentences)}


def answer_schema(
    categories: list[str], max_words: int = MAX_WORDS, max_target_sentences: int = MAX_TARGET_SENTENCES
) -> dict[str, Any]:
    """PlanAnswer's JSON schema with the category narrowed to the allowed ones, its text to plain prose
    within the bounds, and nothing else admitted."""
    schema = PlanAnswer.model_json_schema()
    props = schema["properties"]
    props["category"]["enum"] = list(categories)
    props["instruction"] = _prose_field(props["instruction"], max_words, 1)
    props["target_description"] = _prose_field(props["target_description"], max_words, max_target_sentences)
    schema["additionalProperties"] = False
    return schema


def planner_schema(category: str, config: PlanInstructionConfig) -> dict[str, Any]:
    """What the planner decodes under: a plan in the asked category, or the answer that none fits the clip."""
    unfit = UnfitAnswer.model_json_schema()
    unfit["properties"]["does_not_fit"] = _prose_field(unfit["properties"]["does_not_fit"], config.max_words, 1)
    unfit["additionalProperties"] = False
    return {"anyOf": [answer_schema([category], config.max_words, config.max_target_sentences), unfit]}


def same_instruction(a: str, b: str) -> bool:
    """Equal up to case, spacing and punctuation: 'Make it night.' repeats 'make it night'."""
    return re.findall(r"\w+", a.casefold()) == re.findall(r"\w+", b.casefold())


def planner_written(target: str, caption: str) -> str:
    """The target description less a verbatim copy of the caption it starts with: the caption is the
    captioner's text (a random-weight captioner writes garbage), what follows is the planner's."""
    head = " ".join(caption.split()).rstrip(".")
    return target[len(head) :].lstrip(". ") if head and target.startswith(head) else target


EffectReader = Callable[[str], str | None]  # an instruction -> the edit it makes, as the editor reads it


def repeated_effect(instruction: str, avoid: tuple[str, ...], effect_of: EffectReader | None) -> str | None:
    """The earlier instruction of the clip whose edit this one makes again in other words, if any."""
    effect = effect_of(instruction) if effect_of else None
    return next((used for used in avoid if effect is not None and effect_of(used) == effect), None)  # type: ignore[misc]


def validate_answer(
    raw: str, categories: list[str], avoid: tuple[str, ...], caption: str, effect_of: EffectReader | None = None
) -> PlanAnswer | UnfitAnswer:
    """Parse and check one raw answer, a plan or the answer that none fits; raises AnswerError naming every
    problem found. `effect_of` reads the edit an instruction makes: one that makes an earlier instruction's edit
    again (a warm grade after a golden-hour one) is a repeat too."""
    try:
        data = parse_json_object(raw)
        answer = (UnfitAnswer if "does_not_fit" in data else PlanAnswer).model_validate(data)
    except json.JSONDecodeError as err:
        raise AnswerError([f"the answer is not valid JSON ({err.msg} at character {err.pos})"]) from err
    except ValidationError as err:
        raise AnswerError([f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in err.errors()]) from err
    except ValueError as err:
        raise AnswerError([str(err)]) from err
    if isinstance(answer, UnfitAnswer):  # its reason lands in the trace: plain prose too
        if problems := text_problems(answer.does_not_fit, MAX_INSTRUCTION_SENTENCES):
            raise AnswerError([f"does_not_fit {p}" for p in problems])
        return answer
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
    elif used := repeated_effect(answer.instruction, avoid, effect_of):
        problems.append(
            f"instruction makes the same edit ({effect_of(used)}) as “{used}”, already used on this video; "  # type: ignore[misc]
            "write a different edit"
        )
    if problems:
        raise AnswerError(problems)
    return answer


class PlanInstruction(Tool):
    name = "plan_instruction"
    # 3: frames for a vision-language planner; the answer that no edit fits; 4: the same edit in other words is a
    # repeat, and the output says which edit the instruction makes
    version = "4"
    Input, Output = PlanInstructionInput, PlanInstructionOutput
    templates = (
        "plan_instruction.system.j2",
        "plan_instruction.user.j2",
        "plan_instruction.reask.j2",
        "rewrite_instruction.user.j2",
    )
    data = ("edit_vocabulary.yaml",)  # the edits it offers and checks answers against, whatever plans
    backend_step, config_section = "planner", "plan_instruction"
    config: PlanInstructionConfig

    def __init__(
        self, config: PlanInstructionConfig | None = None, spec: BackendSpec | None = None, editor: Any = None
    ) -> None:
        """`editor`: the configured editor's class, whose `effect` reads the edit an instruction makes without
        loading a model, so that the planner never gives a clip the same edit twice in other words; None, or a
        class that does not say, where any instruction is its own edit (a diffusion editor)."""
        super().__init__(config, spec)
        self.effect_of: EffectReader | None = getattr(editor, "effect", None)
        # the editor's reading of instructions decides what counts as a repeat
        self.settings["effects"] = getattr(editor, "spec_id", None)

    @classmethod
    def declare(cls, tools: Any, backends: Any) -> PlanInstruction:
        return cls(tools.plan_instruction, backends.planner, backend_class("editor", backends.editor["kind"]))

    def setup(self, planner: Planner) -> None:
        self.planner = planner
        self.fallback: Planner = RulePlanner()  # needs no model: it always answers, from the vocabulary

    def __call__(self, inp: PlanInstructionInput, ctx: ToolContext) -> PlanInstructionOutput:
        request = self.build_request(inp, ctx)
        allowed = [inp.category]  # one category is asked for; an answer in another is re-asked
        try:
            answer = ask_until_valid(
                lambda corrections: self.ask(self.planner, dataclasses.replace(request, corrections=corrections), ctx),
                lambda text: self.validate(text, inp),
                self.config.max_reasks,
                ctx,
                lambda problems: ctx.render("plan_instruction.reask.j2", problems=problems, categories=allowed),
            )
            return self.output(answer, self.planner)
        except AnswerError:
            ctx.usage["fallback"] = self.fallback.spec_id
        reply = self.ask(self.fallback, request, ctx)
        try:
            answer = self.validate(reply.text, inp)
        except AnswerError as err:
            raise ToolError(
                "llm_schema",
                f"{len(ctx.usage['rejected'])} answers failed validation, and so did the rule planner's: {err}",
                field="answer",
            ) from err
        return self.output(answer, self.fallback)

    def validate(self, raw: str, inp: PlanInstructionInput) -> PlanAnswer | UnfitAnswer:
        return validate_answer(raw, [inp.category], inp.avoid, inp.caption, self.effect_of)

    def output(self, answer: PlanAnswer | UnfitAnswer, planner: Planner) -> PlanInstructionOutput:
        if isinstance(answer, UnfitAnswer):  # the episode goes on in its next category; the trace says why
            raise ToolError("category_unfit", f"{planner.spec_id}: {answer.does_not_fit}", field="category")
        effect = self.effect_of(answer.instruction) if self.effect_of else None
        return PlanInstructionOutput(**answer.model_dump(), planner=planner.spec_id, effect=effect)

    def build_request(self, inp: PlanInstructionInput, ctx: ToolContext) -> PlanRequest:
        avoid = list(inp.avoid)
        sees_frames = self.planner.sees_frames and inp.clip is not None
        system = user = ""  # a planner that reads no prompt (the rule planner) gets none, and the trace shows none
        if self.planner.reads_prompts:
            system, user = self.render_prompts(inp, ctx, sees_frames)
        return PlanRequest(
            caption=inp.caption,
            system_prompt=system,
            user_prompt=user,
            vocabulary=ctx.load_data("edit_vocabulary.yaml"),
            avoid=avoid,
            clip_seed=inp.clip_seed,
            slot=inp.slot,
            category=inp.category,
            answer_schema=planner_schema(inp.category, self.config),
            frames=ctx.io.read_video(inp.clip)[0] if sees_frames and inp.clip else None,
        )

    def render_prompts(self, inp: PlanInstructionInput, ctx: ToolContext, sees_frames: bool) -> tuple[str, str]:
        """(system, user): the category's prompt, and the clip's (or the rewrite's, with the judge's reasons)."""
        system = ctx.render(
            "plan_instruction.system.j2",
            category=inp.category,
            category_description=inp.category_description,
            max_words=self.config.max_words,
            max_target_sentences=self.config.max_target_sentences,
        )
        if inp.feedback is None:
            return system, ctx.render(
                "plan_instruction.user.j2", caption=inp.caption, avoid=list(inp.avoid), sees_frames=sees_frames
            )
        user = ctx.render(
            "rewrite_instruction.user.j2",
            caption=inp.caption,
            instruction=inp.previous_instruction or "",
            feedback=inp.feedback,
            avoid=list(inp.avoid),
            sees_frames=sees_frames,
        )
        return system, user

    @staticmethod
    def ask(planner: Planner, request: PlanRequest, ctx: ToolContext) -> ModelReply:
        try:
            return reply_of(lambda: planner.plan(request), ctx, field="planner")
        except CategoryUnfitError as err:  # a ValueError, but the episode goes on in another category
            raise ToolError("category_unfit", str(err), field="category") from err
        except ValueError as err:
            raise ToolError("bad_input", str(err), field="avoid") from err
