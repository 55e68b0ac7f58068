"""The budget ledger: the run's counters, kept in memory. They are read from the store once (when a run
starts or resumes, and after a training round) and moved on as each episode finishes, so admitting an
episode costs no query, however long the run."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.tables import Charge, Episode, ToolCall


def episode_charges(engine: Engine, run_id: str, status: str | None = None) -> dict[str, float]:
    """Device-seconds charged per episode of the run, for episodes in `status` (or running ones: None)."""
    query = (
        select(ToolCall.episode_id, func.sum(Charge.device_seconds))
        .join(ToolCall, col(ToolCall.id) == Charge.tool_call_id)
        .join(Episode, col(Episode.id) == ToolCall.episode_id)
        .where(Episode.run_id == run_id, Episode.status == (status or "running"))
        .group_by(ToolCall.episode_id)
    )
    with Session(engine) as s:
        return {episode: float(cost) for episode, cost in s.exec(query).all() if episode is not None}


@dataclass
class Ledger:
    run_id: str
    spent_s: float = 0.0  # every charge of the run: episodes (finished or not) and training rounds
    accepted: int = 0
    discarded: int = 0
    finished_cost_s: float = 0.0  # charges of finished episodes: the projection's numerator
    counted_s: dict[str, float] = field(default_factory=dict)  # running episodes' charges already in spent_s

    @classmethod
    def load(cls, engine: Engine, run_id: str) -> Ledger:
        with Session(engine) as s:
            spent = s.exec(
                select(func.coalesce(func.sum(Charge.device_seconds), 0.0)).where(Charge.run_id == run_id)
            ).one()
            counts = dict(
                s.exec(
                    select(Episode.status, func.count()).where(Episode.run_id == run_id).group_by(Episode.status)
                ).all()
            )
            finished_cost = s.exec(
                select(func.coalesce(func.sum(Charge.device_seconds), 0.0))
                .join(ToolCall, col(ToolCall.id) == Charge.tool_call_id)
                .join(Episode, col(Episode.id) == ToolCall.episode_id)
                .where(Episode.run_id == run_id, Episode.status != "running")
            ).one()
        return cls(
            run_id=run_id,
            spent_s=float(spent),
            accepted=counts.get("accepted", 0),
            discarded=counts.get("discarded", 0),
            finished_cost_s=float(finished_cost),
            counted_s=episode_charges(engine, run_id),
        )

    @property
    def finished(self) -> int:
        return self.accepted + self.discarded

    def projected_episode_s(self, prior: float) -> float:
        """Mean cost of this run's finished episodes, or the prior before any has finished."""
        return self.finished_cost_s / self.finished if self.finished else prior

    def episode_ended(self, engine: Engine, episode_id: str) -> None:
        """An episode's thread returned: count its charges, and its outcome if it has one (an interrupted
        episode is still running; its charges so far are counted once, the rest when it finishes)."""
        with Session(engine) as s:
            row = s.get(Episode, episode_id)
            cost = s.exec(
                select(func.coalesce(func.sum(Charge.device_seconds), 0.0))
                .join(ToolCall, col(ToolCall.id) == Charge.tool_call_id)
                .where(ToolCall.episode_id == episode_id)
            ).one()
        cost = float(cost)
        self.spent_s += cost - self.counted_s.pop(episode_id, 0.0)
        status = row.status if row is not None else "running"
        if status == "running":
            self.counted_s[episode_id] = cost
            return
        self.accepted += status == "accepted"
        self.discarded += status == "discarded"
        self.finished_cost_s += cost
