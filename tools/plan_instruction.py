"""Ditto step 2b: an edit instruction and a description of the edited result, written from the caption.
With judge feedback it rewrites a rejected instruction. The answer is data: validated, never executed."""

from __future__ import annotations

import json
import re
from typing import ClassVar

from pydantic import BaseModel, Field, ValidationError, field_validator

from models.protocols import CategoryUnfitError, Planner, PlanRequest
from tools.base import Resources, ToolContext, ToolError


class PlanInstructionConfig(BaseModel, extra="forbid"):
    """The planner's settings. Which categories it writes, and their mix, are the agent's (RunConfig.categories)."""


class PlanInstructionInput(BaseModel, frozen=True, extra="forbid"):
    caption: str
    category: str  # the one edit category asked for
    category_description: str  # what the category means, from the taxonomy in config
    clip_seed: int
    slot: int
    avoid: tuple[str, ...] = ()
    feedback: str | None = None  # the judge's reasons when rewriting a rejected instruction
    previous_instruction: str | None = None


class PlanAnswer(BaseModel, frozen=True, extra="ignore"):
    instruction: str = Field(min_length=3, max_length=300, description="one imperative sentence")
    category: str = Field(description="the category asked for")
    target_description: str = Field(min_length=3, max_length=1500, description="the edited video, described")

    @field_validator("instruction", "target_description")
    @classmethod
    def single_paragraph(cls, value: str) -> str:
        return " ".join(value.split())


PlanInstructionOutput = PlanAnswer


def parse_json_object(raw: str) -> dict:
    """The first JSON object in a model's answer (models wrap JSON in prose or code fences)."""
    match = re.search(r"\{.*\}", raw, flags=re.DOTALL)
    if match is None:
        raise ValueError(f"no JSON object in the answer: {raw[:200]!r}")
    value = json.loads(match.group(0))
    if not isinstance(value, dict):
        raise ValueError("the answer is JSON but not an object")
    return value


class PlanInstruction:
    name: ClassVar[str] = "plan_instruction"
    version: ClassVar[str] = "1"
    templates: ClassVar[tuple[str, ...]] = (
        "plan_instruction.system.j2",
        "plan_instruction.user.j2",
        "rewrite_instruction.user.j2",
        "edit_vocabulary.yaml",
    )
    Input, Output = PlanInstructionInput, PlanAnswer

    def __init__(self, planner: Planner, config: PlanInstructionConfig, resources: Resources) -> None:
        self.planner, self.config, self.resources = planner, config, resources
        self.backend_id = planner.spec_id

    def __call__(self, inp: PlanInstructionInput, ctx: ToolContext) -> PlanAnswer:
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
        vocabulary = ctx.load_data("edit_vocabulary.yaml")
        try:
            raw = self.planner.plan(
                PlanRequest(
                    caption=inp.caption,
                    system_prompt=system,
                    user_prompt=user,
                    vocabulary=vocabulary,
                    avoid=avoid,
                    clip_seed=inp.clip_seed,
                    slot=inp.slot,
                    category=inp.category,
                )
            )
        except CategoryUnfitError as err:
            raise ToolError("category_unfit", str(err), field="category") from err
        except RuntimeError as err:
            raise ToolError("backend_unavailable", str(err), field="planner") from err
        except ValueError as err:
            raise ToolError("bad_input", str(err), field="avoid") from err
        try:
            answer = PlanAnswer.model_validate(parse_json_object(raw))
        except (ValueError, ValidationError) as err:
            raise ToolError(
                "llm_schema", f"the planner's answer does not fit the schema: {err}", field="answer"
            ) from err
        if answer.category != inp.category:
            raise ToolError(
                "llm_schema",
                f"category {answer.category!r} was written, {inp.category!r} was asked for",
                field="category",
            )
        if answer.instruction in inp.avoid:
            raise ToolError(
                "llm_schema",
                f"the planner repeated an earlier instruction: {answer.instruction!r}",
                field="instruction",
            )
        return answer
