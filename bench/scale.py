"""Scale on Ray: stages that hold a simulated device (a sleep, per-stage times from a YAML) in the same
actor pools and the same RayExecutor.run the factory uses, driven by many episodes in flight in driver
threads. Prints, per setting, accepted samples per hour, each pool's busy fraction (device time over
actors x wall time) and the driver's orchestration time per episode (call time neither on a device nor
queued).

    python -m bench.scale [--stages bench/scale.yaml] [--episodes 120] [--actors 1 2 4 8] [--gpus 8]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from agent.budget import split_gpus
from agent.executors import Executed
from agent.ray_pools import Pool, RayExecutor
from tools.base import Resources, ToolContext

HERE = Path(__file__).parent


class Hold(BaseModel, frozen=True):
    seconds: float


class SleepHost:
    """An actor that holds its device for the time asked."""

    def run(self, stage: str, inp: Hold) -> tuple[Executed, list[Any], None]:
        started = time.perf_counter()
        time.sleep(inp.seconds)
        return Executed(inp, None, time.perf_counter() - started, 0.0), [], None


class Stage:
    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name, self.version, self.templates, self.backend_id = name, "1", (), "sleep"
        self.seconds, self.pass_rate = float(spec["seconds"]), float(spec.get("pass_rate", 1.0))
        self.resources = Resources(devices=spec["gpus"], gpus=spec["gpus"], timeout_s=None)


def start_pools(ray: Any, stages: list[Stage], actors: dict[str, int]) -> RayExecutor:
    executor = RayExecutor.__new__(RayExecutor)  # its run(), with pools of sleeping actors
    executor.ray = ray
    host = ray.remote(SleepHost)
    executor.pools = {
        s.name: Pool(lambda g=s.resources.gpus: host.options(num_gpus=g, num_cpus=0).remote(), actors[s.name], 1)
        for s in stages
    }
    for pool in executor.pools.values():
        ray.get([a.__ray_ready__.remote() for a in pool.actors])
    return executor


def episode(executor: RayExecutor, stages: list[Stage], rng: random.Random) -> tuple[bool, dict[str, float], float]:
    """One episode through the stages; (accepted, device-seconds per stage, orchestration seconds)."""
    held: dict[str, float] = {}
    overhead = 0.0
    for stage in stages:
        started = time.perf_counter()
        done = executor.run(stage, Hold(seconds=stage.seconds), ToolContext(io=None, prompts=None))  # type: ignore[arg-type]
        overhead += time.perf_counter() - started - done.device_s - done.queued_s
        held[stage.name] = done.device_s
        if rng.random() > stage.pass_rate:
            return False, held, overhead
    return True, held, overhead


def measure(ray: Any, stages: list[Stage], actors: dict[str, int], episodes: int) -> dict[str, Any]:
    executor = start_pools(ray, stages, actors)
    in_flight = 2 * sum(actors.values())  # enough that no pool waits for work
    rngs = [random.Random(i) for i in range(episodes)]
    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        results = list(pool.map(lambda r: episode(executor, stages, r), rngs))
    wall = time.perf_counter() - started
    for p in executor.pools.values():
        for actor in p.actors:
            ray.kill(actor)
    busy = {s.name: sum(r[1].get(s.name, 0.0) for r in results) / (actors[s.name] * wall) for s in stages}
    accepted = sum(r[0] for r in results)
    return {
        "accepted/h": accepted * 3600 / wall,
        "busy": busy,
        "orchestration ms/episode": 1000 * sum(r[2] for r in results) / episodes,
        "gpus": sum(actors[s.name] * s.resources.gpus for s in stages),  # type: ignore[operator]
    }


def report(label: str, figures: dict[str, Any]) -> None:
    busy = " ".join(f"{name} {100 * b:.0f}%" for name, b in figures["busy"].items())
    sys.stdout.write(
        f"{label:<28} {figures['gpus']:>5g} GPUs  {figures['accepted/h']:>8.0f} accepted/h  "
        f"{figures['orchestration ms/episode']:>6.2f} ms orchestration/episode  busy: {busy}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", type=Path, default=HERE / "scale.yaml")
    parser.add_argument("--episodes", type=int, default=120)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--gpus", type=float, default=8)
    args = parser.parse_args()
    stages = [Stage(name, spec) for name, spec in yaml.safe_load(args.stages.read_text())["stages"].items()]
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    most = max(max(args.actors) * sum(s.resources.gpus for s in stages), args.gpus)  # type: ignore[misc]
    ray.init(num_cpus=2, num_gpus=most, include_dashboard=False, logging_level="ERROR")
    try:
        for n in args.actors:
            report(f"{n} actor(s) per pool", measure(ray, stages, {s.name: n for s in stages}, args.episodes))
        per_actor = {s.name: float(s.resources.gpus) for s in stages}  # type: ignore[arg-type]
        cost = {s.name: s.seconds * s.resources.gpus * reach(stages, s) for s in stages}  # type: ignore[operator]
        even = split_gpus(dict.fromkeys(per_actor, 1.0), per_actor, args.gpus)
        auto = split_gpus(cost, per_actor, args.gpus)
        report(f"--gpus {args.gpus:g} even split", measure(ray, stages, even, args.episodes))
        report(f"--gpus {args.gpus:g} auto split", measure(ray, stages, auto, args.episodes))
        sys.stdout.write(f"even split {even}\nauto split {auto}\n")
    finally:
        ray.shutdown()


def reach(stages: list[Stage], stage: Stage) -> float:
    """The share of episodes that reach `stage`: the product of the pass rates before it."""
    share = 1.0
    for s in stages:
        if s is stage:
            return share
        share *= s.pass_rate
    return share


if __name__ == "__main__":
    main()
