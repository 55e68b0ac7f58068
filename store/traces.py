"""Read-side queries over the record: episodes, their node paths and tool calls, lineage and totals."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.tables import Charge, Episode, NodeEvent, Run, Sample, ToolCall


def episode_lineage(engine: Engine, episode_id: str) -> dict[str, Any]:
    """Which backends and template versions made this episode's sample."""
    with Session(engine) as s:
        calls = s.exec(select(ToolCall).where(ToolCall.episode_id == episode_id).order_by(ToolCall.id)).all()
    templates = {p["name"]: p["sha256"] for c in calls for p in json.loads(c.prompts_json)}
    return {"models": {c.tool: c.backend for c in calls}, "templates": templates}


def list_episodes(
    engine: Engine,
    run_id: str | None = None,
    status: str | None = None,
    reason: str | None = None,
    limit: int = 200,
    category: str | None = None,
) -> list[Episode]:
    query = select(Episode).order_by(col(Episode.run_id), col(Episode.index))
    if category:  # what it was planned as; what it was admitted for until then
        planned = col(Episode.planned_category)
        query = query.where((planned == category) | (planned.is_(None) & (col(Episode.category) == category)))
    if run_id:
        query = query.where(Episode.run_id == run_id)
    if status:
        query = query.where(Episode.status == status)
    if reason:
        query = query.where(col(Episode.reason).contains(reason))
    with Session(engine) as s:
        return list(s.exec(query.limit(limit)).all())


@dataclass
class EpisodeTrace:
    episode: Episode
    events: list[NodeEvent]
    calls: list[ToolCall]
    sample: Sample | None


def episode_trace(engine: Engine, episode_id: str) -> EpisodeTrace | None:
    with Session(engine) as s:
        episode = s.get(Episode, episode_id)
        if episode is None:
            return None
        events = s.exec(select(NodeEvent).where(NodeEvent.episode_id == episode_id).order_by(NodeEvent.seq)).all()
        calls = s.exec(select(ToolCall).where(ToolCall.episode_id == episode_id).order_by(ToolCall.id)).all()
        sample = s.exec(select(Sample).where(Sample.episode_id == episode_id)).first()
        return EpisodeTrace(episode, list(events), list(calls), sample)


@dataclass
class RunTotals:
    run_id: str
    clips_seen: int
    episodes: int
    accepted: int
    discarded: int
    running: int
    discarded_by_reason: dict[str, int] = field(default_factory=dict)
    device_seconds_by_tool: dict[str, float] = field(default_factory=dict)
    spent_device_seconds: float = 0.0


def run_totals(engine: Engine, run_id: str) -> RunTotals:
    with Session(engine) as s:
        episodes = s.exec(select(Episode).where(Episode.run_id == run_id)).all()
        by_tool = dict(
            s.exec(
                select(Charge.tool, func.sum(Charge.device_seconds))
                .where(Charge.run_id == run_id)
                .group_by(Charge.tool)
            ).all()
        )
    status = Counter(e.status for e in episodes)
    return RunTotals(
        run_id=run_id,
        clips_seen=len({e.clip_path for e in episodes}),
        episodes=len(episodes),
        accepted=status["accepted"],
        discarded=status["discarded"],
        running=status["running"],
        discarded_by_reason=dict(Counter(e.reason or "unknown" for e in episodes if e.status == "discarded")),
        device_seconds_by_tool={k: float(v) for k, v in by_tool.items()},
        spent_device_seconds=float(sum(by_tool.values())),
    )


def latest_run(engine: Engine) -> Run | None:
    with Session(engine) as s:
        return s.exec(select(Run).order_by(col(Run.created_at).desc())).first()
