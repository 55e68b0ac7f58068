"""The budget ledger: the run's counters, kept in memory. They are read from the store once (when a run
starts or resumes, and after a training round) and moved on as each episode finishes, so admitting an
episode costs no query, however long the run."""

from __future__ import annotations

import math
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


# A new GPU split must model at least this many times the current split's accepted samples per hour: the
# charges it is made from are noisy, and a split a few percent better is not worth an actor killed and another
# loaded (minutes for a model of 14B parameters).
RESPLIT_GAIN = 1.1


def split_gpus(cost_s: dict[str, float], gpus_per_actor: dict[str, float], gpus: float) -> dict[str, int]:
    """Actors per pool that share `gpus` GPUs so that the slowest stage is as quick as it can be: every pool
    gets one actor, then each further actor goes to the bottleneck (the pool with the most seconds of cost per
    GPU it holds: bottleneck) among those one more actor fits, until none fits. A stage that costs twice as
    much gets about twice the GPUs, so none starves the rest."""
    actors = dict.fromkeys(gpus_per_actor, 1)
    left = gpus - sum(gpus_per_actor.values())
    if left < -1e-9:
        raise ValueError(f"--gpus {gpus:g} is fewer than one actor of every pool needs ({gpus - left:g})")
    while fits := [p for p, g in gpus_per_actor.items() if 0 < g <= left + 1e-9]:
        # Ties (equal costs) go to the pool holding the fewest GPUs, so that equal costs split evenly.
        p = max(
            fits, key=lambda p: (seconds_per_gpu(p, actors, cost_s, gpus_per_actor), -actors[p] * gpus_per_actor[p])
        )
        actors[p], left = actors[p] + 1, left - gpus_per_actor[p]
    return actors


def seconds_per_gpu(
    pool: str, actors: dict[str, int], cost_s: dict[str, float], gpus_per_actor: dict[str, float]
) -> float:
    """A pool's cost (device-seconds) over the GPUs its actors hold: the wall seconds it needs for that work."""
    held = actors.get(pool, 0) * gpus_per_actor[pool]
    return cost_s.get(pool, 0.0) / held if held > 0 else math.inf


def bottleneck(actors: dict[str, int], cost_s: dict[str, float], gpus_per_actor: dict[str, float]) -> tuple[str, float]:
    """The pool that limits a split's rate, and its seconds per GPU: with every pool busy, the run makes
    samples at the rate of its slowest stage (the split's modelled samples per hour go as 1 / these seconds)."""
    return max(((p, seconds_per_gpu(p, actors, cost_s, gpus_per_actor)) for p in gpus_per_actor), key=lambda x: x[1])


@dataclass(frozen=True)
class Resplit:
    """Whether to move from the current split to a new one, and why (for the log line)."""

    move: bool
    why: str


def weigh_resplit(
    now: dict[str, int],
    new: dict[str, int],
    cost_s: dict[str, float],
    gpus_per_actor: dict[str, float],
    load_s: dict[str, float],
    left_s: float,
) -> Resplit:
    """Moves to the new split only if, over the `left_s` seconds the run has left, it makes at least
    RESPLIT_GAIN times the samples the current split would. The new split's modelled rate (bottleneck) counts
    from when the pools that grow have loaded their new actors (`load_s`, per pool); until then the run keeps
    the current rate (a faster split grows the current bottleneck, which keeps its actors, and shrinks only
    pools with time to spare)."""
    pool_now, now_s = bottleneck(now, cost_s, gpus_per_actor)
    pool_new, new_s = bottleneck(new, cost_s, gpus_per_actor)
    if not math.isfinite(now_s):
        return Resplit(True, f"{pool_now} has no actor")
    gain = now_s / new_s if new_s > 0 else 1.0
    loading_s = max((load_s.get(p, 0.0) for p in new if new[p] > now.get(p, 0)), default=0.0)
    over_left = 1 + (gain - 1) * max(0.0, left_s - loading_s) / left_s if left_s > 0 else 1.0
    why = (
        f"modelled {gain:.2f}x the samples per hour (bottleneck {pool_now} -> {pool_new}), {over_left:.2f}x over "
        f"the {left_s / 3600:.3g} h the budget has left once its new actors have loaded (~{loading_s:.0f} s)"
    )
    if over_left < RESPLIT_GAIN:
        return Resplit(False, f"{why}: under the {RESPLIT_GAIN:g}x a move needs")
    return Resplit(True, why)


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
