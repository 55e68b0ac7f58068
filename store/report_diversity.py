"""How varied the run's instructions are, as the report shows it: per edit category and over the run, how many
instructions were planned, the share of them that are distinct (equal up to case, spacing and punctuation count
once), how many were accepted, and the commonest words; per clip, its episodes' instructions. A planner that
writes the same few edits again and again shows here before it shows in a trained model."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

WORD = re.compile(r"[^\W\d_][\w'-]*")
# Words every instruction needs whatever it asks; the commonest words leave them out so the edits' own show.
FUNCTION_WORDS = frozenset(
    "a an the of to in on at by for from with into onto and or but it its is are be as this that these those "
    "so all each every their them they his her than then there while".split()
)
COMMONEST = 8  # words shown per category


def words(instruction: str) -> list[str]:
    return WORD.findall(instruction.casefold())


def normalised(instruction: str) -> tuple[str, ...]:
    """The instruction as compared for distinctness: its words, case folded (as the planner compares them)."""
    return tuple(words(instruction))


@dataclass(frozen=True)
class InstructionStats:
    name: str  # a category, or "all"
    instructions: int  # episodes that were planned an instruction
    distinct: int
    accepted: int
    commonest: list[tuple[str, int]]  # (word, instructions it is in), most first

    @property
    def distinct_share(self) -> float:
        return self.distinct / self.instructions if self.instructions else 0.0


def instruction_stats(name: str, planned: list[dict[str, Any]]) -> InstructionStats:
    counts = Counter(w for e in planned for w in set(words(e["instruction"])) if w not in FUNCTION_WORDS)
    return InstructionStats(
        name=name,
        instructions=len(planned),
        distinct=len({normalised(e["instruction"]) for e in planned}),
        accepted=sum(e["status"] == "accepted" for e in planned),
        commonest=sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:COMMONEST],
    )


def by_category(episodes: list[dict[str, Any]]) -> list[InstructionStats]:
    """One row per category (alphabetical), then the whole run's."""
    planned = [e for e in episodes if e.get("instruction")]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in planned:
        groups[e["category"] or "none"].append(e)
    return [instruction_stats(name, groups[name]) for name in sorted(groups)] + [instruction_stats("all", planned)]


def by_clip(episodes: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per source clip (episodes given as (clip path, episode)), its episodes' instructions in run order and how
    many are distinct; the least varied clips first, as the report lists them."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for clip_path, e in episodes:
        if e.get("instruction"):
            groups[clip_path].append(e)
    clips = [
        {
            "clip": planned[0]["clip"],
            "distinct": len({normalised(e["instruction"]) for e in planned}),
            "instructions": [
                {"id": e["id"], "text": e["instruction"], "category": e["category"], "status": e["status"]}
                for e in planned
            ],
        }
        for planned in groups.values()
    ]
    return sorted(clips, key=lambda c: (c["distinct"] / len(c["instructions"]), -len(c["instructions"]), c["clip"]))
