"""The budget ledger's arithmetic over the store's Charge rows."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.tables import Charge, Episode, ToolCall


def spent_device_seconds(engine: Engine, run_id: str) -> float:
    with Session(engine) as s:
        return float(
            s.exec(select(func.coalesce(func.sum(Charge.device_seconds), 0.0)).where(Charge.run_id == run_id)).one()
        )


def projected_episode_device_seconds(engine: Engine, run_id: str, prior: float) -> float:
    """Mean cost of this run's finished episodes, or the prior before any has finished. Two aggregates: the
    run loop asks before every admission."""
    finished = (Episode.run_id == run_id) & (Episode.status != "running")
    with Session(engine) as s:
        count = s.exec(select(func.count()).select_from(Episode).where(finished)).one()
        if not count:
            return prior
        cost = s.exec(
            select(func.coalesce(func.sum(Charge.device_seconds), 0.0))
            .join(ToolCall, col(ToolCall.id) == Charge.tool_call_id)
            .join(Episode, col(Episode.id) == ToolCall.episode_id)
            .where(finished)
        ).one()
    return float(cost) / count
