"""The record by edit category: which category each episode was admitted for and planned as, and the figures
per category (acceptance, attempts, cost per accepted sample, judge scores) that the summary, `traces
--category` and the report show."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.tables import Episode, Sample, ToolCall, TrainingRun


def run_episodes(engine: Engine, run_id: str) -> list[Episode]:
    with Session(engine) as s:
        return list(s.exec(select(Episode).where(Episode.run_id == run_id).order_by(col(Episode.index))).all())


def record_admission(engine: Engine, new: bool, episode: Episode) -> Episode:
    """The admitted episode's row with its categories; the row already there if it was admitted before.
    A row a version before categories wrote gets them. `new`: the caller knows there is no row yet."""
    with Session(engine, expire_on_commit=False) as s:
        found = None if new else s.get(Episode, episode.id)
        if found is not None and found.categories_json is not None:
            return found
        if found is not None:
            found.category = found.category or episode.category
            found.categories_json, found.category_rounds_json = episode.categories_json, episode.category_rounds_json
            episode = found
        s.add(episode)
        s.commit()
        return episode


def set_planned_category(engine: Engine, episode_id: str, category: str) -> None:
    with engine.begin() as conn:  # one statement: the planner's node runs it for every plan
        conn.execute(
            update(Episode)
            .where(col(Episode.id) == episode_id, col(Episode.planned_category).is_distinct_from(category))
            .values(planned_category=category)
        )


def category_of(episode: Episode) -> str:
    return episode.planned_category or episode.category or "unknown"


@dataclass
class CategoryFigures:
    category: str
    episodes: int = 0
    accepted: int = 0
    discarded: int = 0
    attempts: int = 0  # instructions or seeds tried, over all episodes
    device_seconds: float = 0.0
    video_scores: dict[str, float] = field(default_factory=dict)  # mean over accepted samples

    @property
    def acceptance_rate(self) -> float | None:
        finished = self.accepted + self.discarded
        return self.accepted / finished if finished else None

    @property
    def device_seconds_per_accepted(self) -> float | None:
        return self.device_seconds / self.accepted if self.accepted else None

    @property
    def mean_attempts(self) -> float | None:
        return self.attempts / self.episodes if self.episodes else None


def category_figures(engine: Engine, run_id: str, only: set[str] | None = None) -> list[CategoryFigures]:
    """One row per category the run's episodes (those in `only`, when given) were planned as (admitted as, when
    never planned)."""
    episodes = [e for e in run_episodes(engine, run_id) if only is None or e.id in only]
    with Session(engine) as s:
        costs = dict(
            s.exec(
                select(ToolCall.episode_id, func.sum(ToolCall.device_seconds))
                .where(ToolCall.run_id == run_id)
                .group_by(col(ToolCall.episode_id))
            ).all()
        )
        attempts = dict(
            s.exec(
                select(ToolCall.episode_id, func.max(ToolCall.attempt))
                .join(Episode, col(Episode.id) == col(ToolCall.episode_id))
                .where(Episode.run_id == run_id)
                .group_by(col(ToolCall.episode_id))
            ).all()
        )
        records = {
            x.episode_id: json.loads(x.record_json) for x in s.exec(select(Sample).where(Sample.run_id == run_id))
        }
    rows: dict[str, CategoryFigures] = {}
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for e in episodes:
        name = category_of(e)
        row = rows.setdefault(name, CategoryFigures(name))
        row.episodes += 1
        row.accepted += e.status == "accepted"
        row.discarded += e.status == "discarded"
        row.attempts += attempts[e.id] + 1 if e.id in attempts else 0
        row.device_seconds += float(costs.get(e.id) or 0.0)
        for criterion, value in records.get(e.id, {}).get("scores", {}).get("video", {}).items():
            scores[name][criterion].append(value)
    for name, by_criterion in scores.items():
        rows[name].video_scores = {k: round(sum(v) / len(v), 2) for k, v in sorted(by_criterion.items())}
    return sorted(rows.values(), key=lambda r: (-r.accepted, r.category))


def share_history(engine: Engine, run_id: str) -> list[tuple[str, dict[str, float], dict[str, float]]]:
    """(round id, held-out score per category, category shares after the round) for every finished round:
    what the report plots across rounds."""
    with Session(engine) as s:
        rounds = s.exec(select(TrainingRun).where(TrainingRun.run_id == run_id).order_by(col(TrainingRun.index))).all()
    return [
        (r.id, json.loads(r.category_scores_json or "{}"), json.loads(r.shares_after_json or "{}"))
        for r in rounds
        if r.status == "finished"
    ]
