"""Orchestration cost per episode: the real run loop, graph, nodes, policy, ToolCaller and store (SQLite,
with LangGraph's SqliteSaver checkpointing every step synchronously, as main.py runs), with tools that do
nothing but return (bench/sim.py, every judge passing). An episode's orchestration time is its wall time
(Episode.started_at to finished_at) less the time spent inside its tools (ToolCall.device_seconds).

    python -m bench.overhead                          # 1,000 episodes at concurrency 1 and 16
    python -m bench.overhead --episodes 200 --profile # and where the time goes (cProfile, by package)

The machine is shared: CPU-ms per episode (this process's CPU time / episodes) is the steadier figure.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from langgraph.graph import END, START, StateGraph
from sqlalchemy import func
from sqlmodel import Session, col, select

from agent.admission import EpisodeBook, admit_episode
from agent.plan import PlannedEpisode, episode_input, plan_episodes
from agent.runner import Factory
from agent.state import EpisodeInput, EpisodeState
from bench.sim import PassRates
from bench.simulate import sim_factory
from store.checkpoints import open_checkpointer
from store.tables import Episode, NodeEvent, ToolCall

ALL_PASS = PassRates(keyframe=1.0, video=1.0, retry_keyframe=1.0, retry_video=1.0, judge_noise=0.0)
PACKAGES = ("sqlalchemy", "sqlmodel", "langgraph", "langchain", "pydantic", "sqlite3", "threading", "queue")


def orchestration_ms(factory: Factory) -> list[float]:
    """Per finished episode: wall milliseconds outside its tools."""
    with Session(factory.engine) as s:
        rows = s.exec(
            select(Episode.started_at, Episode.finished_at, func.coalesce(func.sum(ToolCall.device_seconds), 0.0))
            .join(ToolCall, col(ToolCall.episode_id) == Episode.id, isouter=True)
            .where(Episode.run_id == factory.run.id, col(Episode.finished_at).is_not(None))
            .group_by(Episode.id)
        ).all()
    return [((end - start).total_seconds() - inside) * 1e3 for start, end, inside in rows]


def measure(episodes: int, concurrency: int, root: Path) -> tuple[str, float]:
    """The table's row, and the graph steps an episode took (node events per episode)."""
    with sim_factory(episodes, ALL_PASS, root=root, checkpointer="sqlite", concurrency=concurrency) as factory:
        cpu, wall = time.process_time(), time.perf_counter()
        result = factory.execute()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        ms = sorted(orchestration_ms(factory))
        with Session(factory.engine) as s:
            events = s.exec(select(func.count()).select_from(NodeEvent)).one()
    done = result.totals.accepted + result.totals.discarded
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    row = (
        f"| {concurrency} | {done} | {statistics.median(ms):.1f} | {p95:.1f} | {done / wall:.1f} "
        f"| {cpu / done * 1e3:.1f} |\n"
    )
    return row, events / done


def langgraph_floor_ms(steps: int, root: Path, episodes: int = 300) -> float:
    """Median milliseconds per episode of LangGraph alone: a chain of `steps` nodes that do nothing, over the
    episode's state schema, with the run's checkpointer (store.checkpoints) and durability. What
    orchestration costs that is not ours."""
    graph = StateGraph(EpisodeState, input_schema=EpisodeInput)
    names = [f"step_{i}" for i in range(steps)]
    for name in names:
        graph.add_node(name, lambda state: {"attempt": 0})
    for a, b in itertools.pairwise([START, *names, END]):
        graph.add_edge(a, b)
    saver = open_checkpointer(f"sqlite:///{root / 'floor.sqlite'}", root / "floor-checkpoints.sqlite")
    compiled = graph.compile(checkpointer=saver)
    ms = []
    for i in range(episodes):
        start = time.perf_counter()
        config = {"configurable": {"thread_id": f"floor-{i}"}}
        inp = {"episode_id": f"floor-{i}", "clip_path": "clip.mp4", "clip_seed": i, "variant": 0, "seed": i}
        for _ in compiled.stream(inp, config, stream_mode="updates", durability="sync"):
            pass
        saver.delete_thread(f"floor-{i}")  # as the run loop does once an episode ends
        ms.append((time.perf_counter() - start) * 1e3)
    return statistics.median(ms)


def profile(episodes: int, root: Path) -> None:
    """cProfile of episodes run one after another in this thread, own time summed by package."""
    with sim_factory(episodes + 1, ALL_PASS, root=root, checkpointer="sqlite") as factory:
        planned = list(plan_episodes(factory.cfg.source_dir, factory.cfg.episodes_per_clip))[: episodes + 1]

        book = EpisodeBook.load(factory.engine, factory.run.id)

        def run(p: PlannedEpisode) -> None:  # as the run loop does: admitted with its category, run, booked
            planned_input = episode_input(factory.run.id, factory.cfg.seed, p)
            episode = admit_episode(factory.engine, factory.run.id, factory.cfg, planned_input, p.index, {}, book)
            assert episode is not None  # one at a time: no older episode is still running
            factory.episodes.run(episode)
            with Session(factory.engine) as s:
                book.add(s.get_one(Episode, episode["episode_id"]))

        run(planned[0])  # warm caches (compiled statements, imports)
        profiler = cProfile.Profile()
        profiler.enable()
        for p in planned[1:]:
            run(p)
        profiler.disable()
    stats = pstats.Stats(profiler)
    by_package: Counter[str] = Counter()
    for (path, _line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{path} {name}"
        package = next(
            (p for p in PACKAGES if p in where), "ours" if "/agent/" in path or "/store/" in path else "other"
        )
        by_package[package] += own
    total = sum(by_package.values())
    sys.stdout.write(f"\nprofile of {episodes} episodes, own time by package (cProfile inflates it):\n\n")
    for package, own in by_package.most_common():
        sys.stdout.write(f"- {package}: {own / episodes * 1e3:.1f} ms/episode ({own / total:.0%})\n")
    sys.stdout.write("\nhottest functions (own time):\n\n")
    stats.sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--profile", action="store_true", help="also profile where the time goes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:  # a real disk: the store as a run has it
        sys.stdout.write(
            "| concurrency | episodes | orchestration ms/episode, median | p95 | episodes/s | CPU-ms/episode |\n"
            "| --- | --- | --- | --- | --- | --- |\n"
        )
        steps = 0.0
        for concurrency in args.concurrency:
            row, steps = measure(args.episodes, concurrency, Path(tmp))
            sys.stdout.write(row)
        floor = langgraph_floor_ms(round(steps), Path(tmp), episodes=min(300, args.episodes))
        sys.stdout.write(
            f"\nLangGraph alone, {round(steps)} nodes that do nothing per episode with the same checkpointer and "
            f"durability (not ours): {floor:.1f} ms per episode, median\n"
        )
        if args.profile:
            profile(min(args.episodes, 200), Path(tmp))


if __name__ == "__main__":
    main()
