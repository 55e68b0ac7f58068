"""RayExecutor: each tool runs in a Ray actor pool of its own, its backend built once per actor and kept
resident. Episodes stay in the driver (LangGraph threads); a call waits for a free actor of its tool's
pool (queued_s) and is timed inside the actor (executors.LocalExecutor), so a charge is what the call held
there. Artifacts travel as refs into the shared --out store, never as frames through Ray's object store.

Faults: a call past its timeout_s kills its actor (Ray restarts it: the GPU and its memory come back) and
is recorded as a timeout; an actor that dies mid-call (killed, node lost) is retried once on another
actor. Only the call that returns is recorded and charged, once, by call()."""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.budget import split_gpus
from agent.config import ConfigError, RunConfig
from agent.executors import Executed, LocalExecutor
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.engine import open_engine
from tools import build_toolkit, pool_resources, shared_model_pools, tool_resources
from tools.base import Resources, Tool, ToolContext, ToolError

log = logging.getLogger(__name__)
SHARED_MODEL_TOOLS = {"train_editto": "editto", "edit_with_editto": "editto"}  # one resident Editto


class ToolHost:
    """The actor: the tools of one pool, loaded once, run one call at a time."""

    def __init__(self, cfg_json: str, tools: list[str]) -> None:
        cfg = RunConfig.model_validate_json(cfg_json)
        engine = open_engine(cfg.resolved_db_url)
        self.toolkit = build_toolkit(cfg.tools, cfg.backends, cfg.allow_download, tools)
        self.io, self.prompts, self.local = ArtifactStore(cfg.out, engine), PromptBook(cfg.prompts_dir), LocalExecutor()

    def describe(self) -> dict[str, tuple[str, str, tuple[str, ...], type, type, str]]:
        return {n: (t.name, t.version, t.templates, t.Input, t.Output, t.backend_id) for n, t in self.toolkit.items()}

    def run(self, tool_name: str, inp: BaseModel) -> tuple[Executed, list[Any], dict[str, Any] | None]:
        tool = self.toolkit[tool_name]
        ctx = ToolContext(io=self.io, prompts=self.prompts)
        executed = self.local.run(tool, inp, ctx, limit_time=False)  # the driver kills us past the limit
        return executed, ctx.rendered, getattr(ctx, "usage", None)


@dataclass
class RemoteTool:
    """What the driver knows of a tool that runs in a pool: enough to key, record and check its calls."""

    name: str
    version: str
    templates: tuple[str, ...]
    Input: type  # noqa: N815 -- the Tool protocol's name
    Output: type  # noqa: N815
    backend_id: str
    resources: Resources = Resources()

    def __call__(self, inp: BaseModel, ctx: ToolContext) -> BaseModel:
        raise RuntimeError(f"{self.name} runs in its Ray actor pool, not in the driver")


class Pool:
    """A tool's actors, and a queue of the free ones: a call waits for one, uses it, gives it back."""

    def __init__(self, start: Any, count: int, gpus_per_actor: float) -> None:
        self.start, self.gpus_per_actor = start, gpus_per_actor  # start() makes one more actor
        self.actors: list[Any] = []
        self.free = queue.Queue[Any]()
        self.resize(count)

    def resize(self, count: int) -> None:
        """Grow now; shrink by the actors free now (one busy is retired by a later resize)."""
        import ray

        while len(self.actors) < count:
            actor = self.start()
            self.actors.append(actor)
            self.free.put(actor)
        while len(self.actors) > count:
            try:
                actor = self.free.get_nowait()
            except queue.Empty:
                return
            self.actors.remove(actor)
            ray.kill(actor)


def pool_name(tool: str) -> str:
    return SHARED_MODEL_TOOLS.get(tool, tool)


def actor_options(resources: Resources, override: Any) -> dict[str, Any]:
    gpus = resources.gpus if resources.gpus is not None else resources.devices
    cpus = override.cpus if override and override.cpus is not None else resources.cpus
    return {
        "num_gpus": override.gpus if override and override.gpus is not None else gpus,
        "num_cpus": cpus,
        "max_restarts": -1,  # a killed (hung) or lost actor comes back; its call is ours to retry
        "max_task_retries": 0,
        # OpenCV's threads, as many as the CPUs the actor reserved (Ray caps OMP's the same way): actors side
        # by side with a thread per core each oversubscribe the cores, and their spinning threads were charged.
        "runtime_env": {"env_vars": {"OPENCV_FOR_THREADS_NUM": str(max(1, int(cpus)))}},
    }


