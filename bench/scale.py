"""Scale on Ray, measured through the product's run loop: Factory.execute (the graph, call(), the ledger,
LangGraph's checkpoints and the store, all on a throwaway PostgreSQL) with RayExecutor's actor pools on a
local Ray with logical GPUs. What is simulated, and only that: each tool is bench/sim.py's, and a call to
a stage of bench/scale.yaml holds its actor's logical GPUs for the stage's seconds (a sleep) before it
answers and writes its artifacts; the judges' verdicts follow sim.py's model of edit quality, calibrated to
the full profile's thresholds.

Per setting it prints accepted samples per hour; each pool's busy fraction (the seconds its calls held their
actor over its actors' ready seconds during the run, so a pool grown or shrunk mid-run counts what it had);
the driver's orchestration (its CPU time per episode, and the median wall time per episode outside its
calls' device and queue time); the driver's peak RSS and threads; and the peak PostgreSQL connections.

    python -m bench.scale                           # 8 actors per GPU pool; 8 GPUs split evenly, then by the
                                                    # run; 2,000 episodes in flight on 64 GPUs
    python -m bench.scale --settings even split     # some of them
    python -m bench.scale --quick                   # every setting at a tiny size, in minutes (the tests)
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func
from sqlmodel import Session, col, select

from agent.budget import split_gpus
from agent.config import load_config
from agent.ray_pools import RayExecutor
from agent.runner import Factory
from bench.pg_server import new_database, throwaway_server
from bench.sim import HeldStage, held_toolkit
from bench.simulate import clip_folder, full_policy
from store.tables import Episode, ToolCall
from tools import tools_used_in

HERE = Path(__file__).parent
ROOT = HERE.parent
TOOLS = [t for t in tools_used_in("episode") if t != "estimate_depth"]  # the cpu profile's graph has no depth stage
SETTINGS = ("actors", "even", "split", "in-flight")


@dataclass
class Setting:
    label: str
    episodes: int
    concurrency: int
    stages: dict[str, HeldStage]
    actors: dict[str, int] = field(default_factory=dict)  # fixed pool sizes, or
    gpus: float | None = None  # GPUs the run splits across the pools itself, from what each stage costs


@dataclass
class Peaks:
    """The driver's peak RSS (MB) and threads, PostgreSQL's client connections and the episodes in flight."""

    rss_mb: float = 0.0
    threads: int = 0
    connections: int = 0
    in_flight: int = 0


def rss_and_threads() -> tuple[float, int]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) / 1024, int(status["Threads"])


@contextmanager
def watched(db_url: str) -> Iterator[Peaks]:
    """Samples the driver and the database every 0.5 s while the body runs."""
    import psycopg

    peaks, done = Peaks(), threading.Event()

    def sample() -> None:
        with psycopg.connect(db_url.replace("+psycopg", ""), autocommit=True) as conn:
            while not done.wait(0.5):
                rss, threads = rss_and_threads()
                row = conn.execute("select count(*) from pg_stat_activity where backend_type = 'client backend'")
                connections = row.fetchone()[0] - 1  # type: ignore[index]  # not this one
                peaks.rss_mb, peaks.threads = max(peaks.rss_mb, rss), max(peaks.threads, threads)
                peaks.connections = max(peaks.connections, connections)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        yield peaks
    finally:
        done.set()
        watcher.join()


class Pools(RayExecutor):
    """The run's RayExecutor, kept from one setting to the next (its actors stay loaded): a run's close()
    only notes each pool's ready actor-seconds."""

    stages: dict[str, HeldStage]  # what its actors simulate

    def close(self) -> None:
        self.ready_s = {g: p.ready_seconds() for g, p in self.pools.items()}

    def shut(self) -> None:
        """Kills the actors, and waits until Ray has their GPUs back (a kill returns before that)."""
        super().close()
        while self.ray.available_resources().get("GPU", 0) < self.ray.cluster_resources().get("GPU", 0):
            time.sleep(0.1)

    def resize_and_wait(self, counts: dict[str, int]) -> None:
        for group, count in counts.items():
            self.pools[group].resize(count)
        while any(p.loading for p in self.pools.values()):
            time.sleep(0.1)


