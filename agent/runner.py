"""The run loop: the plan's episodes admitted under the budget and the category mix, run concurrently (one
LangGraph thread each, agent/episodes.py), Editto trained between them when due, and the run stopped, finished
or interrupted, resumably after a crash."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from agent import policy, training
from agent.admission import EpisodeBook, admit_episode
from agent.budget import Ledger, cost_by_tool
from agent.config import RunConfig
from agent.context import open_context, open_executor
from agent.episodes import Ended, EpisodeRunner
from agent.faults import OutageStop, RunError
from agent.graph import build_graph
from agent.plan import PendingEpisodes, episode_input
from agent.ray_cluster import connect_for_training
from agent.sources import SourceScreen, iter_clips
from store.checkpoints import open_checkpointer
from store.dataset import repair_metadata_csv
from store.engine import open_engine
from store.run_lock import RunLock, RunLocked
from store.tables import Episode, Run, TrainingRun
from store.traces import RunTotals, run_totals
from store.training import accepted_when_last_trained, training_runs
from tools import declare_tools, tools_used_in

log = logging.getLogger(__name__)

ProgressCallback = Callable[[RunTotals, int], None]  # (totals, episodes in flight)
INTERRUPT_GRACE_S = 3.0  # after Ctrl-C, how long episodes get to reach their next checkpoint
REBALANCE_EVERY = 20  # finished episodes between re-splits of the GPUs by measured cost (--gpus, Ray)


def split_due(finished: int, concurrency: int) -> bool:
    """Whether to weigh the GPU split again (RayExecutor.rebalance): every REBALANCE_EVERY finished episodes,
    once as many have finished as run at once. The first to finish are the quickest, discarded at the key
    frame before the late stages: a split made from them gave the key-frame edit propagation's GPUs."""
    return finished % REBALANCE_EVERY == 0 and finished >= concurrency


def next_ended(ended: Ended) -> tuple[str, BaseException | None]:
    """The next episode to end, waited for in short slices: the OS hands Ctrl-C to any thread of the process,
    and Python raises KeyboardInterrupt in this one only when it wakes; a wait without end missed it."""
    while True:
        with contextlib.suppress(queue.Empty):
            return ended.get(timeout=0.2)


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
        uses = ("episode", "training") if cfg.training.every else ("episode",)
        toolkit = declare_tools(cfg.tools, cfg.backends, tools_used_in(*uses))
        try:  # before the run's row: a refusal here (Ray's pools do not fit, say) leaves no run 'running'
            executor = open_executor(cfg, toolkit, cost_by_tool(self.engine, self.lock.run_id))
        except BaseException:
            self.lock.release()
            raise
        self.run = open_run(self.engine, cfg, self.lock.run_id)
        self.lock.record_holder()
        self.context = open_context(cfg, self.engine, self.run.id, toolkit, executor)
        self.let_ray_go = connect_for_training(cfg) if cfg.training.every else (lambda: None)
        self.caller, self.dataset_dir = self.context.caller, self.context.dataset_dir
        self.episodes = EpisodeRunner(build_graph(self.checkpointer), self.context, self.checkpointer)
        self.nothing_to_train_at = -1  # accepted count at which a due round found nothing to train on
        self.pending: PendingEpisodes | None = None

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
            self.let_ray_go()
            self.lock.release()

    def _execute(self, on_progress: ProgressCallback | None) -> RunResult:
        cfg = self.cfg
        if cfg.training.every is not None:  # a round a crash interrupted, as it was planned
            for unfinished in (r for r in training_runs(self.engine, self.run.id) if r.status == "running"):
                training.run_round(self.context, unfinished)
        repair_metadata_csv(self.engine, self.dataset_dir)  # a kill may have cut the last commit short
        ledger = Ledger.load(self.engine, self.run.id)
        self.pending = plan = PendingEpisodes(self.engine, self.run.id, cfg.source_dir, cfg.episodes_per_clip)
        next_up = None
        screen = SourceScreen(self.context, iter_clips(cfg.source_dir))  # near-duplicate clips are skipped
        book = EpisodeBook.load(self.engine, self.run.id)
        ended: Ended = queue.Queue()
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
                    planned = episode_input(self.run.id, cfg.seed, next_up)
                    episode = admit_episode(
                        self.engine, self.run.id, cfg, planned, next_up.index, screen, book, screen.unscreened
                    )
                    ledger.spent_s += screen.take_charged()
                    if episode is None:  # the category mix waits for an older episode to finish
                        break
                    in_flight.add(self.episodes.start(episode, next_up.index, ended))
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
                    self.episodes.stop.set()  # the others stop at their next checkpoint
                    if isinstance(err, OutageStop):
                        self.interrupt(in_flight, ended)
                    raise err
                with Session(self.engine, expire_on_commit=False) as s:  # read once, for the ledger and the book
                    row = s.get(Episode, finished)
                ledger.episode_ended(self.engine, finished, row.status if row is not None else "running")
                if row is not None:
                    book.add(row)
                if split_due(ledger.finished, cfg.concurrency):
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

    def interrupt(self, in_flight: set[str], ended: Ended) -> None:
        """Ctrl-C: admit nothing more, mark the run interrupted, and give the episodes in flight a moment to
        reach their next checkpoint; one stuck in a tool is left (its last checkpoint holds it). A second
        Ctrl-C ends the process at once."""
        self.episodes.stop.set()
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
            clips_seen=self.pending.clips_seen if self.pending else 0,
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