class RayExecutor:
    def __init__(self, cfg: RunConfig, tools: list[str], measured_s: dict[str, float] | None = None) -> None:
        try:
            import ray
        except ImportError as err:
            raise ConfigError("--executor ray needs Ray: pip install -e '.[scale]'") from err

        if not ray.is_initialized() and cfg.ray_address is None:  # a Ray of our own, on this machine
            code = str(Path(__file__).resolve().parents[1])  # its workers import our code from here
            ray.init(num_gpus=cfg.gpus, runtime_env={"env_vars": {"PYTHONPATH": code}})
        elif not ray.is_initialized():
            ray.init(address=cfg.ray_address)  # a cluster: every machine has the project installed
        self.ray, self.cfg = ray, cfg
        host = ray.remote(ToolHost)
        # tool -> its pool: tools on one resident model (the captioner, planner and judges on one VLM) share one
        self.pool_of = {name: pool_name(name) for name in tools} | shared_model_pools(cfg.backends, tools)
        groups: dict[str, list[str]] = {}
        for name in tools:
            if name == "estimate_depth" and cfg.backends.depth is None:
                continue  # as build_toolkit: no depth video without a depth backend
            groups.setdefault(self.pool_of[name], []).append(name)
        self.pools: dict[str, Pool] = {}
        self.toolkit: dict[str, Tool] = {}
        for group, names in groups.items():
            resources, override = pool_resources(names, cfg.backends), cfg.pools.get(group)
            count = override.actors if override and override.actors else resources.actors
            options = actor_options(resources, override)
            start = lambda o=options, n=names: host.options(**o).remote(cfg.model_dump_json(), n)  # noqa: E731
            self.pools[group] = pool = Pool(start, count, options["num_gpus"])
            for name, described in ray.get(pool.actors[0].describe.remote()).items():
                tool = RemoteTool(*described)
                tool.resources = tool_resources(name, cfg.backends)
                self.toolkit[name] = tool  # type: ignore[assignment]
        self.split: dict[str, int] = {}
        self.rebalance(measured_s or {})

    def rebalance(self, measured_s: dict[str, float]) -> None:
        """With --gpus: actors per GPU pool in proportion to each stage's cost, measured in the run (by
        the tools' charges) or, before that, the configured prior. Logged when it changes."""
        if self.cfg.gpus is None:
            return
        gpu_pools = {g: p.gpus_per_actor for g, p in self.pools.items() if p.gpus_per_actor > 0}
        measured = {g: sum(s for t, s in measured_s.items() if self.pool_of.get(t, t) == g) for g in gpu_pools}
        priors = {g: self._prior(g) for g in gpu_pools}
        split = split_gpus(measured if any(measured.values()) else priors, gpu_pools, self.cfg.gpus)
        if split != self.split:
            self.split = split
            for group, count in split.items():
                self.pools[group].resize(count)
            log.warning("GPU split: %s", ", ".join(f"{g} {n}x{gpu_pools[g]:g}" for g, n in split.items()))

    def _prior(self, group: str) -> float:
        """The configured prior of a pool: its own, plus those of the tools it runs (1 when none is set)."""
        names = {group} | {t for t, g in self.pool_of.items() if g == group}
        priors = [c.prior_s for n in names if (c := self.cfg.pools.get(n)) and c.prior_s is not None]
        return sum(priors) if priors else 1.0

    def run(self, tool: Tool, inp: BaseModel, ctx: ToolContext) -> Executed:
        pool, asked = self.pools[self.pool_of[tool.name]], time.perf_counter()
        for attempt in (1, 2):  # an actor that died mid-call: once more, on another
            actor = pool.free.get()
            if attempt == 2:  # it may be one Ray is still restarting: wait until it is up
                self.ray.get(actor.__ray_ready__.remote())
            queued_s = time.perf_counter() - asked
            ref = actor.run.remote(tool.name, inp)
            try:
                return self._result(tool, actor, ref, ctx, queued_s)
            except self.ray.exceptions.RayActorError as err:
                log.warning("actor died mid-call", extra={"tool": tool.name, "attempt": attempt, "error": str(err)})
                if attempt == 2:
                    return Executed(
                        None, ToolError("tool_failed", f"{tool.name}: its actor died twice: {err}"), 0, queued_s
                    )
            finally:
                pool.free.put(actor)  # a dead or killed actor is being restarted by Ray; calls wait for it
        raise AssertionError("unreachable")

    def _result(self, tool: Tool, actor: Any, ref: Any, ctx: ToolContext, queued_s: float) -> Executed:
        timeout_s = tool.resources.timeout_s
        ready, _ = self.ray.wait([ref], timeout=timeout_s)
        if not ready:  # hung: only killing the actor frees its device; Ray starts a fresh one
            self.ray.kill(actor, no_restart=False)
            detail = f"{tool.name} ran past its {timeout_s:g} s limit; its actor was killed and restarted"
            return Executed(None, ToolError("timeout", detail), (timeout_s or 0) * tool.resources.devices, queued_s)
        executed, rendered, usage = self.ray.get(ref)
        ctx.rendered.extend(rendered)
        if usage and hasattr(ctx, "usage"):
            ctx.usage.update(usage)  # type: ignore[attr-defined]
        return Executed(executed.output, executed.error, executed.device_s, queued_s + executed.queued_s)

    def close(self) -> None:
        for pool in self.pools.values():
            for actor in pool.actors:
                self.ray.kill(actor)
