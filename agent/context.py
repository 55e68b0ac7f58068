"""RunContext: the live handles a node needs (config, the tool caller, the store). Not checkpointed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine

from agent.calls import CallSite, ToolCaller
from agent.config import RunConfig
from store.artifacts import ArtifactStore


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
