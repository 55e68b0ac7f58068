"""Where a tool runs, and how long it held its device. call() asks an executor to run a tool; caching,
recording and charging stay in call(). The executor times the call where it runs, after any device lock
or actor queue, so waiting is recorded (queued_s) and never charged.

What a device is, per tool (Resources.clock):
- 'wall': a model on a GPU (or a torch model on the CPU, tiny profile). One call at a time per resident
  backend (a lock keyed by backend id, so the Qwen2.5-VL shared by captioner and judges is one device);
  charged the seconds from taking the lock until the work returns, times the devices held.
- 'process_cpu': our CPU algorithms (cpu profile, ingest). Their device is this process's CPU: one such
  call holds it at a time (one lock for all of them) and is charged the CPU seconds the process used
  while it held it, which counts the helper threads FFmpeg, OpenCV and BLAS start for the call. Thread
  CPU time alone misses those threads, and wall time counts the other episodes' work on the same
  cores: both made the same episodes cost more at higher concurrency. BLAS runs on one thread during
  such a call: its idle worker threads busy-wait, which counted as CPU time and grew with the machine's
  load, not with the work.
A remote endpoint holds no device of ours (devices 0): its call is timed for the trace, charged 0, unless
its spec prices it (device_seconds_per_1k_tokens, a self-hosted endpoint): then by the tokens it reported."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel
from threadpoolctl import ThreadpoolController

from tools.base import Tool, ToolContext, ToolError

THREAD_SCHED_CLOCK = 6  # Linux: CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED


@dataclass(frozen=True)
class Executed:
    output: BaseModel | None
    error: BaseException | None  # what the tool raised; call() records it
    device_s: float  # held the device(s): seconds x devices, measured where the tool ran
    queued_s: float  # waited for a device lock or a free actor: recorded, never charged


class Executor(Protocol):
    def run(self, tool: Tool, inp: BaseModel, ctx: ToolContext) -> Executed: ...

    def rebalance(self, measured_s: dict[str, float]) -> None:
        """Share devices among tools by what each has cost so far (device-seconds per tool)."""
        ...

    def close(self) -> None: ...


def thread_cpu_s(native_id: int) -> float | None:
    """CPU seconds of a thread of this process by its kernel id; None once it has ended. The clock id is
    made as glibc makes it, from the id alone: pthread_getcpuclockid reads the thread's pthread struct,
    which is freed (and crashes the process) once the thread has ended."""
    try:
        return time.clock_gettime(((~native_id) << 3) | THREAD_SCHED_CLOCK)
    except OSError:
        return None


def python_threads_cpu_s(but: int) -> dict[int, float]:
    """CPU seconds of every live Python thread but one (`but`, a kernel thread id)."""
    seconds = {t.native_id: thread_cpu_s(t.native_id) for t in threading.enumerate() if t.native_id not in (None, but)}
    return {tid: cpu for tid, cpu in seconds.items() if cpu is not None}  # type: ignore[misc]


class Clock:
    """Seconds held so far, in the tool's clock. For 'process_cpu': the process's CPU time less what the
    other Python threads (episodes, the admission loop, threads started meanwhile) used in the same time,
    which is orchestration, not this call's work. The native threads a library starts for the call
    (FFmpeg, OpenCV, BLAS) are not Python threads, so they are counted."""

    def __init__(self, kind: str) -> None:
        self.kind, self.own_thread = kind, threading.get_native_id()
        self.start = time.perf_counter() if kind != "process_cpu" else time.process_time()
        self.others_at_start = python_threads_cpu_s(but=self.own_thread) if kind == "process_cpu" else {}

    def elapsed(self) -> float:
        if self.kind != "process_cpu":
            return time.perf_counter() - self.start
        others = python_threads_cpu_s(but=self.own_thread)
        used_by_others = sum(cpu - self.others_at_start.get(tid, 0.0) for tid, cpu in others.items())
        return max(0.0, time.process_time() - self.start - used_by_others)


class DeviceHold:
    """One call's hold on its device: taken after a wait (queued_s), given back once, by the call when it
    ends or by its caller when it gives up on it; held_s is the time held so far, in the tool's clock."""

    def __init__(self, lock: threading.Lock | None, clock: str) -> None:
        self.lock, self.clock_kind = lock, clock
        self.asked, self.taken, self._given_back = time.perf_counter(), threading.Event(), threading.Lock()
        self.queued_s = 0.0
        self.clock: Clock | None = None
        self.released_at: float | None = None

    def take(self, wait_s: float | None = None) -> bool:
        """Waits for the device (at most `wait_s` seconds; None: as long as it takes). False if not had."""
        got = True if self.lock is None else self.lock.acquire(timeout=-1 if wait_s is None else wait_s)
        self.queued_s = time.perf_counter() - self.asked
        if got:
            self.clock = Clock(self.clock_kind)
        self.taken.set()
        return got

    def give_back(self) -> None:
        with self._given_back:
            if self.released_at is None and self.clock is not None:
                self.released_at = self.clock.elapsed()
                if self.lock is not None:
                    self.lock.release()

    @property
    def held_s(self) -> float:
        """Seconds held: until given back, or so far."""
        if self.released_at is not None:
            return self.released_at
        return self.clock.elapsed() if self.clock is not None else 0.0


