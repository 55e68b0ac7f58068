"""Admitting an episode: the category it is planned for, chosen by quotas.category_order from the run's
record, and written on its Episode row before it starts, so that the next admission sees it and a resumed
run finds the same choice; and the instructions the clip already had, which the planner must not repeat."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Protocol

from sqlalchemy.engine import Engine

from agent import quotas
from agent.config import RunConfig
from agent.state import EpisodeInput
from store.categories import record_admission, run_episodes
from store.tables import Episode
from store.traces import clip_outputs
from store.training import current_shares


def quota_window(cfg: RunConfig) -> int:
    return max(cfg.policy.quota_window, cfg.concurrency)


class Duplicates(Protocol):
    def get(self, clip_path: str) -> str | None: ...


class Unscreened(Protocol):
    def get(self, clip_path: str) -> str | None: ...


class EpisodeBook:
    """The run's episodes as admission reads them: loaded once, then kept current by the run loop (each
    admission adds its row, the run loop each finished episode's row). What admission asks costs the same
    at the millionth episode as at the first: the accepted samples older than the quota window are a running
    count, and each clip's categories are kept by clip."""

    def __init__(self, rows: list[Episode]) -> None:
        self.rows: dict[str, Episode] = {}
        self.by_index: dict[int, quotas.PastEpisode] = {}  # plain copies: reading ORM rows n times was the cost
        self.clip_categories: defaultdict[str, dict[int, str]] = defaultdict(dict)  # clip -> index -> admitted for
        self.settled: Counter[str] = Counter()  # accepted samples per category among episodes below settled_below
        self.settled_below = 0
        for row in rows:
            self.add(row)

    @classmethod
    def load(cls, engine: Engine, run_id: str) -> EpisodeBook:
        return cls(run_episodes(engine, run_id))

    def add(self, row: Episode) -> None:
        self.rows[row.id] = row
        self.by_index[row.index] = quotas.PastEpisode(row.index, row.category, row.planned_category, row.status)
        if row.category:
            self.clip_categories[row.clip_path][row.index] = row.category

    def counts_before(self, index: int, window: int) -> Counter[str] | None:
        """Samples per category as episode `index` sees them: accepted ones among episodes older than
        `window`, plus every episode inside the window as if it will be accepted. What the window's episodes
        become is ignored, so the count does not depend on which of them finished first: the same seed gives
        the same categories at any concurrency up to the window, and after a resume. None while an episode
        older than the window runs. Episodes are settled into the running count once, in index order."""
        edge = index - window
        if edge < self.settled_below:  # asked about an earlier episode than before: count from the start
            self.settled, self.settled_below = Counter(), 0
        while self.settled_below < edge:
            old = self.by_index.get(self.settled_below)
            if old is not None and old.category is not None:
                if old.status == "running":
                    return None
                if old.status == "accepted":
                    self.settled[old.planned or old.category] += 1
            self.settled_below += 1
        counts = Counter(self.settled)
        for i in range(max(edge, 0), index):
            recent = self.by_index.get(i)
            if recent is not None and recent.category is not None:
                counts[recent.category] += 1
        return counts

    def clip_rounds(self, clip: str, index: int) -> Counter[str]:
        """How many earlier episodes of `clip` were admitted for each category."""
        return Counter(category for i, category in self.clip_categories[clip].items() if i < index)


def admit_episode(
    engine: Engine,
    run_id: str,
    cfg: RunConfig,
    episode: EpisodeInput,
    index: int,
    duplicates: Duplicates,
    book: EpisodeBook | None = None,
    unscreened: Unscreened | None = None,
) -> EpisodeInput | None:
    """The episode with its categories, recorded; None while an episode older than the quota window
    is still running (the choice must not depend on which episodes finished first). Without a `book` the
    run's episodes are read from the store."""
    book = book or EpisodeBook.load(engine, run_id)
    mine = book.rows.get(episode["episode_id"])
    if mine is None or mine.categories_json is None:  # new, or started by a version before categories
        counts = book.counts_before(index, quota_window(cfg))
        if counts is None:
            return None
        shares = current_shares(engine, run_id) or cfg.target_shares()
        rounds = book.clip_rounds(episode["clip_path"], index)
        order = quotas.category_order(shares, counts, rounds, episode["seed"])
        mine = record_admission(
            engine,
            mine is None,
            Episode(
                id=episode["episode_id"],
                run_id=run_id,
                index=index,
                clip_path=episode["clip_path"],
                variant=episode["variant"],
                seed=episode["seed"],
                category=order[0],
                categories_json=json.dumps(order),
                category_rounds_json=json.dumps(dict(rounds)),
            ),
        )
        book.add(mine)
    # No instruction twice on one clip: what the clip's episodes older than the window were given. They have
    # finished, so the list is the same whichever episodes finish first and after a resume (the calls that
    # take it stay cached); episodes inside the window draw other slots, and mostly other categories.
    planned = clip_outputs(
        engine, run_id, episode["clip_path"], "plan_instruction", before_index=index - quota_window(cfg)
    )
    used = list(dict.fromkeys(p["instruction"] for p in planned))
    duplicate_of = duplicates.get(episode["clip_path"])  # screens the clip, if it has not been
    return {
        **episode,
        "categories": json.loads(mine.categories_json),
        "category_rounds": json.loads(mine.category_rounds_json),
        "clip_instructions": used,
        "duplicate_of": duplicate_of,
        "unscreened": unscreened.get(episode["clip_path"]) if unscreened is not None else None,
    }
