"""A Ray actor pool's bookkeeping, kept apart from Ray: which actors are loading, idle, busy or retiring, and
for how long they have been ready. agent/ray_pools.py passes in the calls that start, probe and kill actors,
which keeps this testable without a Ray."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from agent.faults import PoolStop

log = logging.getLogger("agent.ray_pools")  # its lines are the Ray pools' (main.py shows them to the user)
# Deaths of one actor while it loads its tools (a kill, its node lost) before it leaves its pool: Ray restarts
# it each time, and a pool whose actors die like this for good stops the run instead of restarting them for ever.
LOAD_DEATHS = 3
# Actors Ray gave up on (their restarts spent, or killed for good) that one pool replaces by fresh ones in a run:
# enough for the odd actor worn out by kills and lost nodes over a long run, while a tool that kills every
# process it runs in (each actor dies MAX_RESTARTS + 1 times first) stops its pool after a few actors.
DEAD_REPLACED = 3
WAIT_SLICE_S = 1.0  # how often a call waiting for an idle actor looks whether the pool has stopped


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
        self.dropped: set[Any] = set()  # actors the driver gave up on: a call they held runs again on another
        self.deaths: Counter[Any] = Counter()  # per actor, its deaths while it loaded its tools
        self.replaced = 0  # actors Ray gave up on that fresh ones replaced (DEAD_REPLACED)
        self.started = False  # an actor has loaded its tools
        self.failed: str | None = None  # why the last actor to leave left
        self.stopped: str | None = None  # why the pool hands out no more actors (the driver's watcher died)
        self.changed = threading.Condition()
        self.ready_actor_s, self._ready_since = 0.0, time.perf_counter()  # see ready_seconds()
        self.started_at: dict[Any, float] = {}  # actors started and not yet loaded: when they were started
        self.load_s: list[float] = []  # how long each started actor took to be placed and load its tools

    def resize(self, count: int) -> None:
        with self.changed:
            while len(self.actors) < count:
                self._start_one()
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

    def probes(self) -> dict[Any, Any]:
        """Each probe ref still out, and its actor."""
        with self.changed:
            return dict(self.loading)

    def busy(self) -> list[Any]:
        with self.changed:
            return [a for a in (*self.actors, *self.retiring) if a not in self.idle and a not in self.loading.values()]

    def take(self) -> Any:
        """An idle actor, waited for. A pool left with no actor (none could be placed or loaded within its
        deadline: ray_waits) stops the run, resumably."""
        with self.changed:
            while not self.idle:
                if self.stopped is not None:
                    raise PoolStop(self.stopped)
                if not self.actors:
                    raise PoolStop(f"Ray pool {self.name} has no actor left: {self.failed}")
                self.changed.wait(WAIT_SLICE_S)
            return self.idle.popleft()

    def give_back(self, actor: Any, restarting: bool = False) -> None:
        """After a call: idle again, retired if the pool shrank meanwhile, or, `restarting` (killed past its
        time limit, or died), loading until it has loaded its tools again."""
        with self.changed:
            if actor in self.dropped:
                return
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

    def loaded(self, ref: Any, error: str | None = None, died: bool = False) -> None:
        """An actor's probe came back: it is idle; or (`died`) its process died while it loaded (Ray restarts
        it: probed again, up to LOAD_DEATHS times); or (`error`) its tools could not load, and it leaves
        (killed, its reservation freed). Either way no fresh actor replaces it: its tools would fail to load
        alike (missing weights, too little memory to load them)."""
        with self.changed:
            actor = self.loading.pop(ref, None)
            if actor is None:
                return  # retired while it loaded
            if died:
                self.deaths[actor] += 1
                if self.deaths[actor] < LOAD_DEATHS:
                    log.warning("Ray pool %s: an actor died loading its tools (%s); Ray restarts it", self.name, error)
                    self.loading[self.probe(actor)] = actor
                    return
                error = f"died {LOAD_DEATHS} times while loading its tools: {error}"
            self._count()
            if error is not None:
                self._retire_now(actor)
                self.failed = f"its actors could not load their tools: {error}"
                log.warning("Ray pool %s: an actor could not load its tools: %s", self.name, error)
            else:
                self.started = True
                self.deaths.pop(actor, None)
                if (started := self.started_at.pop(actor, None)) is not None:
                    self.load_s.append(time.perf_counter() - started)
                self.idle.append(actor)
            self.changed.notify_all()

    def went_down(self, actor: Any) -> None:
        """The driver saw an idle actor down (killed, its node lost): it is handed out again once Ray has
        restarted it and it has loaded its tools."""
        with self.changed:
            if actor in self.idle:
                self._count()
                self.idle.remove(actor)
                self.loading[self.probe(actor)] = actor

    def drop(self, actor: Any, why: str) -> None:
        """The driver gives up on an actor (no node with room for it, not loaded): it is killed and leaves the
        pool; a call it held runs again on another actor. It is not replaced: a fresh actor would wait for the
        same room, or load the same way (the pools are re-fitted when a node joins)."""
        with self.changed:
            if self._remove(actor):
                self._left(why)

    def died_for_good(self, actor: Any, cause: str, room: int) -> None:
        """Ray gave up on an actor (its restarts spent, or killed for good): it leaves, and a fresh one starts in
        its place while the pool has fewer actors than `room` (what the nodes alive hold of its target), up to
        DEAD_REPLACED in the run; past that it leaves as drop() says. A call it held runs again on another."""
        with self.changed:
            if not self._remove(actor):
                return  # it was retiring
            if len(self.actors) < room and self.replaced < DEAD_REPLACED:
                self.replaced += 1
                log.warning("Ray pool %s: an actor died for good (%s); a new one starts", self.name, cause)
                self._start_one()
                return
            spent = f", after {DEAD_REPLACED} that did were replaced" if self.replaced >= DEAD_REPLACED else ""
            self._left(f"an actor died for good ({cause}){spent}")

    def _remove(self, actor: Any) -> bool:
        """Kills the actor and takes it out of the pool; False if it had left already or was retiring."""
        if actor not in self.actors and actor not in self.retiring:
            return False
        self._count()
        self.started_at.pop(actor, None)
        for ref in [r for r, a in self.loading.items() if a == actor]:
            del self.loading[ref]
        if actor in self.idle:
            self.idle.remove(actor)
        self.dropped.add(actor)
        self.kill(actor)
        if actor in self.retiring:
            self.retiring.discard(actor)
            return False
        self.actors.remove(actor)
        return True

    def _left(self, why: str) -> None:
        self.failed = why
        log.warning("Ray pool %s: an actor left: %s; %d left", self.name, why, len(self.actors))
        self.changed.notify_all()

    def stop(self, why: str) -> None:
        with self.changed:
            self.stopped = why
            self.changed.notify_all()

    def ready_seconds(self) -> float:
        """Actor-seconds the pool's actors have been ready (loaded, idle or busy) so far: a busy fraction's
        denominator that counts a pool grown or shrunk as it was."""
        with self.changed:
            self._count()
            return self.ready_actor_s

    def typical_load_s(self) -> float:
        """The median time an actor of this pool took from its start to its tools loaded (0 before one has):
        what a GPU moved to this pool is idle for."""
        with self.changed:
            return statistics.median(self.load_s) if self.load_s else 0.0

    def _start_one(self) -> None:
        actor = self.start()
        self.started_at[actor] = time.perf_counter()
        self.actors.append(actor)
        self.loading[self.probe(actor)] = actor

    def _retire_now(self, actor: Any) -> None:
        self._count()
        self.started_at.pop(actor, None)
        self.actors.remove(actor)
        self.kill(actor)

    def _count(self) -> None:
        """Adds up ready actor-seconds until now; called before the number of ready actors changes."""
        now = time.perf_counter()
        ready = len(self.actors) + len(self.retiring) - len(self.loading)
        self.ready_actor_s += ready * (now - self._ready_since)
        self._ready_since = now