@dataclass(frozen=True)
class Abandoned:
    """A call given up past its time limit that still holds its device: the device is not another call's until
    it ends, and a call waits for it at most `limit_s` (the abandoned call's own limit) before giving up."""

    tool: str
    at: float
    limit_s: float


def charge_s(tool: Tool, held_s: float, ctx: ToolContext) -> float:
    """Device-seconds a finished call is charged: the time it held its devices, or, for an endpoint priced per
    1k tokens, the tokens it reported (a failed call's tokens too: the endpoint did that work)."""
    price = tool.resources.device_seconds_per_1k_tokens
    if price is None:
        return held_s * tool.resources.devices
    return price * (ctx.usage.get("prompt_tokens", 0) + ctx.usage.get("completion_tokens", 0)) / 1000


class LocalExecutor:
    """The tool runs in this process, in the calling episode's thread (or in a helper thread when it has a time
    limit, so a hung call can be abandoned)."""

    def __init__(self) -> None:
        self._device_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()
        self._blas = ThreadpoolController()
        self._abandoned: dict[str, Abandoned] = {}  # device -> the abandoned call that still holds it

    @staticmethod
    def _device(tool: Tool) -> str | None:
        if tool.resources.devices == 0:
            return None  # an endpoint elsewhere holds nothing of ours
        return "cpu" if tool.resources.clock == "process_cpu" else tool.backend_id

    def _device_lock(self, device: str | None) -> threading.Lock | None:
        if device is None:
            return None
        with self._guard:
            return self._device_locks[device]

    def _work(self, tool: Tool, inp: BaseModel, ctx: ToolContext) -> BaseModel:
        if tool.resources.clock == "process_cpu":
            with self._blas.limit(limits=1, user_api="blas"):
                return tool(inp, ctx)
        return tool(inp, ctx)

    def run(self, tool: Tool, inp: BaseModel, ctx: ToolContext, limit_time: bool = True) -> Executed:
        """`limit_time=False` where the caller enforces the limit itself (a Ray actor's driver kills it).

        A call past its limit is abandoned (a Python thread cannot be killed) but keeps its device until it
        ends: the model's own state and locks are the hung call's, and a call let in beside it would wait on
        them while charged. A later call waits for the device, uncharged, at most the abandoned call's limit;
        past that it fails as backend_unavailable, which the run counts as an outage and stops on, resumably
        (a new process starts without the hung call)."""
        device = self._device(tool)
        hold = DeviceHold(self._device_lock(device), tool.resources.clock)
        abandoned = self._abandoned.get(device) if device is not None else None
        result: dict[str, Any] = {}

        def work() -> None:
            if not hold.take(wait_s=abandoned.limit_s if abandoned else None):
                return
            try:
                result["output"] = self._work(tool, inp, ctx)
            except BaseException as err:  # noqa: BLE001 -- handed back to the calling thread
                result["error"] = err
            finally:
                hold.give_back()
                if device is not None and (left := self._abandoned.get(device)) and left.tool == tool.name:
                    self._abandoned.pop(device, None)  # the abandoned call ended: its device is free again

        devices, timeout_s = tool.resources.devices, tool.resources.timeout_s if limit_time else None
        if timeout_s is None and abandoned is None:
            work()
        else:
            worker = threading.Thread(target=work, name=f"tool-{tool.name}", daemon=True)
            worker.start()
            hold.taken.wait()  # queued for the device: not part of the time limit
            worker.join(timeout_s)
            if worker.is_alive():  # past its limit: abandoned, holding its device until it ends
                if device is not None:
                    self._abandoned[device] = Abandoned(tool.name, time.monotonic(), timeout_s or 0.0)
                detail = f"{tool.name} ran past its {timeout_s:g} s limit and was abandoned"
                return Executed(None, ToolError("timeout", detail), hold.held_s * devices, hold.queued_s)
        if hold.clock is None:  # never had the device: an abandoned call still holds it
            assert abandoned is not None
            detail = (
                f"{tool.name}: its device is still held by a {abandoned.tool} call abandoned "
                f"{time.monotonic() - abandoned.at:.0f} s ago past its {abandoned.limit_s:g} s limit"
            )
            return Executed(None, ToolError("backend_unavailable", detail), 0.0, hold.queued_s)
        return Executed(result.get("output"), result.get("error"), charge_s(tool, hold.held_s, ctx), hold.queued_s)

    def rebalance(self, measured_s: dict[str, float]) -> None:
        return None  # one process: every tool shares what it has

    def close(self) -> None:
        return None
