"""RayExecutor: each tool runs in a Ray actor pool, its backend built once per actor and kept resident (tools on
one model share a pool: tools.by_model). The driver holds the tools as declared (tools.declare_tools: what
keys, records and charges a call, and what each pool reserves), never loaded. Episodes stay in the driver
(LangGraph threads); a call waits for an idle actor of its tool's pool (queued_s) and is timed inside the
actor (executors.LocalExecutor), so a charge is what the call held there. Artifacts travel as refs into the
shared --out store, never as frames through Ray's object store.

Faults are Ray's to repair: an actor that dies (killed, out of memory, its node lost) is restarted
(MAX_RESTARTS), wherever the cluster has room (actors are not pinned, and reservations leave headroom:
agent.ray_cluster), and the call it was running is run again there (max_task_retries), so the driver sees the
call return late, not fail; the run that returns is recorded and charged once by call(), with what the
interrupted run held before its actor went down. A call past its timeout_s is cancelled (a cancelled call is
not run again) and its actor killed and restarted, which frees its device; the call is recorded as a timeout.

What is ours, because Ray lacks it: a watcher thread follows the cluster's nodes (ray.nodes()) and the pools'
actors (their state in Ray's GCS). A node that leaves or joins re-fits the pools to the nodes alive, in one
line; an actor that waits for a node with room longer than ray_waits.place_s, or loads longer than
ray_waits.load_s, is killed and leaves its pool (a call it held runs again on another); one Ray gave up on
(dead for good) is replaced by a fresh one at once, a few times a pool (actor_pool.DEAD_REPLACED); a pool left
with no actor stops the run, resumably (agent.faults.PoolStop)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import BaseModel

from agent.actor_pool import Pool
from agent.budget import split_gpus, weigh_resplit
from agent.config import ConfigError, RunConfig
from agent.executors import Executed, LocalExecutor
from agent.ray_cluster import (
    CPUS_OF_A_CPU_ALGORITHM,
    CPUS_OF_OTHER_ACTORS,
    RESOURCES,
    Ask,
    autoscaler_adds,
    capacity,
    connect,
    fit,
    place,
    reservable,
    shrink,
    training_gpus,
)
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.engine import open_engine
from tools import build_toolkit, by_model, pool_resources
from tools.base import Resources, Tool, ToolContext, ToolError

log = logging.getLogger(__name__)
# Runs of one call Ray makes when its actor dies under it: a call that kills its actor every time (a
# crash on one input) ends as a failed call instead of restarting the actor for ever.
MAX_TASK_RETRIES = 3
# Restarts of one actor (kills, its node lost) before Ray lets it die: a fresh one then takes its place
# (actor_pool.DEAD_REPLACED bounds how often).
MAX_RESTARTS = 8
REPORT_EVERY_S = 10.0  # how often the run says which pools are still starting, and what actors wait for
LOOK_EVERY_S = 1.0  # how often the watcher reads the nodes and the actors' states

Builder = Callable[[RunConfig, list[str]], dict[str, Tool]]


def configured_toolkit(cfg: RunConfig, tools: list[str]) -> dict[str, Tool]:
    return build_toolkit(cfg.tools, cfg.backends, cfg.allow_download, tools)


class ToolHost:
    """The actor: the tools of one pool, loaded once, run one call at a time. `build` makes the tools (the
    configured backends; bench/scale.py passes simulated ones)."""

    def __init__(self, cfg_json: str, tools: list[str], build: Builder = configured_toolkit) -> None:
        self.load_error: str | None = None
        try:
            cfg = RunConfig.model_validate_json(cfg_json)
            # Its calls' artifacts, a few rows per call, in the store the run has made.
            engine = open_engine(cfg.resolved_db_url, pool_size=0, migrate_schema=False)
            self.toolkit = build(cfg, tools)
            self.io, self.prompts = ArtifactStore(cfg.out, engine), PromptBook(cfg.prompts_dir)
            self.local = LocalExecutor()
        except Exception as err:  # noqa: BLE001 -- ready() says it, and the driver kills this actor
            # Raised here, Ray would report it as the actor's death, like a kill, which Ray repairs by a restart.
            self.load_error = f"{type(err).__name__}: {first_line(err)}"

    def ready(self) -> None:
        """Answers once the tools are loaded (the constructor has returned), or raises why they did not."""
        if self.load_error is not None:
            raise LoadFailed(self.load_error)

    def run(self, tool_name: str, inp: BaseModel) -> tuple[Executed, list[Any], dict[str, Any] | None]:
        tool = self.toolkit[tool_name]
        ctx = ToolContext(io=self.io, prompts=self.prompts)
        executed = self.local.run(tool, inp, ctx, limit_time=False)  # the driver kills us past the limit
        return executed, ctx.rendered, getattr(ctx, "usage", None)


def pool_ask(resources: Resources, override: Any) -> Ask:
    """What one actor of a pool reserves: config first (pools.<tool>, then the backend spec), else the
    defaults of agent.ray_cluster."""
    gpus = resources.gpus if resources.gpus is not None else resources.devices
    if override and override.gpus is not None:
        gpus = override.gpus
    memory = override.memory_gb * 2**30 if override and override.memory_gb is not None else 0.0
    if override and override.cpus is not None:
        return Ask(cpus=override.cpus, gpus=gpus, memory=memory)
    if "cpus" in resources.model_fields_set:
        return Ask(cpus=resources.cpus, gpus=gpus, memory=memory)
    cpus = CPUS_OF_A_CPU_ALGORITHM if resources.clock == "process_cpu" else CPUS_OF_OTHER_ACTORS
    return Ask(cpus=cpus, gpus=gpus, memory=memory, cpus_given=False)


def actor_options(ask: Ask) -> dict[str, Any]:
    return {
        "num_gpus": ask.gpus,
        "num_cpus": ask.cpus,
        **({"memory": ask.memory} if ask.memory else {}),
        "max_restarts": MAX_RESTARTS,  # a killed, hung or lost actor comes back
        "max_task_retries": MAX_TASK_RETRIES,  # and the call it was running is run again there
        # OpenCV's threads, as many as the CPUs the actor reserved (Ray caps OMP's the same way): actors side
        # by side with a thread per core each oversubscribe the cores, and their spinning threads were charged.
        "runtime_env": {"env_vars": {"OPENCV_FOR_THREADS_NUM": str(max(1, int(ask.cpus)))}},
    }


class RayExecutor:
    def __init__(
        self,
        cfg: RunConfig,
        toolkit: dict[str, Tool],
        measured_s: dict[str, float] | None = None,
        build: Builder = configured_toolkit,
    ) -> None:
        """`toolkit`: the tools as declared, which the actors `build` and load."""
        try:
            import ray
            from ray._private import state
        except ImportError as err:
            raise ConfigError("--executor ray needs Ray: pip install -e '.[scale]'") from err
        self.ray, self.state, self.cfg = ray, state, cfg
        said, self.owns_ray = connect(cfg)
        log.info(said)
        self.toolkit = toolkit
        # tool -> its pool: tools on one model (the captioner, planner and judges on one VLM) share one
        groups = {group: [tool.name for tool in tools] for group, tools in by_model(toolkit).items()}
        self.pool_of = {name: group for group, names in groups.items() for name in names}
        resources = {g: pool_resources([toolkit[name] for name in names]) for g, names in groups.items()}
        self.asks = {g: pool_ask(r, cfg.pools.get(g)) for g, r in resources.items()}
        self.nodes = capacity()
        self.alive = self.alive_nodes()
        self.targets = {g: o.actors if (o := cfg.pools.get(g)) and o.actors else r.actors for g, r in resources.items()}
        self.targets.update(self.split(measured_s or {}))  # what each pool would have on a cluster with room
        self.asks, counts, shrunk = fit(self.asks, self.targets, self.nodes, autoscaler_adds())
        if shrunk:
            log.warning(shrunk)
        host, cfg_json = ray.remote(ToolHost), cfg.model_dump_json()
        # Per actor, what the watcher saw: since when it has waited (for a node, or to load: its state's
        # key), when it last went down while it was up, the node it last ran on, and whether it is up.
        self.waiting: dict[Any, tuple[str, float]] = {}
        self.went_down: dict[Any, float] = {}
        self.node_of: dict[Any, str] = {}  # the node it last ran on
        self.up: set[Any] = set()
        self.broken: str | None = None  # why the watcher stopped
        self.looks, self.looked = 0, threading.Condition()  # the watcher's looks at the actors so far
        self.pools: dict[str, Pool] = {}
        for group, names in groups.items():
            start = partial(self._start, host, group, (cfg_json, names, build))
            self.pools[group] = Pool(group, start, self._probe, self._kill)
            self.pools[group].resize(counts[group])
        self.closed = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="ray-pools", daemon=True)
        self.watcher.start()
        try:
            self._wait_until_started()
        except BaseException:
            self.close()
            raise

    def _start(self, host: Any, group: str, args: tuple[Any, ...]) -> Any:
        """An actor with the pool's reservation. Not pinned to a node: Ray restarts it wherever there is room."""
        actor = host.options(**actor_options(self.asks[group])).remote(*args)
        self.waiting[actor] = ("place", time.monotonic())
        return actor

    def _probe(self, actor: Any) -> Any:
        """A ref that answers once the actor has loaded its tools (ToolHost.ready)."""
        return actor.ready.remote()

    def _kill(self, actor: Any, restart: bool = False) -> None:
        self.ray.kill(actor, no_restart=not restart)
        if not restart:
            self.waiting.pop(actor, None)
            self.node_of.pop(actor, None)
            self.up.discard(actor)

    def alive_nodes(self) -> dict[str, dict[str, float]]:
        """Each live node's resources, all of them (the pools' own actors counted in)."""
        return {
            n["NodeID"]: {r: n["Resources"].get(r, 0.0) for r, _, _ in RESOURCES}
            for n in self.ray.nodes()
            if n["Alive"]
        }

    def _watch(self) -> None:
        """Hands out actors that have loaded their tools, follows the actors' states and the cluster's nodes
        (LOOK_EVERY_S), and says what waits (REPORT_EVERY_S). If it fails, the pools stop: a call then
        stops the run in one line, instead of waiting for actors nothing would hand out again."""
        looked = said = time.monotonic()
        try:
            while not self.closed.is_set():
                self._take_probes()
                if (now := time.monotonic()) - looked >= LOOK_EVERY_S:
                    looked = now
                    self._follow_nodes()  # first: which calls were in flight on a lost node
                    self._look_at_actors()
                    with self.looked:
                        self.looks += 1
                        self.looked.notify_all()
                if now - said >= REPORT_EVERY_S:
                    said = now
                    self._say_what_waits()
        except Exception as err:  # noqa: BLE001 -- said once, and every pool stops
            self.broken = f"Ray: the pools' watcher stopped ({type(err).__name__}: {first_line(err)})"
            log.error("%s; the run stops", self.broken)
            for pool in self.pools.values():
                pool.stop(self.broken)

    def _take_probes(self) -> None:
        probes = {ref: (group, actor) for group, pool in self.pools.items() for ref, actor in pool.probes().items()}
        if not probes:
            self.closed.wait(0.1)
            return
        ready, _ = self.ray.wait(list(probes), num_returns=len(probes), timeout=0.1)
        for ref in ready:
            group, actor = probes[ref]
            try:
                self.ray.get(ref)
                # Its node known before its first call: a node lost a moment later counts that call in flight
                # (the watcher's next look at the actors was up to LOOK_EVERY_S away, more on a loaded machine).
                if (info := self.state.actors(actor._actor_id.hex())) and info["State"] == "ALIVE":
                    self._saw_alive(actor, info)
                self.pools[group].loaded(ref)
            except self.ray.exceptions.RayActorError as err:  # its process died: Ray restarts it, unless it gave up
                if (info := self.state.actors(actor._actor_id.hex())) and info["State"] == "DEAD":
                    self._died_for_good(group, actor, info)
                else:
                    self.pools[group].loaded(ref, first_line(err), died=True)
            except self.ray.exceptions.RayError as err:  # ready() raised: the tools did not load
                cause = getattr(err, "cause", None)
                self.pools[group].loaded(ref, str(cause) if isinstance(cause, LoadFailed) else first_line(err))

    def _look_at_actors(self) -> None:
        """Each actor's state in Ray: up, waiting for a node with room (placement, or re-placement after its
        node was lost), loading, or dead for good. One that waits or loads past its deadline leaves its pool; one
        dead for good is replaced (_died_for_good)."""
        waits, now = self.cfg.ray_waits, time.monotonic()
        # The pools whose actors the nodes alive cannot all hold: theirs wait for a node with room. (Ray's GCS
        # shows a placed actor whose worker is still starting as it shows an unplaced one.)
        held = {g: len(p.actors) + len(p.retiring) for g, p in self.pools.items()}
        unplaceable = set(place(self.asks, held, list(self.alive.values()))[0])
        for group, pool in self.pools.items():
            idle = set(pool.idle)
            for actor in (*pool.actors, *pool.retiring):
                if not (info := self.state.actors(actor._actor_id.hex())):
                    continue  # not yet registered with Ray's GCS
                if info["State"] == "ALIVE":
                    self._saw_alive(actor, info)
                    continue
                if info["State"] == "DEAD":
                    self._died_for_good(group, actor, info)
                    continue
                if actor in self.up:  # it was up: killed, or its node lost
                    self.up.discard(actor)
                    self.went_down[actor] = now
                    if actor in idle:
                        pool.went_down(actor)
                where = info.get("Address") or {}
                placed = bool(where.get("Port")) and where.get("NodeID") in self.alive  # a worker of its own
                key = "place" if group in unplaceable and not placed else "load"
                was, since = self.waiting.get(actor, (key, now))
                since = since if was == key else now
                self.waiting[actor] = (key, since)
                limit = waits.load_s if key == "load" else waits.place_s
                if now - since > limit:
                    pool.drop(actor, self._overdue(group, key, limit))

    def _saw_alive(self, actor: Any, info: dict[str, Any]) -> None:
        self.waiting.pop(actor, None)
        self.node_of[actor] = (info.get("Address") or {}).get("NodeID", "")
        self.up.add(actor)

    def _died_for_good(self, group: str, actor: Any, info: dict[str, Any]) -> None:
        """Ray gave up on the actor (its restarts spent: a crash that recurs, or nodes lost again and again; or
        killed for good). Unlike an actor past a deadline (the room or the load a fresh one would wait for
        just the same) or one whose tools failed to load (as a fresh one's would), a fresh actor is likely to
        do what this one did for MAX_RESTARTS restarts: run calls. So one starts at once, as far as the
        nodes alive hold the pool's target, instead of the pool running short (or, its last, stopping the
        run) until the cluster next changes; the pool bounds how often (DEAD_REPLACED)."""
        self.pools[group].died_for_good(actor, death_cause(info.get("DeathCause")), self._fitted()[group])

    def _fitted(self) -> dict[str, int]:
        """Each pool's actors that the nodes alive hold, as far as its target."""
        return shrink(self.asks, self.targets, reservable(list(self.alive.values())))[0]

    def _overdue(self, group: str, key: str, limit: float) -> str:
        if key == "load":
            return f"an actor did not load its tools within ray_waits.load_s ({limit:g} s)"
        return f"no node had room for an actor ({self._asked(group)}) within ray_waits.place_s ({limit:g} s)"

    def _asked(self, group: str) -> str:
        ask = self.asks[group]
        memory = f", {ask.memory / 2**30:g} GB of memory" if ask.memory else ""
        return f"{ask.gpus:g} GPUs, {ask.cpus:g} CPUs{memory}"

    def _follow_nodes(self) -> None:
        """A node left or joined: the pools are re-fitted to the nodes alive, as far as their targets, in one
        line that says which node, what changed and how many calls in flight there run again elsewhere."""
        alive = self.alive_nodes()
        if alive.keys() == self.alive.keys():
            return
        left, joined = self.alive.keys() - alive.keys(), alive.keys() - self.alive.keys()
        gone = {**self.alive}
        self.alive = alive
        interrupted = sum(1 for p in self.pools.values() for a in p.busy() if self.node_of.get(a) in left)
        counts = self._fitted()
        changed = []
        for group, pool in self.pools.items():
            if counts[group] != len(pool.actors):
                changed.append(f"{group} {len(pool.actors)} -> {counts[group]}")
                pool.resize(counts[group])
        nodes = "; ".join(
            [f"node {n[:8]} left ({self._node(gone[n])})" for n in left]
            + [f"node {n[:8]} joined ({self._node(alive[n])})" for n in joined]
        )
        pools = f"pools re-fitted: {', '.join(changed)}" if changed else "the pools keep their size"
        retried = f"; {interrupted} calls in flight there run again on the nodes left" if left else ""
        log.warning("Ray: %s: %s%s", nodes, pools, retried)

    @staticmethod
    def _node(resources: dict[str, float]) -> str:
        return f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"

    def _say_what_waits(self) -> None:
        """Actors waiting for a node with room (on an autoscaling cluster: for the node it adds), by pool."""
        now, place_s = time.monotonic(), self.cfg.ray_waits.place_s
        for group, pool in self.pools.items():
            waits_of = [self.waiting.get(a) for a in pool.actors]
            waited = [now - w[1] for w in waits_of if w is not None and w[0] == "place"]
            if waited and max(waited) >= REPORT_EVERY_S:
                log.warning(
                    "Ray pool %s: %d actors wait for a node with room for %s, for %.0f s of ray_waits.place_s %g s",
                    group,
                    len(waited),
                    self._asked(group),
                    max(waited),
                    place_s,
                )

    def _wait_until_started(self) -> None:
        """Waits until each pool has an actor that has loaded its tools (minutes with real weights), saying
        which are still starting; a pool whose actors all left (ray_waits' deadlines) refuses the run."""
        started, said = time.perf_counter(), 0.0
        log.info("Ray: starting %d pools (%d actors)", len(self.pools), sum(len(p.actors) for p in self.pools.values()))
        while starting := [p for p in self.pools.values() if not p.started]:
            if failed := next((p for p in starting if not p.actors), None):
                raise ConfigError(f"Ray pool {failed.name}: {failed.failed}")
            if self.broken:
                raise ConfigError(self.broken)
            waited = time.perf_counter() - started
            if waited - said >= REPORT_EVERY_S:
                said = waited
                log.info("Ray: pools still starting after %.0f s: %s", waited, ", ".join(p.name for p in starting))
            time.sleep(0.1)
        log.info("Ray: every pool has an actor ready after %.0f s", time.perf_counter() - started)

    def split(self, measured_s: dict[str, float]) -> dict[str, int]:
        """With --gpus: actors per GPU pool by each stage's cost (stage_costs); {} without --gpus."""
        if self.cfg.gpus is None:
            return {}
        have = sum(n["GPU"] for n in self.nodes)
        if self.cfg.gpus > have + 1e-6:
            raise ConfigError(f"--gpus {self.cfg.gpus:g}: the Ray cluster has {have:g} GPUs free")
        aside = training_gpus(self.cfg)
        try:
            return split_gpus(self.stage_costs(measured_s), self.gpu_pools(), self.cfg.gpus - aside)
        except ValueError as err:  # it names the GPUs it was given: say where the others went
            kept = f" once {aside} of --gpus {self.cfg.gpus:g} are kept for Editto's rounds (backends.editto workers)"
            raise ConfigError(f"{err}{kept if aside else ''}") from err

    def gpu_pools(self) -> dict[str, float]:
        """The pools on GPUs, and the GPUs one actor of each holds."""
        return {g: a.gpus for g, a in self.asks.items() if a.gpus > 0}

    def stage_costs(self, measured_s: dict[str, float]) -> dict[str, float]:
        """Each GPU pool's cost: measured in the run (the charges of its tools) or, before that, the
        configured prior."""
        gpu_pools = self.gpu_pools()
        measured = {g: sum(s for t, s in measured_s.items() if self.pool_of.get(t, t) == g) for g in gpu_pools}
        return measured if any(measured.values()) else {g: self._prior(g) for g in gpu_pools}

    def _prior(self, group: str) -> float:
        """The configured prior of a pool: its own, plus those of the tools it runs (1 when none is set)."""
        names = {group} | {t for t, g in self.pool_of.items() if g == group}
        priors = [c.prior_s for n in names if (c := self.cfg.pools.get(n)) and c.prior_s is not None]
        return sum(priors) if priors else 1.0

    def rebalance(self, measured_s: dict[str, float]) -> None:
        """Re-splits the GPUs by what each pool has cost so far (--gpus), where the new split fits the nodes
        alive and is worth its moves (budget.weigh_resplit: clearly faster over the time the budget has left,
        counted from when its new actors have loaded); logged, with the modelled gain, when it changes."""
        split = self.split(measured_s)
        now = {g: len(p.actors) for g, p in self.pools.items()}
        if not split or all(now[g] == n for g, n in split.items()):
            return
        load_s = {g: self.pools[g].typical_load_s() for g in split}
        # At most cfg.gpus device-seconds are charged a second: the budget left lasts at least this long.
        left_s = (self.cfg.budget_device_seconds - sum(measured_s.values())) / (self.cfg.gpus or 1.0)
        verdict = weigh_resplit(now, split, self.stage_costs(measured_s), self.gpu_pools(), load_s, left_s)
        moves = ", ".join(f"{g} {now[g]} -> {n}" for g, n in split.items() if now[g] != n)
        if not verdict.move:
            log.debug("GPU split kept (%s would give %s)", moves, verdict.why)
            return
        if place(self.asks, {**now, **split}, reservable(list(self.alive.values())))[0]:
            log.warning("Ray: the GPU split %s does not fit the cluster; the pools stay as they are", split)
            return
        self.targets.update(split)
        for group, count in split.items():
            self.pools[group].resize(count)
        actors = ", ".join(f"{g} {n}x{self.asks[g].gpus:g}" for g, n in split.items())
        log.warning("GPU split: %s (%s): %s", actors, moves, verdict.why)

    def run(self, tool: Tool, inp: BaseModel, ctx: ToolContext) -> Executed:
        """The call on an idle actor of its pool. A call whose actor left the pool meanwhile (its node lost,
        and no node with room for it within ray_waits.place_s) runs again on another: what the first held
        before its actor went down is charged with the run that returns, once."""
        pool, asked, held_s = self.pools[self.pool_of[tool.name]], time.perf_counter(), 0.0
        devices, timeout_s = tool.resources.devices, tool.resources.timeout_s
        while True:
            actor = pool.take()
            queued_s, restarting, submitted = time.perf_counter() - asked, False, time.monotonic()
            try:
                ref = actor.run.remote(tool.name, inp)
                executed, rendered, usage = self.ray.get(ref, timeout=timeout_s)
            except self.ray.exceptions.GetTimeoutError:  # hung: only killing its actor frees its device
                self.ray.cancel(ref)  # so that the restarted actor does not run it again
                self._kill(actor, restart=True)
                restarting = True
                held_s += self._held(actor, submitted, time.monotonic())
                detail = f"{tool.name} ran past its {timeout_s:g} s limit; its actor was killed and restarted"
                return Executed(None, ToolError("timeout", detail), held_s * devices, queued_s)
            except self.ray.exceptions.RayActorError as err:
                held_s += self._held(actor, submitted, time.monotonic())
                self._watcher_looked_again()  # if Ray gave up on the actor, it has left its pool
                if actor in pool.dropped:
                    continue
                restarting = True  # died on every run Ray gave the call
                detail = f"{tool.name}: its actor died {MAX_TASK_RETRIES + 1} times during the call: {first_line(err)}"
                return Executed(None, ToolError("tool_failed", detail), held_s * devices, queued_s)
            finally:
                pool.give_back(actor, restarting)
            break
        held_s += self._held(actor, submitted, time.monotonic(), returned=True)
        ctx.rendered.extend(rendered)
        if usage and hasattr(ctx, "usage"):
            ctx.usage.update(usage)  # type: ignore[attr-defined]
        charged = executed.device_s + held_s * devices
        return Executed(executed.output, executed.error, charged, queued_s + executed.queued_s)

    def _watcher_looked_again(self) -> None:
        """Waits until the watcher has read the actors' states afresh (a look begun after now: the one under
        way may have read them before), a second or two, or has stopped."""
        with self.looked:
            after = self.looks + 2
            self.looked.wait_for(lambda: self.looks >= after or not self.watcher.is_alive(), 5 * LOOK_EVERY_S)

    def _held(self, actor: Any, submitted: float, ended: float, returned: bool = False) -> float:
        """Seconds a call's earlier run held its actor before the actor went down (killed, its node lost: the
        watcher's reading, to LOOK_EVERY_S); 0 if it never went down meanwhile. Unless the call `returned`
        (then the run that returned measured itself), a call whose actor stayed up held it all along; one
        whose actor was down when it was sent never started."""
        down = self.went_down.get(actor)
        if down is not None and submitted <= down <= ended:
            return down - submitted
        if returned or actor in self.waiting:
            return 0.0
        return ended - submitted

    def close(self) -> None:
        self.closed.set()
        if self.watcher.is_alive():
            self.watcher.join()
        for pool in self.pools.values():
            for actor in (*pool.actors, *pool.retiring):
                self._kill(actor)
        if self.owns_ray:
            self.ray.shutdown()


class LoadFailed(Exception):
    """An actor's tools did not load (ToolHost.ready)."""


def first_line(err: BaseException) -> str:
    return next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)


def death_cause(cause: Any) -> str:
    """Ray's reason for an actor's death in one line (its ActorDeathCause: one of several contexts)."""
    which = cause.WhichOneof("context") if cause else None
    if which is None:
        return "no cause given"
    context = getattr(cause, which)
    said = getattr(context, "error_message", "") or getattr(context, "formatted_exception_string", "")
    return next((line.strip() for line in said.splitlines() if line.strip()), which)
