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
from typing import Any

from pydantic import BaseModel

from agent.config import RunConfig
from agent.executors import Executed, LocalExecutor
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.engine import open_engine
from tools import build_toolkit, tool_resources
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

    def __init__(self, actors: list[Any]) -> None:
        self.actors, self.free = actors, queue.Queue[Any]()
        for actor in actors:
            self.free.put(actor)


def pool_name(tool: str) -> str:
    return SHARED_MODEL_TOOLS.get(tool, tool)


def actor_options(resources: Resources, override: Any) -> dict[str, Any]:
    gpus = resources.gpus if resources.gpus is not None else resources.devices
    return {
        "num_gpus": override.gpus if override and override.gpus is not None else gpus,
        "num_cpus": override.cpus if override and override.cpus is not None else resources.cpus,
        "max_restarts": -1,  # a killed (hung) or lost actor comes back; its call is ours to retry
        "max_task_retries": 0,
    }


class RayExecutor:
    def __init__(self, cfg: RunConfig, tools: list[str]) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=cfg.ray_address, num_gpus=cfg.gpus if cfg.ray_address is None else None)
        self.ray = ray
        host = ray.remote(ToolHost)
        groups: dict[str, list[str]] = {}
        for name in tools:
            if name == "estimate_depth" and cfg.backends.depth is None:
                continue  # as build_toolkit: no depth video without a depth backend
            groups.setdefault(pool_name(name), []).append(name)
        self.pools: dict[str, Pool] = {}
        self.toolkit: dict[str, Tool] = {}
        for group, names in groups.items():
            resources, override = tool_resources(names[0], cfg.backends), cfg.pools.get(group)
            count = override.actors if override and override.actors else resources.actors
            options = actor_options(resources, override)
            actors = [host.options(**options).remote(cfg.model_dump_json(), names) for _ in range(count)]
            self.pools[group] = Pool(actors)
            for name, described in ray.get(actors[0].describe.remote()).items():
                tool = RemoteTool(*described)
                tool.resources = tool_resources(name, cfg.backends)
                self.toolkit[name] = tool  # type: ignore[assignment]
            log.info("actor pool", extra={"pool": group, "actors": count, **options})

    def run(self, tool: Tool, inp: BaseModel, ctx: ToolContext) -> Executed:
        pool, asked = self.pools[pool_name(tool.name)], time.perf_counter()
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
