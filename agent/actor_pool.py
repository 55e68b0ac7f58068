"""A Ray actor pool's bookkeeping, kept apart from Ray: which actors are loading, idle, busy or retiring, and
for how long they have been ready. agent/ray_pools.py passes in the calls that start, probe and kill actors,
which keeps this testable without a Ray."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tools.base import ToolError

log = logging.getLogger("agent.ray_pools")  # its lines are the Ray pools' (main.py shows them to the user)


class Pool:
    """A tool's actors. An actor is idle (ready for a call) only once it has loaded its tools, so a call
    never waits on a loading actor while another is free; a call takes an idle actor and gives it back.
    Shrinking retires loading and idle actors at once and busy ones when their call ends. Ray calls are
    passed in (start, probe, kill), which keeps the bookkeeping testable without Ray."""

    def __init__(self, name: str, start: Callable[[], Any], probe: Callable[[Any], Any], kill: Callable[..., None]):
        self.name, self.start, self.probe, self.kill = name, start, probe, kill
        self.actors: list[Any] = []  # the pool's actors: loading, idle or busy (not retiring)
        self.idle: deque[Any] = deque()
        self.loading: dict[Any, Any] = {}  # probe ref -> its actor, until the actor has loaded its tools
        self.retiring: set[Any] = set()  # busy actors to retire when their call ends
        self.started = False  # an actor has loaded its tools
        self.failed: str | None = None  # why an actor could not load its tools
        self.changed = threading.Condition()
        self.ready_actor_s, self._ready_since = 0.0, time.perf_counter()  # see ready_seconds()

    def resize(self, count: int) -> None:
        with self.changed:
            while len(self.actors) < count:
                actor = self.start()
                self.actors.append(actor)
                self.loading[self.probe(actor)] = actor
            surplus = len(self.actors) - count
            for ref, actor in list(self.loading.items())[:surplus]:
                del self.loading[ref]
                self._retire_now(actor)
                surplus -= 1
            while surplus > 0 and self.idle:
                self._retire_now(self.idle.pop())
                surplus -= 1
            for actor in [a for a in self.actors if a not in self.idle and a not in self.loading.values()][:surplus]:
                self.actors.remove(actor)
                self.retiring.add(actor)

    def probes(self) -> list[Any]:
        with self.changed:
            return list(self.loading)

    def take(self) -> Any:
        """An idle actor, waited for."""
        with self.changed:
            while not self.idle:
                if not self.actors:
                    raise ToolError("tool_failed", f"Ray pool {self.name} has no actor left: {self.failed}")
                self.changed.wait()
            return self.idle.popleft()

    def give_back(self, actor: Any, restarting: bool = False) -> None:
        """After a call: idle again, retired if the pool shrank meanwhile, or, `restarting` (killed past its
        time limit), loading until it has loaded its tools again."""
        with self.changed:
            if actor in self.retiring:
                self._count()
                self.retiring.discard(actor)
                self.kill(actor)
            elif restarting:
                self._count()
                self.loading[self.probe(actor)] = actor
            else:
                self.idle.append(actor)
                self.changed.notify()

    def loaded(self, ref: Any, error: str | None = None) -> None:
        """An actor's probe came back: it is idle, or (`error`) it could not load its tools and leaves."""
        with self.changed:
            actor = self.loading.pop(ref, None)
            if actor is None:
                return  # retired while it loaded
            self._count()
            if error is not None:
                self.actors.remove(actor)
                self.failed = f"its actors could not load their tools: {error}"
                log.warning("Ray pool %s: an actor could not load its tools: %s", self.name, error)
            else:
                self.started = True
                self.idle.append(actor)
            self.changed.notify_all()

    def unplaced(self, actor: Any, asked: str, waited_s: float) -> None:
        """An actor Ray has found no room for: it leaves the pool (Ray would keep it pending for ever)."""
        with self.changed:
            ref = next((r for r, a in self.loading.items() if a == actor), None)
            if ref is None:
                return
            del self.loading[ref]
            self._retire_now(actor)
            self.failed = f"no node had room for an actor ({asked}) within {waited_s:g} s"
            log.warning("Ray pool %s: %s; it goes on with %d", self.name, self.failed, len(self.actors))
            self.changed.notify_all()

    def ready_seconds(self) -> float:
        """Actor-seconds the pool's actors have been ready (loaded, idle or busy) so far: a busy fraction's
        denominator that counts a pool grown or shrunk as it was."""
        with self.changed:
            self._count()
            return self.ready_actor_s

    def _retire_now(self, actor: Any) -> None:
        self._count()
        self.actors.remove(actor)
        self.kill(actor)

    def _count(self) -> None:
        """Adds up ready actor-seconds until now; called before the number of ready actors changes."""
        now = time.perf_counter()
        ready = len(self.actors) + len(self.retiring) - len(self.loading)
        self.ready_actor_s += ready * (now - self._ready_since)
        self._ready_since = now
