"""The run loop: source clips -> episodes (one LangGraph thread each), run concurrently under the budget,
resumable after a crash. Traces are written here, from the graph's stream of node updates."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, func, select

from agent import policy, training
from agent.admission import EpisodeBook, admit_episode
from agent.budget import Ledger, cost_by_tool
from agent.calls import BackendDown, canonical_json, is_storage_fault
from agent.config import RunConfig
from agent.context import open_context
from agent.graph import build_graph
from agent.sources import SourceScreen, iter_clips
from agent.state import EpisodeInput
from prompts.loader import PromptError
from store.checkpoints import open_checkpointer
from store.dataset import discard_episode, repair_metadata_csv
from store.engine import open_engine
from store.inserts import insert_ignore
from store.run_lock import RunLock, RunLocked
from store.tables import Episode, NodeEvent, Run, TrainingRun
from store.traces import RunTotals, run_totals
from store.training import accepted_when_last_trained, training_runs
from tools import EPISODE_TOOLS, TRAINING_TOOLS

log = logging.getLogger(__name__)

ProgressCallback = Callable[[RunTotals, int], None]  # (totals, episodes in flight)
INTERRUPT_GRACE_S = 3.0  # after Ctrl-C, how long episodes get to reach their next checkpoint
REBALANCE_EVERY = 20  # finished episodes between re-splits of the GPUs by measured cost (--gpus, Ray)
DONE_CHECK_BATCH = 500  # planned episodes looked up at once when skipping those a resumed run has done


class RunError(Exception):
    """The run cannot start: no clips, an unknown run id, a config that does not match the store."""


class StorageError(RunError):
    """The store cannot be written (disk full, database locked past the busy timeout): the run stops, every
    episode stays checkpointed, and the same command resumes it once the cause is gone."""


class OutageStop(RunError):
    """A backend is down (agent.calls.BackendDown): the run stops, interrupted, with every episode waiting on it
    checkpointed, and the same command resumes it once the backend is back."""


class TemplateStop(RunError):
    """A prompt template broke mid-run (edited while running): the configuration's fault, not the episode's.
    The run stops with every episode checkpointed; once the template is fixed the same command resumes."""


def next_ended(ended: queue.Queue[tuple[str, BaseException | None]]) -> tuple[str, BaseException | None]:
    """The next episode to end, waited for in short slices: the OS hands Ctrl-C to any thread of the process,
    and Python raises KeyboardInterrupt in this one only when it wakes; a wait without end missed it."""
    while True:
        with contextlib.suppress(queue.Empty):
            return ended.get(timeout=0.2)


def storage_fault(err: BaseException) -> bool:
    if is_storage_fault(err) or isinstance(err, OperationalError | sqlite3.OperationalError):
        return True
    try:  # the PostgreSQL checkpointer raises psycopg's own errors (server gone, disk full, ...)
        import psycopg
    except ImportError:
        return False
    return isinstance(err, psycopg.OperationalError)


def derive_seed(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


@dataclass(frozen=True)
class PlannedEpisode:
    index: int  # position in the plan: the episode id's number
    clip: Path
    variant: int


def plan_episodes(source_dir: Path | None, episodes_per_clip: int) -> Iterator[PlannedEpisode]:
    """Round-robin over clips, so an early stop still covers every clip. Deterministic, hence resumable;
    a stream, so a folder of a million clips starts at once and only what is in flight is held."""
    variants = (zip(itertools.repeat(v), iter_clips(source_dir)) for v in range(episodes_per_clip))
    for index, (variant, clip) in enumerate(itertools.chain.from_iterable(variants)):
        yield PlannedEpisode(index, clip, variant)


def episode_id(run_id: str, index: int) -> str:
    return f"{run_id}:{index:05d}"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")


def open_run(engine: Engine, cfg: RunConfig, run_id: str) -> Run:
    with Session(engine) as s:
        if (run := s.get(Run, run_id)) is not None:
            # What resolve_run_config applied (settings that cannot change an output) stays with the run.
            run.budget_device_seconds, run.status, run.config_json = (
                cfg.budget_device_seconds,
                "running",
                cfg.model_dump_json(),
            )
        else:
            run = Run(
                id=run_id,
                profile=cfg.profile,
                budget_device_seconds=cfg.budget_device_seconds,
                seed=cfg.seed,
                config_json=cfg.model_dump_json(),
            )
        s.add(run)
        s.commit()
        s.refresh(run)
        return run


@dataclass
class RunResult:
    totals: RunTotals
    status: str  # finished | stopped_budget | stopped_max_samples | interrupted
    budget_device_seconds: float
    dataset_dir: Path


class Factory:
    """One run: the store, the loaded tools and the compiled graph, shared by every episode."""

    def __init__(self, cfg: RunConfig, run_id: str | None = None) -> None:
        self.cfg = cfg
        cfg.out.mkdir(parents=True, exist_ok=True)
        self.engine = open_engine(cfg.resolved_db_url)
        self.checkpointer = open_checkpointer(cfg.resolved_db_url, cfg.out / "checkpoints.sqlite")  # before the run
        self.lock = RunLock(self.engine, run_id or new_run_id(), cfg.out / "locks")
        try:
            self.lock.acquire()  # one process per run: a second one would admit the same episodes
        except RunLocked as err:
            raise RunError(str(err)) from err
        self.run = open_run(self.engine, cfg, self.lock.run_id)
        self.lock.record_holder()
        tools = EPISODE_TOOLS + (TRAINING_TOOLS if cfg.training.every else ())
        if cfg.executor == "ray":
            from agent.ray_pools import RayExecutor  # Ray is in the scale extra

            executor = RayExecutor(cfg, list(tools), cost_by_tool(self.engine, self.run.id))
            self.context = open_context(cfg, self.engine, self.run.id, tools, executor, executor.toolkit)
        else:
            self.context = open_context(cfg, self.engine, self.run.id, tools)
        self.caller, self.dataset_dir = self.context.caller, self.context.dataset_dir
        self.graph = build_graph(self.checkpointer)
        self.stop = threading.Event()
        self.nothing_to_train_at = -1  # accepted count at which a due round found nothing to train on
        self.clips_seen = 0  # source clips the plan has reached so far

    def episode_input(self, planned: PlannedEpisode) -> EpisodeInput:
        """The one place an admitted episode's input is made, from its place in the plan."""
        clip, seed = planned.clip, self.cfg.seed
        return EpisodeInput(
            episode_id=episode_id(self.run.id, planned.index),
            clip_path=str(clip),
            clip_seed=derive_seed(seed, clip.name),
            variant=planned.variant,
            seed=derive_seed(seed, clip.name, planned.variant),
        )

    def pending_episodes(self) -> Iterator[PlannedEpisode]:
        """The plan, less the episodes this run has finished (looked up a batch at a time)."""
        plan = plan_episodes(self.cfg.source_dir, self.cfg.episodes_per_clip)
        while batch := list(itertools.islice(plan, DONE_CHECK_BATCH)):
            ids = [episode_id(self.run.id, p.index) for p in batch]
            with Session(self.engine) as s:
                done = set(
                    s.exec(select(Episode.id).where(col(Episode.id).in_(ids), Episode.status != "running")).all()
                )
            for planned, id_ in zip(batch, ids, strict=True):
                if planned.variant == 0:  # the plan's first round takes each clip once, in order
                    self.clips_seen = planned.index + 1
                if id_ not in done:
                    yield planned

    def run_episode(self, episode: EpisodeInput, new: bool = False) -> None:
        """`new`: admitted by this run loop for the first time, so it has no calls, node events or checkpoints
        yet, and the lookups a resumed episode needs (where it stopped) are skipped (bench/overhead.py)."""
        episode_id, seq, resuming = episode["episode_id"], 0, False
        config = {"configurable": {"thread_id": episode_id}}
        if new:
            self.caller.new_episodes[episode_id] = set()
        else:
            with Session(self.engine) as s:  # node events recorded so far; its row is admission's to write
                seq = s.exec(select(func.count(col(NodeEvent.id))).where(NodeEvent.episode_id == episode_id)).one()
            resuming = bool(self.graph.get_state(config).next)
        try:
            self._stream_episode(episode, config, seq, resuming)
        finally:
            self.caller.new_episodes.pop(episode_id, None)

    def _stream_episode(self, episode: EpisodeInput, config: dict, seq: int, resuming: bool) -> None:
        try:
            for update in self.graph.stream(
                None if resuming else episode, config, context=self.context, stream_mode="updates", durability="sync"
            ):
                for node, delta in update.items():
                    seq += 1
                    self._record_event(episode["episode_id"], seq, node, delta)
                if self.stop.is_set():
                    return  # the checkpoint holds the episode; --resume continues it
        except Exception as err:  # noqa: BLE001 -- one broken episode must not end the run
            if storage_fault(err):  # not the episode's fault: keep it checkpointed, stop the run
                self.stop.set()
                raise StorageError(f"cannot write to {self.cfg.out} or its database: {err}") from err
            if isinstance(err, PromptError):
                self.stop.set()
                raise TemplateStop(str(err)) from err
            if isinstance(err, BackendDown):
                self.stop.set()
                raise OutageStop(str(err)) from err
            log.exception("episode failed", extra={"episode": episode["episode_id"]})
            discard_episode(self.engine, episode["episode_id"], "agent_error", f"{type(err).__name__}: {err}")
        self.checkpointer.delete_thread(episode["episode_id"])  # finished: its checkpoints are not needed

    def _record_event(self, episode_id: str, seq: int, node: str, delta: object) -> None:
        # A row recorded before a crash stays: the rerun of the node wrote nothing new.
        insert_ignore(
            self.engine, NodeEvent, episode_id=episode_id, seq=seq, node=node, update_json=canonical_json(delta)
        )

    def training_due(self, ledger: Ledger) -> bool:
        """Editto trains when enough samples came in since the last round and budget is left for it."""
        cfg = self.cfg
        if cfg.training.every is None or ledger.accepted == self.nothing_to_train_at:
            return False
        return ledger.spent_s < cfg.budget_device_seconds and policy.should_train(
            ledger.accepted, accepted_when_last_trained(self.engine, self.run.id), cfg.training
        )

    def train_round(self, accepted: int) -> TrainingRun | None:
        """One round of Editto training, with the device to itself: the caller has drained the episodes."""
        planned = training.plan_round(self.context, trigger=f"every {self.cfg.training.every} accepted")
        if planned is None:  # no sample it may train on: wait for more before asking again
            self.nothing_to_train_at = accepted
            return None
        return training.run_round(self.context, planned)

    def start_episode(
        self, episode: EpisodeInput, index: int, ended: queue.Queue[tuple[str, BaseException | None]], new: bool
    ) -> str:
        """The episode runs in a daemon thread: a tool that hangs cannot keep the process from exiting."""

        def run() -> None:
            try:
                self.run_episode(episode, new)
                ended.put((episode["episode_id"], None))
            except BaseException as err:  # noqa: BLE001 -- handed to the admission loop
                ended.put((episode["episode_id"], err))

        threading.Thread(target=run, name=f"episode-{index}", daemon=True).start()
        return episode["episode_id"]

    def admissible(self, ledger: Ledger, in_flight: int) -> str | None:
        """None if one more episode may start now, else why not: 'max_samples' (for now: an episode in
        flight may yet be discarded) or 'budget' (for good)."""
        cfg = self.cfg
        if cfg.max_samples is not None and ledger.accepted + in_flight >= cfg.max_samples:
            return "max_samples"
        projected = ledger.projected_episode_s(cfg.policy.prior_episode_device_seconds)
        if not policy.admit(ledger.spent_s, projected, in_flight, cfg.budget_device_seconds):
            return "budget"
        return None

    def execute(self, on_progress: ProgressCallback | None = None) -> RunResult:
        """The run, to its end (finished, stopped, interrupted) or to the error that stopped it; either way the
        executor's actors and the run's lock are let go."""
        try:
            return self._execute(on_progress)
        finally:
            self.caller.executor.close()
            self.lock.release()

    def _execute(self, on_progress: ProgressCallback | None) -> RunResult:
        cfg = self.cfg
        if next(iter_clips(cfg.source_dir), None) is None:
            raise RunError(f"no video files (.mp4 .mov .webm .mkv) under {cfg.source_dir}")
        if cfg.training.every is not None:  # a round a crash interrupted, as it was planned
            for unfinished in (r for r in training_runs(self.engine, self.run.id) if r.status == "running"):
                training.run_round(self.context, unfinished)
        repair_metadata_csv(self.engine, self.dataset_dir)  # a kill may have cut the last commit short
        ledger = Ledger.load(self.engine, self.run.id)
        plan, next_up = self.pending_episodes(), None
        screen = SourceScreen(self.context, iter_clips(cfg.source_dir))  # near-duplicate clips are skipped
        book = EpisodeBook.load(self.engine, self.run.id)
        ended: queue.Queue[tuple[str, BaseException | None]] = queue.Queue()
        in_flight: set[str] = set()
        status = "finished"
        try:
            while True:
                train_due = self.training_due(ledger)  # admit nothing until the round has run
                while len(in_flight) < cfg.concurrency and status == "finished" and not train_due:
                    next_up = next_up or next(plan, None)
                    if next_up is None:
                        break
                    if (why := self.admissible(ledger, len(in_flight))) is not None:
                        status = "stopped_budget" if why == "budget" else status
                        break
                    planned = self.episode_input(next_up)
                    new = planned["episode_id"] not in book.rows  # the book holds every episode the store has
                    episode = admit_episode(self.engine, self.run.id, cfg, planned, next_up.index, screen, book)
                    ledger.spent_s += screen.take_charged()
                    if episode is None:  # the category mix waits for an older episode to finish
                        break
                    in_flight.add(self.start_episode(episode, next_up.index, ended, new))
                    next_up = None
                if on_progress:
                    on_progress(self.progress(ledger, len(in_flight)), len(in_flight))
                if not in_flight:
                    if train_due:
                        self.train_round(ledger.accepted)
                        ledger = Ledger.load(self.engine, self.run.id)  # the round's charges
                        continue
                    break
                finished, err = next_ended(ended)
                in_flight.discard(finished)
                if err is not None:
                    self.stop.set()  # the others stop at their next checkpoint
                    if isinstance(err, OutageStop):
                        self.interrupt(in_flight, ended)
                    raise err
                with Session(self.engine, expire_on_commit=False) as s:  # read once, for the ledger and the book
                    row = s.get(Episode, finished)
                ledger.episode_ended(self.engine, finished, row.status if row is not None else "running")
                if row is not None:
                    book.add(row)
                if ledger.finished % REBALANCE_EVERY == 0:
                    self.caller.executor.rebalance(cost_by_tool(self.engine, self.run.id))
        except KeyboardInterrupt:
            status = "interrupted"
            self.interrupt(in_flight, ended)
        totals = run_totals(self.engine, self.run.id)
        if status == "finished" and cfg.max_samples is not None and totals.accepted >= cfg.max_samples:
            status = "stopped_max_samples"
        repair_metadata_csv(self.engine, self.dataset_dir)  # each commit appended its row: only a cut one is mended
        self.set_status(status)
        return RunResult(totals, status, cfg.budget_device_seconds, self.dataset_dir)

    def interrupt(self, in_flight: set[str], ended: queue.Queue[tuple[str, BaseException | None]]) -> None:
        """Ctrl-C: admit nothing more, mark the run interrupted, and give the episodes in flight a moment to
        reach their next checkpoint; one stuck in a tool is left (its last checkpoint holds it). A second
        Ctrl-C ends the process at once."""
        self.stop.set()
        self.set_status("interrupted")
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        try:
            while in_flight and (left := deadline - time.monotonic()) > 0:
                try:
                    in_flight.discard(ended.get(timeout=left)[0])
                except queue.Empty:
                    break
        except KeyboardInterrupt:
            os._exit(130)
        if in_flight:
            log.warning("left episodes in flight at their last checkpoint", extra={"episodes": sorted(in_flight)})

    def progress(self, ledger: Ledger, in_flight: int) -> RunTotals:
        return RunTotals(
            run_id=self.run.id,
            clips_seen=self.clips_seen,
            episodes=ledger.finished + in_flight,
            accepted=ledger.accepted,
            discarded=ledger.discarded,
            running=in_flight,
            spent_device_seconds=ledger.spent_s,
        )

    def set_status(self, status: str) -> None:
        with Session(self.engine) as s:
            run = s.get(Run, self.run.id)
            assert run is not None
            run.status = status
            s.add(run)
            s.commit()
