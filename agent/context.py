"""RunContext: the live handles a node needs (config, the tool caller, the store). Not checkpointed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine

from agent.calls import CallSite, ToolCaller
from agent.config import RunConfig
from agent.executors import Executor, LocalExecutor
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from tools import set_up
from tools.base import Tool


@dataclass(frozen=True)
class RunContext:
    run_id: str
    config: RunConfig
    caller: ToolCaller
    engine: Engine
    io: ArtifactStore
    dataset_dir: Path

    def call(self, tool: str, inp: BaseModel, state: dict[str, Any], node: str) -> Any:
        site = CallSite(self.run_id, state["episode_id"], node, state.get("attempt", 0))
        return self.caller.call(tool, inp, site)

    def has_tool(self, tool: str) -> bool:
        return tool in self.caller.toolkit


def open_executor(cfg: RunConfig, toolkit: dict[str, Tool], measured_s: dict[str, float] | None = None) -> Executor:
    """Where the declared tools run: in Ray actor pools that load them (--executor ray), or in this process,
    which loads them now."""
    if cfg.executor == "ray":
        from agent.ray_pools import RayExecutor  # Ray is in the scale extra

        return RayExecutor(cfg, toolkit, measured_s)
    set_up(toolkit, cfg.backends, cfg.allow_download)
    return LocalExecutor()


def open_context(
    cfg: RunConfig, engine: Engine, run_id: str, toolkit: dict[str, Tool], executor: Executor
) -> RunContext:
    """The store's handles, and a caller of the declared tools that runs them through `executor`."""
    io = ArtifactStore(cfg.out, engine)
    caller = ToolCaller(engine, toolkit, io, PromptBook(cfg.prompts_dir), executor, cfg.policy.outage_after)
    return RunContext(run_id=run_id, config=cfg, caller=caller, engine=engine, io=io, dataset_dir=cfg.out / "dataset")
