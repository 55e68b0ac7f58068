"""Read-side queries over the record: episodes, their node paths and tool calls, lineage and totals."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.tables import Episode, NodeEvent, Run, Sample, ToolCall


def episode_lineage(engine: Engine, episode_id: str) -> dict[str, Any]:
    """Which backends and template versions made this episode's sample."""
    with Session(engine) as s:  # three columns, not whole rows: the commit node asks once per sample
        calls = s.exec(
            select(ToolCall.tool, ToolCall.backend, ToolCall.prompts_json)
            .where(ToolCall.episode_id == episode_id)
            .order_by(col(ToolCall.id))
        ).all()
    templates = {p["name"]: p["sha256"] for _, _, prompts in calls for p in json.loads(prompts)}
    return {"models": {tool: backend for tool, backend, _ in calls}, "templates": templates}


def clip_outputs(
    engine: Engine, run_id: str, clip_path: str, tool: str, except_episode: str = "", before_index: int | None = None
) -> list[dict[str, Any]]:
    """What `tool` answered for the clip's other episodes in this run (those before `before_index` when
    given), in episode order."""
    query = (
        select(ToolCall.output_json)
        .join(Episode, col(Episode.id) == col(ToolCall.episode_id))
        .where(Episode.run_id == run_id, Episode.clip_path == clip_path, Episode.id != except_episode)
        .where(ToolCall.tool == tool, col(ToolCall.output_json).is_not(None))
        .order_by(col(Episode.index), col(ToolCall.id))
    )
    if before_index is not None:
        query = query.where(Episode.index < before_index)
    with Session(engine) as s:
        rows = s.exec(query).all()
    return [json.loads(row) for row in rows if row]


EPISODE_STATUSES = ("running", "accepted", "discarded")


@dataclass(frozen=True)
class EpisodeRow:
    episode: Episode
    device_seconds: float  # charged to this episode (calls reused from the cache cost nothing)


def list_episodes(
    engine: Engine,
    run_id: str | None = None,
    status: str | None = None,
    reason: str | None = None,
    limit: int | None = 200,
    category: str | None = None,
    since: datetime | None = None,
    by_cost: bool = False,
) -> list[EpisodeRow]:
    """Episodes in run order, or the costliest first; `since` compares with when they started (UTC). `reason`
    matches a reason as stored or as tables show it (`video judge: edit propagation` finds
    `video_judge:edit_propagation,region_stability`)."""
    if status is not None and status not in EPISODE_STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(EPISODE_STATUSES)}")
    cost = (
        select(ToolCall.episode_id, func.sum(ToolCall.device_seconds).label("cost"))
        .where(col(ToolCall.reused_call_id).is_(None), col(ToolCall.episode_id).is_not(None))
        .group_by(col(ToolCall.episode_id))
        .subquery()
    )
    spent = func.coalesce(cost.c.cost, 0.0)
    query = select(Episode, spent).join(cost, cost.c.episode_id == Episode.id, isouter=True)
    if run_id:
        query = query.where(Episode.run_id == run_id)
    if status:
        query = query.where(Episode.status == status)
    if reason:
        query = query.where(col(Episode.reason).like(reason_pattern(reason), escape="\\"))
    if category:  # what it was planned as; what it was admitted for until then
        planned = col(Episode.planned_category)
        query = query.where((planned == category) | (planned.is_(None) & (col(Episode.category) == category)))
    if since:
        query = query.where(Episode.started_at >= since.astimezone(UTC))
    query = query.order_by(spent.desc()) if by_cost else query.order_by(col(Episode.run_id), col(Episode.index))
    with Session(engine) as s:
        return [EpisodeRow(e, float(c)) for e, c in s.exec(query.limit(limit)).all()]


def reason_pattern(text: str) -> str:
    """A LIKE pattern for reasons containing `text`, written as stored or as shown: a space after a separator
    dropped, any other space standing for the underscore it replaced."""
    plain = re.sub(r"([:,@])\s+", r"\1", text.strip())
    escaped = plain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.replace(' ', '_')}%"


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
    """Counts by SQL aggregates, so no Episode row is loaded (the run loop keeps its own counters; this is
    for the summary, progress and reports)."""
    with Session(engine) as s:
        by_status_reason = s.exec(
            select(Episode.status, Episode.reason, func.count())
            .where(Episode.run_id == run_id)
            .group_by(Episode.status, Episode.reason)
        ).all()
        clips = s.exec(select(func.count(func.distinct(Episode.clip_path))).where(Episode.run_id == run_id)).one()
        by_tool = dict(
            s.exec(
                select(ToolCall.tool, func.sum(ToolCall.device_seconds))
                .where(ToolCall.run_id == run_id, col(ToolCall.reused_call_id).is_(None))
                .group_by(ToolCall.tool)
            ).all()
        )
    status: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for state, reason, n in by_status_reason:
        status[state] += n
        if state == "discarded":
            reasons[reason or "unknown"] += n
    return RunTotals(
        run_id=run_id,
        clips_seen=int(clips),
        episodes=sum(status.values()),
        accepted=status["accepted"],
        discarded=status["discarded"],
        running=status["running"],
        discarded_by_reason=dict(reasons),
        device_seconds_by_tool={k: float(v) for k, v in by_tool.items()},
        spent_device_seconds=float(sum(by_tool.values())),
    )


def latest_run(engine: Engine) -> Run | None:
    with Session(engine) as s:
        return s.exec(select(Run).order_by(col(Run.created_at).desc())).first()