def config(root: Path, db_url: str, setting: Setting) -> Any:
    """The run's config: the cpu profile's graph with the full profile's policy, one database for every
    setting and clips of each setting's own (so that no call is served from another setting's cache)."""
    stages = setting.stages
    pools = {t: {"cpus": 0, "gpus": stages[t].gpus if t in stages else 0} for t in TOOLS}
    clips = root / setting.label.replace(" ", "-")
    clips.mkdir(exist_ok=True)
    return load_config(
        "cpu",
        overrides={
            "out": str(root / "out"),
            "db_url": db_url,
            "source_dir": str(clip_folder(clips, -(-setting.episodes // 4))),
            "episodes_per_clip": 4,
            "budget_gpu_days": 1e9,
            "max_samples": None,
            "concurrency": setting.concurrency,
            "policy": full_policy(),
            "executor": "ray",
            "gpus": setting.gpus,
            "pools": pools,
        },
    )


def measure(pools: Pools, cfg: Any, setting: Setting) -> dict[str, Any]:
    stages = setting.stages
    local = cfg.model_copy(update={"executor": "local"})  # the Factory's own tools are replaced by the pools'
    factory = Factory(local)
    factory.caller.executor, factory.caller.toolkit = pools, pools.toolkit  # type: ignore[assignment]
    pools.cfg = cfg
    counts = setting.actors or {g: len(p.actors) for g, p in pools.pools.items()} | pools.split({})
    pools.resize_and_wait({g: counts.get(g, 1) for g in pools.pools})
    ready_before = {g: p.ready_seconds() for g, p in pools.pools.items()}
    with watched(cfg.db_url) as peaks:

        def on_progress(totals: Any, in_flight: int) -> None:
            peaks.in_flight = max(peaks.in_flight, in_flight)

        cpu, wall = time.process_time(), time.perf_counter()
        result = factory.execute(on_progress)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = result.totals.accepted + result.totals.discarded
    held = held_seconds(factory, pools, stages)
    busy = {g: held.get(g, 0.0) / max(1e-9, pools.ready_s[g] - ready_before[g]) for g in pools.pools if g in stages}
    figures = {
        "accepted/h": result.totals.accepted * 3600 / wall,
        "busy": busy,
        "driver CPU ms/episode": cpu * 1000 / done,
        "outside calls ms/episode": statistics.median(outside_calls_ms(factory, stages)),
        "peaks": peaks,
        "episodes": done,
        "split": {g: len(p.actors) for g, p in pools.pools.items() if g in stages},
    }
    factory.checkpointer.conn.close()  # type: ignore[attr-defined]
    factory.engine.dispose()
    return figures


def held_seconds(factory: Factory, pools: Pools, stages: dict[str, HeldStage]) -> dict[str, float]:
    """Seconds the run's calls held their actor, per pool: charged device-seconds over the actor's GPUs."""
    with Session(factory.engine) as s:
        rows = s.exec(
            select(ToolCall.tool, func.sum(ToolCall.device_seconds))
            .join(Episode, col(Episode.id) == ToolCall.episode_id)
            .where(Episode.run_id == factory.run.id, col(ToolCall.reused_call_id).is_(None))
            .group_by(ToolCall.tool)
        ).all()
    return {pools.pool_of[tool]: float(s) / stages[tool].gpus for tool, s in rows if tool in stages}


def outside_calls_ms(factory: Factory, stages: dict[str, HeldStage]) -> list[float]:
    """Per episode: its wall time less what its calls held a device or waited for an actor."""
    per_episode: dict[str, float] = {}
    with Session(factory.engine) as s:
        episodes = s.exec(
            select(Episode.id, Episode.started_at, Episode.finished_at).where(
                Episode.run_id == factory.run.id, col(Episode.finished_at).is_not(None)
            )
        ).all()
        calls = s.exec(
            select(ToolCall.episode_id, ToolCall.tool, ToolCall.device_seconds, ToolCall.queued_s)
            .join(Episode, col(Episode.id) == ToolCall.episode_id)
            .where(Episode.run_id == factory.run.id)
        ).all()
    for episode, tool, device_s, queued_s in calls:
        held = device_s / stages[tool].gpus if tool in stages else 0.0
        per_episode[episode] = per_episode.get(episode, 0.0) + held + queued_s  # type: ignore[index]
    return [((end - start).total_seconds() - per_episode.get(id_, 0.0)) * 1e3 for id_, start, end in episodes]


def report(setting: Setting, figures: dict[str, Any]) -> None:
    peaks: Peaks = figures["peaks"]
    busy = " ".join(f"{g} {100 * b:.0f}%" for g, b in figures["busy"].items())
    split = " ".join(f"{g} {n}" for g, n in figures["split"].items())
    sys.stdout.write(
        f"{setting.label}: {figures['episodes']} episodes, {figures['accepted/h']:,.0f} accepted/h | busy: {busy} | "
        f"driver {figures['driver CPU ms/episode']:.1f} CPU-ms/episode, {figures['outside calls ms/episode']:.0f} "
        f"ms/episode outside calls (median) | peak RSS {peaks.rss_mb:,.0f} MB, {peaks.threads} threads, "
        f"{peaks.connections} PostgreSQL connections, {peaks.in_flight} in flight | actors at the end: {split}\n"
    )
    sys.stdout.flush()


def settings(args: argparse.Namespace, stages: dict[str, HeldStage]) -> list[Setting]:
    per_actor = {t: s.gpus for t, s in stages.items()}
    even = split_gpus(dict.fromkeys(per_actor, 1.0), per_actor, args.gpus)
    n, episodes, in_flight = args.actors, args.episodes, 4 * sum(even.values())
    made = {
        "actors": Setting(f"{n} actors per pool", episodes, 4 * n * len(stages), stages, dict.fromkeys(stages, n)),
        "even": Setting(f"{args.gpus:g} GPUs even", episodes, in_flight, stages, actors=even),
        "split": Setting(f"{args.gpus:g} GPUs split by the run", episodes, in_flight, stages, gpus=args.gpus),
    }
    n, gpus, big = args.in_flight, args.in_flight_gpus, sharded(stages, args.in_flight_sharding)
    made["in-flight"] = Setting(f"{n} in flight on {gpus:g} GPUs", 2 * n, n, big, gpus=gpus)
    return [made[name] for name in args.settings]


def sharded(stages: dict[str, HeldStage], times: float) -> dict[str, HeldStage]:
    """Each actor holding `times` its stage's GPUs and a call taking 1/`times` of the time (a model sharded
    across GPUs): the same GPU-seconds per call in fewer actor processes (each is ~100 MB of its own)."""
    return {t: HeldStage(s.seconds / times, s.gpus * times) for t, s in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", type=Path, default=HERE / "scale.yaml")
    parser.add_argument("--time-scale", type=float, default=8.0, help="multiplies every stage's seconds")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--actors", type=int, default=8, help="actors per GPU pool in the first setting")
    parser.add_argument("--gpus", type=float, default=8, help="GPUs split evenly, then by the run")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=SETTINGS, help="which to run (default: all)")
    parser.add_argument("--in-flight", type=int, default=2000, help="episodes in flight at once in 'in-flight'")
    parser.add_argument("--in-flight-gpus", type=float, default=64)
    parser.add_argument("--in-flight-sharding", type=float, default=4, help="there, GPUs per actor x the stage's")
    parser.add_argument("--quick", action="store_true", help="a tiny size of every setting, for the tests")
    args = parser.parse_args()
    if args.quick:
        args.time_scale, args.episodes, args.actors, args.gpus = 0.2, 16, 1, 6
        args.in_flight, args.in_flight_gpus, args.in_flight_sharding = 24, 6, 1  # the same actors throughout
    spec = yaml.safe_load(args.stages.read_text())["stages"]
    stages = {t: HeldStage(float(s["seconds"]) * args.time_scale, float(s["gpus"])) for t, s in spec.items()}
    plan = settings(args, stages)
    gpus = max(s.gpus or sum(n * s.stages[t].gpus for t, n in s.actors.items()) for s in plan)
    logging.basicConfig(level=logging.WARNING, format="  %(message)s", stream=sys.stdout)  # the GPU splits
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # A Ray of our own, never a cluster that runs on this machine.
    ray.init(
        address="local",
        num_gpus=gpus,
        include_dashboard=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    try:
        with throwaway_server(max_connections=300) as server, tempfile.TemporaryDirectory() as tmp:
            db_url, root = new_database(server), Path(tmp)
            pools: Pools | None = None
            for setting in plan:  # settings with the same stages share the pools' actors
                cfg = config(root, db_url, setting)
                if pools is None or pools.stages != setting.stages:
                    if pools is not None:
                        pools.shut()
                    build = partial(held_toolkit, stages=setting.stages)
                    pools = Pools(cfg, build(cfg, TOOLS), build=build)  # type: ignore[arg-type]
                    pools.stages = setting.stages
                report(setting, measure(pools, cfg, setting))
            if pools is not None:
                pools.shut()
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
