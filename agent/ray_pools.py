"""RayExecutor: each tool runs in a Ray actor pool, its backend built once per actor and kept resident (tools on
one model share a pool: tools.by_model). The driver holds the tools as declared (tools.declare_tools: what
keys, records and charges a call, and what each pool reserves), never loaded. Episodes stay in the driver
(LangGraph threads); a call waits for an idle actor of its tool's pool (queued_s) and is timed inside the
actor (executors.LocalExecutor), so a charge is what the call held there. Artifacts travel as refs into the
shared --out store, never as frames through Ray's object store.

Faults are Ray's to repair: an actor that dies (killed, out of memory, its node lost) is restarted
(max_restarts) and the call it was running is run again there (max_task_retries), so the driver sees the
call return late, not fail; only the run that returns is recorded and charged, once, by call(). Actors are
not pinned to nodes, so a lost node's actors restart wherever the cluster has room. A call past its
timeout_s is cancelled (a cancelled call is not run again) and its actor killed and restarted, which frees
its device; the call is recorded as a timeout."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import BaseModel

from agent.actor_pool import Pool
from agent.budget import split_gpus
from agent.config import ConfigError, RunConfig
from agent.executors import Executed, LocalExecutor
from agent.ray_cluster import (
    CPUS_OF_A_CPU_ALGORITHM,
    CPUS_OF_OTHER_ACTORS,
    RESOURCES,
    Ask,
    capacity,
    connect,
    fit,
    place,
)
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.engine import open_engine
from tools import build_toolkit, by_model, pool_resources
from tools.base import Resources, Tool, ToolContext, ToolError

log = logging.getLogger(__name__)
# Runs of one call Ray makes when its actor dies under it: a call that kills its actor every time (a
# crash on one input) ends as a failed call instead of restarting the actor for ever.
MAX_TASK_RETRIES = 3
REPORT_EVERY_S = 10.0  # while pools start, how often the run says which are still starting
PLACE_WITHIN_S = 30.0  # an actor Ray finds no room for leaves its pool then, instead of pending for ever

Builder = Callable[[RunConfig, list[str]], dict[str, Tool]]


def configured_toolkit(cfg: RunConfig, tools: list[str]) -> dict[str, Tool]:
    return build_toolkit(cfg.tools, cfg.backends, cfg.allow_download, tools)


class ToolHost:
    """The actor: the tools of one pool, loaded once, run one call at a time. `build` makes the tools (the
    configured backends; bench/scale.py passes simulated ones)."""

    def __init__(self, cfg_json: str, tools: list[str], build: Builder = configured_toolkit) -> None:
        cfg = RunConfig.model_validate_json(cfg_json)
        # Its calls' artifacts, a few rows per call, in the store the run has made.
        engine = open_engine(cfg.resolved_db_url, pool_size=0, migrate_schema=False)
        self.toolkit = build(cfg, tools)
        self.io, self.prompts, self.local = ArtifactStore(cfg.out, engine), PromptBook(cfg.prompts_dir), LocalExecutor()

    def ready(self) -> bool:
        """Answers once the tools are loaded (the constructor has returned)."""
        return True

    def run(self, tool_name: str, inp: BaseModel) -> tuple[Executed, list[Any], dict[str, Any] | None]:
        tool = self.toolkit[tool_name]
        ctx = ToolContext(io=self.io, prompts=self.prompts)
        executed = self.local.run(tool, inp, ctx, limit_time=False)  # the driver kills us past the limit
        return executed, ctx.rendered, getattr(ctx, "usage", None)


def pool_ask(resources: Resources, override: Any) -> Ask:
    """What one actor of a pool reserves: config first (pools.<tool>, then the backend spec), else the
    defaults of agent.ray_cluster."""
    gpus = resources.gpus if resources.gpus is not None else resources.devices
    if override and override.gpus is not None:
        gpus = override.gpus
    memory = override.memory_gb * 2**30 if override and override.memory_gb is not None else 0.0
    if override and override.cpus is not None:
        return Ask(cpus=override.cpus, gpus=gpus, memory=memory)
    if "cpus" in resources.model_fields_set:
        return Ask(cpus=resources.cpus, gpus=gpus, memory=memory)
    cpus = CPUS_OF_A_CPU_ALGORITHM if resources.clock == "process_cpu" else CPUS_OF_OTHER_ACTORS
    return Ask(cpus=cpus, gpus=gpus, memory=memory, cpus_given=False)


def actor_options(ask: Ask) -> dict[str, Any]:
    return {
        "num_gpus": ask.gpus,
        "num_cpus": ask.cpus,
        **({"memory": ask.memory} if ask.memory else {}),
        "max_restarts": -1,  # a killed, hung or lost actor comes back
        "max_task_retries": MAX_TASK_RETRIES,  # and the call it was running is run again there
        # OpenCV's threads, as many as the CPUs the actor reserved (Ray caps OMP's the same way): actors side
        # by side with a thread per core each oversubscribe the cores, and their spinning threads were charged.
        "runtime_env": {"env_vars": {"OPENCV_FOR_THREADS_NUM": str(max(1, int(ask.cpus)))}},
    }


class RayExecutor:
    def __init__(
        self,
        cfg: RunConfig,
        toolkit: dict[str, Tool],
        measured_s: dict[str, float] | None = None,
        build: Builder = configured_toolkit,
    ) -> None:
        """`toolkit`: the tools as declared, which the actors `build` and load."""
        try:
            import ray
        except ImportError as err:
            raise ConfigError("--executor ray needs Ray: pip install -e '.[scale]'") from err
        self.ray, self.cfg = ray, cfg
        said, self.owns_ray = connect(cfg)
        log.info(said)
        self.toolkit = toolkit
        # tool -> its pool: tools on one model (the captioner, planner and judges on one VLM) share one
        groups = {group: [tool.name for tool in tools] for group, tools in by_model(toolkit).items()}
        self.pool_of = {name: group for group, names in groups.items() for name in names}
        resources = {g: pool_resources([toolkit[name] for name in names]) for g, names in groups.items()}
        self.asks = {g: pool_ask(r, cfg.pools.get(g)) for g, r in resources.items()}
        self.nodes = capacity()
        counts = {g: o.actors if (o := cfg.pools.get(g)) and o.actors else r.actors for g, r in resources.items()}
        counts.update(self.split(measured_s or {}))
        self.asks, counts, shrunk = fit(self.asks, counts, self.nodes)
        if shrunk:
            log.warning(shrunk)
        host, cfg_json = ray.remote(ToolHost), cfg.model_dump_json()
        self.placing: dict[Any, tuple[Any, float, str]] = {}  # actor -> its group's ready ref, since, pool
        self.groups: dict[Any, Any] = {}  # actor -> its placement group
        self.pools: dict[str, Pool] = {}
        for group, names in groups.items():
            start = partial(self._start, host, group, (cfg_json, names, build))
            self.pools[group] = Pool(group, start, lambda a: a.ready.remote(), self._kill)
            self.pools[group].resize(counts[group])
        self.closed = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="ray-pools", daemon=True)
        self.watcher.start()
        self._wait_until_started()

    def _start(self, host: Any, group: str, args: tuple[Any, ...]) -> Any:
        """An actor in a placement group of its own: Ray reserves what it asks before it starts, so an actor
        that finds no room (resources taken meanwhile, or split across nodes) shows as a group not placed
        rather than as an actor pending for ever. Without a placement group where it asks for nothing."""
        from ray.util import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        ask, options = self.asks[group], actor_options(self.asks[group])
        bundle = {r: ask.amount(r) for r, _, _ in RESOURCES if ask.amount(r)}
        placed = placement_group([bundle]) if bundle else None
        if placed is not None:
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(placed)
        actor = host.options(**options).remote(*args)
        if placed is not None:
            self.groups[actor] = placed
            self.placing[actor] = (placed.ready(), time.monotonic(), group)
        return actor

    def _kill(self, actor: Any, restart: bool = False) -> None:
        from ray.util import remove_placement_group

        self.ray.kill(actor, no_restart=not restart)
        if not restart and (placed := self.groups.pop(actor, None)) is not None:
            self.placing.pop(actor, None)
            remove_placement_group(placed)

    def _watch(self) -> None:
        """Moves actors that have loaded their tools to their pool's idle ones, and takes out of their pool
        the actors Ray has found no room for within PLACE_WITHIN_S."""
        while not self.closed.is_set():
            if placing := dict(self.placing):
                ready = set(self.ray.wait([r for r, _, _ in placing.values()], num_returns=len(placing), timeout=0)[0])
                for actor, (ref, since, group) in placing.items():
                    if ref in ready:
                        self.placing.pop(actor, None)
                    elif time.monotonic() - since > PLACE_WITHIN_S:
                        ask = self.asks[group]
                        self.pools[group].unplaced(actor, f"{ask.gpus:g} GPUs, {ask.cpus:g} CPUs", PLACE_WITHIN_S)
            probes = {ref: pool for pool in self.pools.values() for ref in pool.probes()}
            if not probes:
                self.closed.wait(0.1)
                continue
            ready, _ = self.ray.wait(list(probes), num_returns=len(probes), timeout=0.1)
            for ref in ready:
                try:
                    self.ray.get(ref)
                    probes[ref].loaded(ref)
                except self.ray.exceptions.RayError as err:
                    probes[ref].loaded(ref, first_line(err))

    def _wait_until_started(self) -> None:
        """Waits until each pool has an actor that has loaded its tools (minutes with real weights), saying
        which are still starting."""
        started, said = time.perf_counter(), 0.0
        log.info("Ray: starting %d pools (%d actors)", len(self.pools), sum(len(p.actors) for p in self.pools.values()))
        while starting := [p for p in self.pools.values() if not p.started]:
            if failed := next((p for p in starting if not p.actors), None):
                self.close()
                raise ConfigError(f"Ray pool {failed.name}: {failed.failed}")
            waited = time.perf_counter() - started
            if waited - said >= REPORT_EVERY_S:
                said = waited
                log.info("Ray: pools still starting after %.0f s: %s", waited, ", ".join(p.name for p in starting))
            time.sleep(0.1)
        log.info("Ray: every pool has an actor ready after %.0f s", time.perf_counter() - started)

    def split(self, measured_s: dict[str, float]) -> dict[str, int]:
        """With --gpus: actors per GPU pool in proportion to each stage's cost, measured in the run (by the
        tools' charges) or, before that, the configured prior; {} without --gpus."""
        if self.cfg.gpus is None:
            return {}
        have = sum(n["GPU"] for n in self.nodes)
        if self.cfg.gpus > have + 1e-6:
            raise ConfigError(f"--gpus {self.cfg.gpus:g}: the Ray cluster has {have:g} GPUs free")
        gpu_pools = {g: a.gpus for g, a in self.asks.items() if a.gpus > 0}
        measured = {g: sum(s for t, s in measured_s.items() if self.pool_of.get(t, t) == g) for g in gpu_pools}
        priors = {g: self._prior(g) for g in gpu_pools}
        try:
            return split_gpus(measured if any(measured.values()) else priors, gpu_pools, self.cfg.gpus)
        except ValueError as err:
            raise ConfigError(str(err)) from err

    def _prior(self, group: str) -> float:
        """The configured prior of a pool: its own, plus those of the tools it runs (1 when none is set)."""
        names = {group} | {t for t, g in self.pool_of.items() if g == group}
        priors = [c.prior_s for n in names if (c := self.cfg.pools.get(n)) and c.prior_s is not None]
        return sum(priors) if priors else 1.0

    def rebalance(self, measured_s: dict[str, float]) -> None:
        """Re-splits the GPUs by what each pool has cost so far (--gpus), where the new split fits the
        cluster; logged when it changes."""
        split = self.split(measured_s)
        now = {g: len(p.actors) for g, p in self.pools.items()}
        if not split or all(now[g] == n for g, n in split.items()):
            return
        if place(self.asks, {**now, **split}, self.nodes)[0]:
            log.warning("Ray: the GPU split %s does not fit the cluster; the pools stay as they are", split)
            return
        for group, count in split.items():
            self.pools[group].resize(count)
        log.warning("GPU split: %s", ", ".join(f"{g} {n}x{self.asks[g].gpus:g}" for g, n in split.items()))

    def run(self, tool: Tool, inp: BaseModel, ctx: ToolContext) -> Executed:
        pool, asked = self.pools[self.pool_of[tool.name]], time.perf_counter()
        actor = pool.take()
        queued_s, restarting = time.perf_counter() - asked, False
        try:
            ref = actor.run.remote(tool.name, inp)
            timeout_s = tool.resources.timeout_s
            executed, rendered, usage = self.ray.get(ref, timeout=timeout_s)
        except self.ray.exceptions.GetTimeoutError:  # hung: only killing its actor frees its device
            self.ray.cancel(ref)  # so that the restarted actor does not run it again
            self._kill(actor, restart=True)
            restarting = True
            detail = f"{tool.name} ran past its {timeout_s:g} s limit; its actor was killed and restarted"
            return Executed(None, ToolError("timeout", detail), (timeout_s or 0) * tool.resources.devices, queued_s)
        except self.ray.exceptions.RayActorError as err:  # died on every run Ray gave the call
            restarting = True
            detail = f"{tool.name}: its actor died {MAX_TASK_RETRIES + 1} times during the call: {first_line(err)}"
            return Executed(None, ToolError("tool_failed", detail), 0.0, queued_s)
        finally:
            pool.give_back(actor, restarting)
        ctx.rendered.extend(rendered)
        if usage and hasattr(ctx, "usage"):
            ctx.usage.update(usage)  # type: ignore[attr-defined]
        return Executed(executed.output, executed.error, executed.device_s, queued_s + executed.queued_s)

    def close(self) -> None:
        self.closed.set()
        self.watcher.join()
        for pool in self.pools.values():
            for actor in (*pool.actors, *pool.retiring):
                self._kill(actor)
        if self.owns_ray:
            self.ray.shutdown()


def first_line(err: BaseException) -> str:
    return next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
