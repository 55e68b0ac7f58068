"""RunContext: the live handles a node needs (config, the tool caller, the store). Not checkpointed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine

from agent.calls import CallSite, ToolCaller
from agent.config import RunConfig
from agent.executors import Executor
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from tools import build_toolkit, tool_settings
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


def open_context(
    cfg: RunConfig,
    engine: Engine,
    run_id: str,
    tools: Iterable[str],
    executor: Executor | None = None,
    toolkit: dict[str, Tool] | None = None,
) -> RunContext:
    """The store's handles and the named tools, loaded (or described by the executor that runs them)."""
    io = ArtifactStore(cfg.out, engine)
    toolkit = toolkit or build_toolkit(cfg.tools, cfg.backends, cfg.allow_download, tools)
    settings = {name: tool_settings(name, cfg.tools, cfg.backends) for name in toolkit}
    caller = ToolCaller(engine, toolkit, io, PromptBook(cfg.prompts_dir), executor, settings, cfg.policy.outage_after)
    return RunContext(run_id=run_id, config=cfg, caller=caller, engine=engine, io=io, dataset_dir=cfg.out / "dataset")
