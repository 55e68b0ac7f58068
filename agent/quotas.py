"""The mix of edit categories: the taxonomy in config, which categories are active, which category a new
episode gets (the one furthest below its target share), and how a training round's held-out scores move
the targets toward what Editto does worst. Pure functions of plain values, like policy.py."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, model_validator

TAXONOMY_FILE = Path(__file__).parent / "profiles" / "categories.yaml"
LOCAL_CATEGORIES = ("local_replace", "local_add", "local_remove", "local_attribute", "text")
CLIP_REPEAT_PENALTY = 1.0  # samples a category counts as more per use of it by the clip beyond its share


class CategorySpec(BaseModel, extra="forbid"):
    description: str = Field(min_length=3)  # what the planner is told this category means
    target: float = Field(ge=0, le=1)  # share of accepted samples; 0 turns the category off
    min_share: float = Field(0.0, ge=0, le=1)  # training may not push the share below this ...
    max_share: float = Field(1.0, ge=0, le=1)  # ... or above this
    # Weight of the propagator's control video (the source's depth) for this category's edits: 1 holds the
    # source's structure fully, 0 leaves the shape to the edited key frame and the prompt. An edit that changes
    # shape fights a full-strength depth (policy.lower_control_on lowers it further on a retry).
    control_strength: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def bounds_hold_the_target(self) -> CategorySpec:
        if not self.min_share <= self.max_share:
            raise ValueError(f"min_share {self.min_share} is above max_share {self.max_share}")
        return self


def default_taxonomy() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(TAXONOMY_FILE.read_text(encoding="utf-8"))


def default_categories() -> dict[str, CategorySpec]:
    return {name: CategorySpec.model_validate(spec) for name, spec in default_taxonomy().items()}


def merge_taxonomy(value: Any) -> Any:
    """A config's `categories:` changes the default taxonomy key by key (a new name adds a category)."""
    if not isinstance(value, Mapping):
        return value
    merged = default_taxonomy()
    for name, spec in value.items():
        spec = spec.model_dump() if isinstance(spec, BaseModel) else spec
        merged[name] = {**merged.get(name, {}), **spec} if isinstance(spec, Mapping) else spec
    return merged


def active_categories(
    categories: Mapping[str, CategorySpec], abilities: Mapping[str, frozenset[str] | None]
) -> dict[str, str]:
    """Category -> why it is off ('' when it is on). `abilities`: step -> the categories its backend can do
    (None: any instruction). A category is planned only if every step's backend can do it."""
    why: dict[str, str] = {}
    for name, spec in categories.items():
        unable = [step for step, can in abilities.items() if can is not None and name not in can]
        if spec.target <= 0:
            why[name] = "target share is 0"
        elif unable:
            why[name] = "not among the edits of " + ", ".join(unable)
        else:
            why[name] = ""
    return why


def target_shares(categories: Mapping[str, CategorySpec], active: Collection[str]) -> dict[str, float]:
    """The active categories' targets, normalised to sum to 1."""
    total = sum(categories[c].target for c in active)
    return {c: categories[c].target / total for c in active} if total > 0 else {}


@dataclass(frozen=True)
class PastEpisode:
    index: int
    category: str | None  # admitted for
    planned: str | None  # planned as (another category when the first did not fit the clip)
    status: str  # running | accepted | discarded


def category_order(
    shares: Mapping[str, float], counts: Mapping[str, int], clip_uses: Mapping[str, int], seed: int
) -> list[str]:
    """Active categories, the one furthest below its target share first. A category this clip already had
    more often than its share counts as that many samples more, so a clip's episodes get different
    categories while the run's mix still decides; ties go by the seed."""
    n = sum(counts.get(c, 0) for c in shares) + 1
    clip_n = sum(clip_uses.values())

    def deficit(c: str) -> float:
        beyond_share = max(0.0, clip_uses.get(c, 0) - shares[c] * clip_n)
        return shares[c] * n - counts.get(c, 0) - CLIP_REPEAT_PENALTY * beyond_share

    def tie(c: str) -> str:
        return hashlib.sha256(f"{seed}:{c}".encode()).hexdigest()

    return sorted(shares, key=lambda c: (-round(deficit(c), 9), tie(c)))


def shift_shares(
    shares: Mapping[str, float],
    scores: Mapping[str, float],
    bounds: Mapping[str, tuple[float, float]],
    rate: float,
) -> dict[str, float]:
    """Next round's shares: a step of size `rate` (0..1, the smoothing) toward shares weighted by how far
    below 10 Editto's held-out score is per category (equal scores: no change), then held within each
    category's bounds. Categories without a held-out score keep their share."""
    scored = [c for c in shares if c in scores]
    weighted = {c: shares[c] * max(0.0, 10.0 - scores[c]) for c in scored}
    pool = sum(shares[c] for c in scored)
    total = sum(weighted.values())
    proposal = dict(shares)
    if scored and total > 0:
        proposal.update({c: pool * weighted[c] / total for c in scored})
    moved = {c: (1 - rate) * shares[c] + rate * proposal[c] for c in shares}
    return within_bounds(moved, bounds)


def within_bounds(shares: Mapping[str, float], bounds: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Shares clipped to their (min, max) and renormalised over the categories still free to move."""
    fixed: dict[str, float] = {}
    for _ in range(len(shares) + 1):
        free = {c: s for c, s in shares.items() if c not in fixed}
        room = 1.0 - sum(fixed.values())
        total = sum(free.values())
        scaled = {c: s * room / total if total > 0 else room / max(1, len(free)) for c, s in free.items()}
        out_of_bounds = {
            c: min(max(s, bounds[c][0]), bounds[c][1])
            for c, s in scaled.items()
            if not bounds[c][0] <= s <= bounds[c][1]
        }
        if not out_of_bounds:
            return {c: round(v, 6) for c, v in {**fixed, **scaled}.items()}
        fixed.update(out_of_bounds)
    return {c: round(fixed.get(c, 0.0), 6) for c in shares}  # bounds that cannot all hold: clipped as they are
