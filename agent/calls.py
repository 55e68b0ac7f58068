"""call(): the one place a tool runs. It looks the call up by its content key, runs it if needed, times
it, and records it, with what it was charged, in one row, so a rerun after a crash reuses the result and
charges nothing twice."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from agent.executors import Executed, Executor, LocalExecutor
from agent.faults import FAULTS, REUSED_FAILURES, OutageStop, is_run_fault
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.tables import PromptVersion, ToolCall
from tools.base import Tool, ToolContext, ToolError, as_tool_error

log = logging.getLogger(__name__)

ARTIFACT_REF = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]+$")


def recorded_error(tool: Tool, err: BaseException | None) -> ToolError | None:
    """What a tool raised, as its call records it; a fault of the run's (agent/faults.py) or an interrupt is
    raised on."""
    if err is None:
        return None
    if not isinstance(err, Exception) or is_run_fault(err):
        raise err
    return as_tool_error(tool.name, err)


class OutageBreaker:
    """Per backend, how many calls in a row found it unreachable; at `limit` the backend counts as down and
    every call to it stops at once, until the run is started again."""

    def __init__(self, limit: int) -> None:
        self.limit, self.failures, self.last = limit, defaultdict[str, int](int), dict[str, str]()
        self._lock = threading.Lock()

    def is_down(self, backend: str) -> bool:
        with self._lock:
            return self.failures[backend] >= self.limit

    def failed(self, backend: str, detail: str) -> bool:
        """Counts a failure; True once the backend counts as down."""
        with self._lock:
            self.failures[backend] += 1
            self.last[backend] = detail
            return self.failures[backend] >= self.limit

    def succeeded(self, backend: str) -> None:
        with self._lock:
            if self.failures[backend] < self.limit:
                self.failures[backend] = 0

    def down(self, tool: str, backend: str) -> OutageStop:
        return OutageStop(
            f"{tool} stopped the run: its backend {backend} was unreachable {self.limit} calls in a row "
            f"(policy.outage_after); the last time: {self.last.get(backend, '')}"
        )


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


def at_site(site: CallSite, tool: str) -> SelectOfScalar[ToolCall]:
    """The ToolCall of one call site: (episode or training round, node, attempt, tool) is unique."""
    return select(ToolCall).where(
        ToolCall.episode_id == site.episode_id,  # IS NULL where the site has none
        ToolCall.training_id == site.training_id,
        ToolCall.node == site.node,
        ToolCall.attempt == site.attempt,
        ToolCall.tool == tool,
    )


def reusable(key: str) -> SelectOfScalar[ToolCall]:
    """The first call that ran with this content key and left a result another call may reuse."""
    return (
        select(ToolCall)
        .where(
            ToolCall.call_key == key,
            col(ToolCall.reused_call_id).is_(None),
            col(ToolCall.output_json).is_not(None) | col(ToolCall.error_kind).in_(REUSED_FAILURES),
        )
        .order_by(col(ToolCall.id))
        .limit(1)
    )


class ToolCaller:
    def __init__(
        self,
        engine: Engine,
        toolkit: dict[str, Tool],
        io: ArtifactStore,
        prompts: PromptBook,
        executor: Executor | None = None,
        outage_after: int = 3,
    ) -> None:
        self.engine, self.toolkit, self.io, self.prompts = engine, toolkit, io, prompts
        self.executor: Executor = executor or LocalExecutor()
        self.outages = OutageBreaker(outage_after)
        self._running: dict[str, threading.Event] = {}  # call key -> set when the call running it is recorded
        self._running_guard = threading.Lock()
        self.known_prompts: set[str] = set()  # template versions already in the store: no lookup per call

    def call_key(self, tool: Tool, inp: BaseModel) -> str:
        templates = {name: self.prompts.source(name).sha256 for name in tool.keyed_templates}
        # backend_id names the backend's code and version (a CPU algorithm's "-v3"); the settings, everything
        # configured that can change the tool's outputs (Tool.settings), so a call made under others is not reused.
        settings = hashlib.sha256(canonical_json(tool.settings).encode()).hexdigest()
        payload = [tool.name, tool.version, tool.backend_id, settings, inp.model_dump(mode="json"), templates]
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()

    def call(self, tool_name: str, inp: BaseModel, site: CallSite) -> Any:
        """The call's result: from this site's row, from the cache, or by running the tool. The same
        content asked for by two episodes at once runs once: the second waits and reuses it, as it would
        have at concurrency 1."""
        tool = self.toolkit[tool_name]
        key = self.call_key(tool, inp)
        while True:
            with self._running_guard:
                running = self._running.get(key)
                if running is None:
                    self._running[key] = threading.Event()
                    break
            running.wait()
        try:
            return self._call(tool, key, inp, site)
        finally:
            with self._running_guard:
                self._running.pop(key).set()

    def _call(self, tool: Tool, key: str, inp: BaseModel, site: CallSite) -> Any:
        with Session(self.engine) as s:
            done = s.exec(at_site(site, tool.name)).first()
            if done is not None and done.call_key == key and self._artifacts_present(done):
                return self._result(tool, done.model_dump())  # this very step already ran before a crash
            cached = s.exec(reusable(key)).first()
            if cached is not None and not self._artifacts_present(cached):
                cached = None
        if cached is not None:
            recorded = self._record(site, tool, key, inp, redone=done is not None, reused=cached)
            return self._result(tool, recorded)
        ctx, executed, error = self._run_through_outages(tool, inp)
        output = executed.output
        recorded = self._record(
            site, tool, key, inp, redone=done is not None, output=output, error=error, executed=executed, ctx=ctx
        )
        return self._result(tool, recorded)

    def _run_through_outages(self, tool: Tool, inp: BaseModel) -> tuple[ToolContext, Executed, ToolError | None]:
        """Runs the tool; a call that finds its backend unreachable is tried again, up to policy.outage_after
        times, and is never recorded as the episode's failure: past that, or once the backend counts as down
        from other episodes' calls, OutageStop stops the run, with the episode checkpointed before this step."""
        backend = tool.backend_id
        for _ in range(self.outages.limit):
            if self.outages.is_down(backend):
                break
            ctx = ToolContext(io=self.io, prompts=self.prompts)
            executed = self.executor.run(tool, inp, ctx)
            error = recorded_error(tool, executed.error)
            if error is None or FAULTS[error.kind][0] != "run":
                self.outages.succeeded(backend)
                return ctx, executed, error
            log.warning("backend unreachable", extra={"tool": tool.name, "backend": backend, "error": error.detail})
            if self.outages.failed(backend, error.detail):
                break
        raise self.outages.down(tool.name, backend)

    def _artifacts_present(self, row: ToolCall) -> bool:
        """Whether a recorded call's files are all there with their bytes: one gone or changed since (checked
        against its name) is made again by running the call, as if it had never run."""
        refs = artifact_refs(json.loads(row.output_json)) if row.output_json else []
        return all(self.io.exists(ref) for ref in refs)

    def _record(
        self,
        site: CallSite,
        tool: Tool,
        key: str,
        inp: BaseModel,
        *,
        redone: bool = False,
        reused: ToolCall | None = None,
        output: BaseModel | None = None,
        error: ToolError | None = None,
        executed: Executed | None = None,
        ctx: ToolContext | None = None,
    ) -> dict[str, Any]:
        """The ToolCall's columns as written."""
        seconds = executed.device_s if executed else 0.0
        usage = getattr(ctx, "usage", None)  # an LLM call's latency, tokens and transport retries
        prompts = [vars(p) for p in ctx.rendered] if ctx else (json.loads(reused.prompts_json) if reused else [])
        fields = dict(
            call_key=key,
            run_id=site.run_id,
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
            queued_s=executed.queued_s if executed else 0.0,
            usage_json=canonical_json(usage) if usage else (reused.usage_json if reused else None),
            reused_call_id=reused.id if reused else None,
        )
        try:
            self._write(site, tool, fields, redone)
        except IntegrityError:  # the site was written meanwhile: by a thread of an earlier, stopped run
            self._write(site, tool, fields, redone=True)
        self._remember_prompts(prompts)
        log.info(
            "tool call",
            extra={
                "tool": tool.name,
                "episode": site.episode_id or site.training_id,
                "node": site.node,
                "device_seconds": seconds,
                "queued_s": fields["queued_s"],
                "error": fields["error_kind"],
                "reused": reused is not None,
            },
        )
        return fields

    def _write(self, site: CallSite, tool: Tool, fields: dict[str, Any], redone: bool) -> None:
        """The call's row, in one transaction. A step that ran before (its files vanished, or its input changed)
        has its row rewritten and the redone work added to what it was charged: one row per step."""
        with Session(self.engine) as s:
            row = s.exec(at_site(site, tool.name)).first() if redone else None
            if row is None:
                s.add(ToolCall(**fields))
            else:
                row.sqlmodel_update({**fields, "device_seconds": row.device_seconds + fields["device_seconds"]})
                s.add(row)
            s.commit()

    def _remember_prompts(self, prompts: list[dict[str, str]]) -> None:
        for p in prompts:
            if p["sha256"] in self.known_prompts:
                continue
            with Session(self.engine) as s:
                if s.get(PromptVersion, p["sha256"]) is None:
                    s.add(PromptVersion(sha256=p["sha256"], name=p["name"], origin=p["origin"], text=p["text"]))
                    try:
                        s.commit()
                    except IntegrityError:  # another episode recorded the same text first
                        s.rollback()
            self.known_prompts.add(p["sha256"])

    @staticmethod
    def _result(tool: Tool, call: Mapping[str, Any]) -> Any:
        """What a recorded call answers: its output, or the error it ended with, raised."""
        if call["error_kind"]:
            raise ToolError(call["error_kind"], call["error_detail"] or "", call["error_field"])
        return tool.Output.model_validate_json(call["output_json"] or "{}")
