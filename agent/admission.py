"""Admitting an episode: the category it is planned for, chosen by quotas.category_order from the run's
record, and written on its Episode row before it starts, so that the next admission sees it and a resumed
run finds the same choice; and the instructions the clip already had, which the planner must not repeat."""

from __future__ import annotations

import json
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


class EpisodeBook:
    """The run's episodes as admission reads them: loaded once, then kept current by the run loop (each
    admission adds its row, the run loop each finished episode's row), so no admission re-reads the whole run."""

    def __init__(self, rows: list[Episode]) -> None:
        self.rows: dict[str, Episode] = {}
        self.past: dict[str, quotas.PastEpisode] = {}  # plain copies: reading ORM rows n times was the cost
        self.clip_of: dict[int, str] = {}
        for row in rows:
            self.add(row)

    @classmethod
    def load(cls, engine: Engine, run_id: str) -> EpisodeBook:
        return cls(run_episodes(engine, run_id))

    def add(self, row: Episode) -> None:
        self.rows[row.id] = row
        self.past[row.id] = quotas.PastEpisode(row.index, row.category, row.planned_category, row.status)
        self.clip_of[row.index] = row.clip_path


def admit_episode(
    engine: Engine,
    run_id: str,
    cfg: RunConfig,
    episode: EpisodeInput,
    index: int,
    duplicates: Duplicates,
    book: EpisodeBook | None = None,
) -> EpisodeInput | None:
    """The episode with its categories, recorded; None while an episode older than the quota window
    is still running (the choice must not depend on which episodes finished first). Without a `book` the
    run's episodes are read from the store."""
    book = book or EpisodeBook.load(engine, run_id)
    mine = book.rows.get(episode["episode_id"])
    if mine is None or mine.categories_json is None:  # new, or started by a version before categories
        past = list(book.past.values())
        counts = quotas.counts_before(index, past, quota_window(cfg))
        if counts is None:
            return None
        shares = current_shares(engine, run_id) or cfg.target_shares()
        rounds = quotas.clip_rounds(past, book.clip_of, episode["clip_path"], index)
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
    return {
        **episode,
        "categories": json.loads(mine.categories_json),
        "category_rounds": json.loads(mine.category_rounds_json),
        "clip_instructions": used,
        "duplicate_of": duplicates.get(episode["clip_path"]),
    }
