"""The budget ledger: the run's counters, kept in memory. They are read from the store once (when a run
starts or resumes, and after a training round) and moved on as each episode finishes, so admitting an
episode costs no query, however long the run."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.tables import Episode, ToolCall


def episode_charges(engine: Engine, run_id: str, status: str | None = None) -> dict[str, float]:
    """Device-seconds charged per episode of the run, for episodes in `status` (or running ones: None)."""
    query = (
        select(ToolCall.episode_id, func.sum(ToolCall.device_seconds))
        .join(Episode, col(Episode.id) == ToolCall.episode_id)
        .where(Episode.run_id == run_id, Episode.status == (status or "running"))
        .where(col(ToolCall.reused_call_id).is_(None))  # an episode whose calls all came from the cache paid nothing
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
                select(func.coalesce(func.sum(ToolCall.device_seconds), 0.0)).where(ToolCall.run_id == run_id)
            ).one()
            counts = dict(
                s.exec(
                    select(Episode.status, func.count()).where(Episode.run_id == run_id).group_by(Episode.status)
                ).all()
            )
            finished_cost = s.exec(
                select(func.coalesce(func.sum(ToolCall.device_seconds), 0.0))
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

    def episode_ended(self, engine: Engine, episode_id: str, status: str) -> None:
        """An episode's thread returned: count its charges, and its outcome (`status`, from its row) if it has
        one (an interrupted episode is still running; its charges so far are counted once, the rest when it
        finishes)."""
        with Session(engine) as s:
            cost = s.exec(
                select(func.coalesce(func.sum(ToolCall.device_seconds), 0.0)).where(ToolCall.episode_id == episode_id)
            ).one()
        cost = float(cost)
        self.spent_s += cost - self.counted_s.pop(episode_id, 0.0)
        if status == "running":
            self.counted_s[episode_id] = cost
            return
        self.accepted += status == "accepted"
        self.discarded += status == "discarded"
        self.finished_cost_s += cost


def run_level_charge(engine: Engine, run_id: str, node: str) -> float:
    """What a call outside any episode (screening a source clip) was charged at its site; 0 if reused. Looked up
    by (run, node), an index of its own: by the run alone SQLite read all of the run's calls per clip."""
    with Session(engine) as s:
        return s.exec(
            select(func.coalesce(func.sum(ToolCall.device_seconds), 0.0)).where(
                ToolCall.run_id == run_id,
                ToolCall.node == node,
                col(ToolCall.episode_id).is_(None),
                col(ToolCall.training_id).is_(None),
            )
        ).one()


def split_gpus(cost_s: dict[str, float], gpus_per_actor: dict[str, float], gpus: float) -> dict[str, int]:
    """Actors per pool so that `gpus` GPUs are shared in proportion to each pool's cost per accepted
    sample: every pool gets one actor, then each further actor goes to the pool furthest below its share
    while one fits. A stage that costs twice as much gets about twice the GPUs, so none starves the rest."""
    total = sum(cost_s.get(p, 0.0) for p in gpus_per_actor) or 1.0
    share = {p: gpus * cost_s.get(p, 0.0) / total for p in gpus_per_actor}
    actors = dict.fromkeys(gpus_per_actor, 1)
    left = gpus - sum(gpus_per_actor.values())
    if left < -1e-9:
        raise ValueError(f"--gpus {gpus:g} is fewer than one actor of every pool needs ({gpus - left:g})")
    while fits := [p for p, g in gpus_per_actor.items() if 0 < g <= left + 1e-9]:
        p = max(fits, key=lambda p: share[p] - actors[p] * gpus_per_actor[p])
        actors[p], left = actors[p] + 1, left - gpus_per_actor[p]
    return actors


def cost_by_tool(engine: Engine, run_id: str) -> dict[str, float]:
    """Device-seconds charged per tool in the run so far, to its finished episodes and to no episode
    (screening, training): an episode in flight has paid only for its first stages, and counting it weighs
    the early stages more than the run will (a GPU split from the first 20 episodes gave the key-frame edit
    four times propagation's GPUs)."""
    with Session(engine) as s:
        rows = s.exec(
            select(ToolCall.tool, func.sum(ToolCall.device_seconds))
            .join(Episode, col(Episode.id) == ToolCall.episode_id, isouter=True)
            .where(ToolCall.run_id == run_id, or_(col(Episode.id).is_(None), Episode.status != "running"))
            .where(col(ToolCall.reused_call_id).is_(None))
            .group_by(ToolCall.tool)
        ).all()
    return {tool: float(seconds) for tool, seconds in rows}
