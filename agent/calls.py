"""call(): the one place a tool runs. It looks the call up by its content key, runs it if needed, times
it, and records the ToolCall and its Charge in one transaction, so a rerun after a crash reuses the
result and charges nothing twice."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from prompts.loader import PromptBook, PromptError
from store.artifacts import ArtifactStore
from store.tables import Charge, PromptVersion, ToolCall
from tools.base import Tool, ToolContext, ToolError, tool_error

log = logging.getLogger(__name__)

ARTIFACT_REF = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]+$")
DETERMINISTIC_ERRORS = ("bad_input",)  # reusable from the cache; every other failure may pass next time
# The output disk full, over quota, read-only or failing: not the tool's fault, and nothing an episode
# can retry its way out of. These stop the run (resumable) instead of being recorded as tool failures.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


def is_storage_fault(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in STORAGE_ERRNOS


def run_with_timeout(work: Callable[[], BaseModel], timeout_s: float | None, name: str) -> BaseModel:
    """Run `work` in its own thread and give up waiting after `timeout_s`. A Python thread cannot be
    killed: a hung call is abandoned (and keeps whatever lock its backend holds until it returns)."""
    if timeout_s is None:
        return work()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["output"] = work()
        except BaseException as err:  # noqa: BLE001 -- handed back to the calling thread
            result["error"] = err

    worker = threading.Thread(target=target, name=f"tool-{name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise ToolError("timeout", f"{name} ran past its {timeout_s:g} s limit and was abandoned")
    if "error" in result:
        raise result["error"]
    return result["output"]


@dataclass(frozen=True)
class CallSite:
    """Where a call happens: a node of an episode, or a step of a training round (training_id)."""

    run_id: str
    episode_id: str | None
    node: str
    attempt: int
    training_id: str | None = None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def artifact_refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if ARTIFACT_REF.match(value) else []
    if isinstance(value, dict):
        return [r for v in value.values() for r in artifact_refs(v)]
    if isinstance(value, list | tuple):
        return [r for v in value for r in artifact_refs(v)]
    return []


def row_at(site: CallSite, tool: str):  # type: ignore[no-untyped-def]
    """The ToolCall row of one call site: (episode or training round, node, attempt, tool) is unique."""
    return select(ToolCall).where(
        ToolCall.episode_id == site.episode_id,
        ToolCall.training_id == site.training_id,
        ToolCall.node == site.node,
        ToolCall.attempt == site.attempt,
        ToolCall.tool == tool,
    )


class ToolCaller:
    def __init__(self, engine: Engine, toolkit: dict[str, Tool], io: ArtifactStore, prompts: PromptBook) -> None:
        self.engine, self.toolkit, self.io, self.prompts = engine, toolkit, io, prompts

    def call_key(self, tool: Tool, inp: BaseModel) -> str:
        templates = {name: self.prompts.source(name).sha256 for name in tool.templates}
        payload = [tool.name, tool.version, tool.backend_id, inp.model_dump(mode="json"), templates]
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()

    def call(self, tool_name: str, inp: BaseModel, site: CallSite) -> Any:
        tool = self.toolkit[tool_name]
        key = self.call_key(tool, inp)
        with Session(self.engine) as s:
            done = s.exec(row_at(site, tool.name)).first()
            if done is not None and done.call_key == key and self._artifacts_present(done):
                return self._result(tool, done)  # this very step already ran before a crash
            cached = s.exec(
                select(ToolCall)
                .where(
                    ToolCall.call_key == key,
                    ToolCall.reused_call_id.is_(None),  # type: ignore[union-attr]
                    (ToolCall.output_json.is_not(None)) | (ToolCall.error_kind.in_(DETERMINISTIC_ERRORS)),  # type: ignore[union-attr]
                )
                .order_by(ToolCall.id)
            ).first()
            if cached is not None and not self._artifacts_present(cached):
                cached = None
        if cached is not None:
            row = self._record(site, tool, key, inp, reused=cached)
            return self._result(tool, row)
        ctx = ToolContext(io=self.io, prompts=self.prompts)
        started = time.perf_counter()
        output: BaseModel | None = None
        error: ToolError | None = None
        try:
            output = run_with_timeout(lambda: tool(inp, ctx), tool.resources.timeout_s, tool.name)
        except Exception as err:  # noqa: BLE001 -- any tool fault is recorded on the episode, never fatal
            # The store's or the templates' fault, not the tool's: the runner stops the run, resumably.
            if is_storage_fault(err) or isinstance(err, PromptError):
                raise
            error = tool_error(tool.name, err)
        seconds = (time.perf_counter() - started) * tool.resources.devices
        row = self._record(site, tool, key, inp, output=output, error=error, seconds=seconds, ctx=ctx)
        return self._result(tool, row)

    def _artifacts_present(self, row: ToolCall) -> bool:
        refs = artifact_refs(json.loads(row.output_json)) if row.output_json else []
        return all(self.io.path(ref).is_file() for ref in refs)

    def _record(
        self,
        site: CallSite,
        tool: Tool,
        key: str,
        inp: BaseModel,
        *,
        reused: ToolCall | None = None,
        output: BaseModel | None = None,
        error: ToolError | None = None,
        seconds: float = 0.0,
        ctx: ToolContext | None = None,
    ) -> ToolCall:
        prompts = [vars(p) for p in ctx.rendered] if ctx else (json.loads(reused.prompts_json) if reused else [])
        fields = dict(
            call_key=key,
            episode_id=site.episode_id,
            training_id=site.training_id,
            node=site.node,
            attempt=site.attempt,
            tool=tool.name,
            tool_version=tool.version,
            backend=tool.backend_id,
            input_json=canonical_json(inp.model_dump(mode="json")),
            output_json=(
                reused.output_json
                if reused
                else canonical_json(output.model_dump(mode="json"))
                if output is not None
                else None
            ),
            error_kind=reused.error_kind if reused else error.kind if error else None,
            error_field=reused.error_field if reused else error.field if error else None,
            error_detail=reused.error_detail if reused else error.detail if error else None,
            prompts_json=canonical_json(prompts),
            device_seconds=seconds,
            devices=tool.resources.devices,
            reused_call_id=reused.id if reused else None,
        )
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.exec(row_at(site, tool.name)).first()
            if row is None:
                row = ToolCall(**fields)
                s.add(row)
            else:  # this step ran before but its files vanished or its input changed: it was redone
                for name, value in fields.items():
                    setattr(row, name, value)
            s.flush()
            if reused is None:
                charge = s.exec(select(Charge).where(Charge.tool_call_id == row.id)).first()
                if charge is None:
                    s.add(Charge(tool_call_id=row.id, run_id=site.run_id, tool=tool.name, device_seconds=seconds))
                else:  # redone work costs again; the ledger keeps one row per step
                    charge.device_seconds += seconds
            s.commit()
        self._remember_prompts(prompts)
        log.info(
            "tool call",
            extra={
                "tool": tool.name,
                "episode": site.episode_id or site.training_id,
                "node": site.node,
                "device_seconds": seconds,
                "error": row.error_kind,
                "reused": reused is not None,
            },
        )
        return row

    def _remember_prompts(self, prompts: list[dict[str, str]]) -> None:
        for p in prompts:
            with Session(self.engine) as s:
                if s.get(PromptVersion, p["sha256"]) is None:
                    s.add(PromptVersion(sha256=p["sha256"], name=p["name"], origin=p["origin"], text=p["text"]))
                    try:
                        s.commit()
                    except IntegrityError:  # another episode recorded the same text first
                        s.rollback()

    @staticmethod
    def _result(tool: Tool, row: ToolCall) -> Any:
        if row.error_kind:
            raise ToolError(row.error_kind, row.error_detail or "", row.error_field)  # type: ignore[arg-type]
        return tool.Output.model_validate_json(row.output_json or "{}")
