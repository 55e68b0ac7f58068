"""A run's plan: which episodes it runs, in which order, with which seeds. Deterministic, hence resumable;
a stream, so a folder of a million clips starts at once and only what is in flight is held."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from agent.sources import iter_clips
from agent.state import EpisodeInput
from store.tables import Episode

DONE_CHECK_BATCH = 500  # planned episodes looked up at once when skipping those a resumed run has done


def derive_seed(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


@dataclass(frozen=True)
class PlannedEpisode:
    index: int  # position in the plan: the episode id's number
    clip: Path
    variant: int


def plan_episodes(source_dir: Path | None, episodes_per_clip: int) -> Iterator[PlannedEpisode]:
    """Round-robin over clips, so an early stop still covers every clip; a higher episodes_per_clip extends
    the plan and leaves its first episodes as they were."""
    variants = (zip(itertools.repeat(v), iter_clips(source_dir)) for v in range(episodes_per_clip))
    for index, (variant, clip) in enumerate(itertools.chain.from_iterable(variants)):
        yield PlannedEpisode(index, clip, variant)


def episode_id(run_id: str, index: int) -> str:
    return f"{run_id}:{index:05d}"


def episode_input(run_id: str, seed: int, planned: PlannedEpisode) -> EpisodeInput:
    """The one place an admitted episode's input is made, from its place in the plan."""
    clip = planned.clip
    return EpisodeInput(
        episode_id=episode_id(run_id, planned.index),
        clip_path=str(clip),
        clip_seed=derive_seed(seed, clip.name),
        variant=planned.variant,
        seed=derive_seed(seed, clip.name, planned.variant),
    )


class PendingEpisodes:
    """The plan, less the episodes the run has finished (looked up a batch at a time), and how many source
    clips it has reached so far (for the progress bar)."""

    def __init__(self, engine: Engine, run_id: str, source_dir: Path | None, episodes_per_clip: int) -> None:
        self.engine, self.run_id = engine, run_id
        self.plan = plan_episodes(source_dir, episodes_per_clip)
        self.clips_seen = 0
        self._pending = self._stream()

    def __iter__(self) -> Iterator[PlannedEpisode]:
        return self._pending

    def __next__(self) -> PlannedEpisode:
        return next(self._pending)

    def _stream(self) -> Iterator[PlannedEpisode]:
        while batch := list(itertools.islice(self.plan, DONE_CHECK_BATCH)):
            ids = [episode_id(self.run_id, p.index) for p in batch]
            with Session(self.engine) as s:
                done = set(
                    s.exec(select(Episode.id).where(col(Episode.id).in_(ids), Episode.status != "running")).all()
                )
            for planned, id_ in zip(batch, ids, strict=True):
                if planned.variant == 0:  # the plan's first round takes each clip once, in order
                    self.clips_seen = planned.index + 1
                if id_ not in done:
                    yield planned
