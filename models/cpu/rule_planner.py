"""The planner used when no LLM endpoint is set: draws instructions from the vocabulary in prompts/."""

from __future__ import annotations

import json
import random

from models.protocols import PlanReply, PlanRequest


class RulePlanner:
    spec_id = "rule-planner-v1"

    def plan(self, request: PlanRequest) -> PlanReply:
        options = [(edit, phrasing) for edit in request.vocabulary["edits"] for phrasing in edit["instructions"]]
        # One shuffled order per clip; each (episode, attempt) owns a slot in it, so no two episodes of a
        # clip draw the same instruction even when they plan at the same moment.
        random.Random(request.clip_seed).shuffle(options)
        avoid = set(request.avoid)
        for offset in range(len(options)):
            edit, phrasing = options[(request.slot + offset) % len(options)]
            if phrasing not in avoid:
                answer = {
                    "instruction": phrasing,
                    "category": edit["category"],
                    "target_description": edit["target"].format(caption=request.caption.rstrip(".") + "."),
                }
                return PlanReply(json.dumps(answer))
        raise VocabularyExhaustedError(
            f"all {len(options)} instructions of the vocabulary were already used for this clip"
        )


class VocabularyExhaustedError(ValueError):
    """Every instruction of the vocabulary was already used for this clip."""
