"""The planner used when no LLM endpoint is set: draws instructions of the asked category from the
vocabulary in prompts/, keeping only the edits whose `needs` the caption meets."""

from __future__ import annotations

import json
import random
import re
from typing import Any

from models.cpu.styles import instruction_effect
from models.protocols import CategoryUnfitError, ModelReply, PlanRequest


def fitting_options(vocabulary: dict[str, Any], category: str, caption: str) -> list[tuple[str, str]]:
    """(instruction, target description) of every phrasing of `category` that fits the caption."""
    options = []
    for edit in vocabulary["edits"]:
        if edit["category"] != category:
            continue
        found = re.search(edit["needs"], caption) if edit.get("needs") else None
        if edit.get("needs") and found is None:
            continue
        fill = {"caption": caption.rstrip(".") + ".", **(found.groupdict() if found else {})}
        options += [(phrasing.format(**fill), edit["target"].format(**fill)) for phrasing in edit["instructions"]]
    return options


class RulePlanner:
    spec_id = "rule-planner-v3"  # v3: no edit the clip's earlier instructions made, however they were worded
    sees_frames = False  # it reads the caption's measures
    reads_prompts = False  # it draws from the vocabulary: the prompts are not rendered for it

    def plan(self, request: PlanRequest) -> ModelReply:
        options = fitting_options(request.vocabulary, request.category, request.caption)
        if not options:
            raise CategoryUnfitError(f"no {request.category} edit of the vocabulary fits this clip ({request.caption})")
        # One shuffled order per clip and category; each (episode, attempt) owns a slot in it, so no two
        # episodes of a clip draw the same instruction even when they plan at the same moment. The order
        # does not wrap around: a clip whose phrasings are used up gets another category.
        random.Random(f"{request.clip_seed}:{request.category}").shuffle(options)
        avoid = set(request.avoid)
        # The same edit in other words is a repeat: two warm grades of one clip teach the model one edit twice.
        made = {effect for used in request.avoid if (effect := instruction_effect(used))}
        for instruction, target in options[request.slot :]:
            if instruction not in avoid and instruction_effect(instruction) not in made:
                answer = {"instruction": instruction, "category": request.category, "target_description": target}
                return ModelReply(json.dumps(answer))
        raise CategoryUnfitError(
            f"all {len(options)} {request.category} instructions of the vocabulary, or the edits they make, were "
            "already used for this clip"
        )
