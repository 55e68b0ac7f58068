"""Which Ray a run uses, and whether its actor pools fit there, decided before any actor starts.

Ray leaves an actor it cannot place pending forever and says so only in its monitor log, so the pools'
reservations are compared with what the cluster has first: they are shrunk to fit (said in one line) or
the run is refused in one line that names the pool and the missing resource. On a cluster with an
autoscaler, a pool that a node it can add would hold is not refused: its actors start pending, which is
what asks the autoscaler for that node, and wait for it up to ray_waits.place_s. Reservations never fill the
cluster: HEADROOM of each node's CPUs stays free, and on a cluster of several nodes the CPU reservations
the config does not set are scaled so that one actor of every pool also fits on the nodes left once the
biggest is lost, where Ray restarts a lost node's actors.

Without --ray-address a run starts a Ray of its own on this machine (`address="local"`), even where a
cluster started with `ray start` runs: Ray's own default would join that one, whose resources are not
what the run asked for. --ray-address auto joins the cluster `ray start` made on this machine, and is
refused when several run here (Ray would pick the latest one it wrote down, alive or not)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from agent.config import ConfigError, RunConfig

log = logging.getLogger("agent.ray_pools")  # the logger the CLI shows first: which Ray a run uses

# What an actor reserves when neither its backend spec nor pools.<tool> says: a CPU algorithm works a whole
# core; a model on a GPU (or an endpoint elsewhere) needs a CPU only to feed it. Ray does not cap what an
# actor uses: a reservation decides only how many actors a node takes. Scaled down when they do not fit.
CPUS_OF_A_CPU_ALGORITHM = 1.0
CPUS_OF_OTHER_ACTORS = 0.25
MIN_SCALED_CPUS = 0.05  # below this a reservation means nothing; fewer actors are started instead
# The share of each node's CPUs no pool reserves: packed to 100%, a lost node's actors found no room anywhere
# and stayed RESTARTING for as long as the run waited (MACHINE_FACTS.md, "Ray under faults").
HEADROOM = 0.2
RESOURCES = (("GPU", "gpus", "GPUs"), ("CPU", "cpus", "CPUs"), ("memory", "memory_gb", "GB of memory"))
EPSILON = 1e-6  # Ray keeps resources to 4 decimals


@dataclass(frozen=True)
class Ask:
    """What one actor of a pool reserves. `cpus_given`: from config, never scaled."""

    cpus: float
    gpus: float
    memory: float = 0.0  # bytes
    cpus_given: bool = True

    def amount(self, resource: str) -> float:
        return {"CPU": self.cpus, "GPU": self.gpus, "memory": self.memory}[resource]


def connect(cfg: RunConfig) -> tuple[str, bool]:
    """Starts or joins Ray as the flags say: (the line that says which, whether the run owns that Ray)."""
    import ray

    if ray.is_initialized():
        return "Ray: the Ray this process started before the run (its pools start there)", False
    if cfg.ray_address is None:
        code = str(Path(__file__).resolve().parents[1])  # its workers import our code from here
        ray.init(
            address="local",
            num_gpus=cfg.gpus,
            include_dashboard=False,
            runtime_env={"env_vars": {"PYTHONPATH": code}, "worker_process_setup_hook": QUIET_HOOK},
        )
        have = ray.cluster_resources()
        return (
            f"Ray: started one for this run on this machine ({have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} "
            "GPUs), stopped when it ends; without --ray-address a run never joins a running cluster",
            True,
        )
    address = cfg.ray_address
    if address == "auto":
        from ray._private.services import find_gcs_addresses  # how Ray itself finds clusters for "auto"

        running = sorted(find_gcs_addresses())
        if len(running) > 1:
            raise ConfigError(
                f"--ray-address auto: {len(running)} Ray clusters run on this machine ({', '.join(running)}); "
                "name one: --ray-address HOST:PORT"
            )
    ray.init(address=address, runtime_env={"worker_process_setup_hook": QUIET_HOOK})  # every machine has the project
    have, address = ray.cluster_resources(), ray.get_runtime_context().gcs_address
    return (
        f"Ray: joined the cluster at {address} ({len([n for n in ray.nodes() if n['Alive']])} nodes, "
        f"{have.get('CPU', 0):g} CPUs, {have.get('GPU', 0):g} GPUs)",
        False,
    )


QUIET_HOOK = "agent.ray_cluster.quiet_ray_train_cleaner"  # run by every Ray worker process of the run


def quiet_ray_train_cleaner() -> None:
    """Ray Train's placement-group cleaner asks Ray's state API, which needs the dashboard (ray[default], not
    installed: 1.6 GB of memory at idle), whether the round's controller lives, every two seconds, and warns
    each time it cannot: thousands of lines over a round. Its only job, freeing a dead controller's
    placement groups, is Ray's own when the run's Ray stops."""
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def training_workers(cfg: RunConfig) -> int:
    """Devices an Editto round trains on (backends.editto workers): above 1, data-parallel on Ray Train."""
    return int((cfg.backends.editto or {}).get("workers", 1))


def training_gpus(cfg: RunConfig) -> int:
    """GPUs a data-parallel Editto round's workers reserve beside the pools: 0 where the run trains on one
    device, on CPU, or not at all. With --gpus they are kept out of the pools' split: --gpus is all the run
    holds, rounds included (a run's own Ray has exactly that many, so nothing else would leave them free)."""
    workers = training_workers(cfg)
    device = str((cfg.backends.editto or {}).get("device", "cuda"))  # EdittoTrainer's default
    return workers if cfg.training.every and workers > 1 and device.startswith("cuda") else 0


def connect_for_training(cfg: RunConfig) -> Callable[[], None]:
    """A data-parallel Editto round runs on Ray Train, on the Ray this process is connected to: where none is,
    one is started or joined as the flags say (connect), its line logged. Returns what lets it go again
    (nothing where this process did not start it)."""
    if training_workers(cfg) <= 1:
        return lambda: None
    try:
        import ray
    except ImportError as err:
        raise ConfigError("backends.editto workers above 1 trains on Ray Train: pip install -e '.[scale]'") from err
    if ray.is_initialized():
        return lambda: None
    said, owned = connect(cfg)
    log.info(said)
    return ray.shutdown if owned else (lambda: None)


def capacity(free: bool = True) -> list[dict[str, float]]:
    """What each live node of the connected cluster offers to the pools' actors, by resource: what is free
    there now (before the pools start: other jobs hold the rest), or with `free=False` all it has (the pools
    re-fitted to the nodes as they come and go, their own actors counted in). Ray's public API gives only
    the cluster's free total (per node needs the dashboard's state API); ray._private.state is the GCS query
    ray.available_resources() itself sums."""
    import ray
    from ray._private import state

    alive = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    have = state.available_resources_per_node() if free else alive
    return [{r: have.get(node, {}).get(r, 0.0) for r, _, _ in RESOURCES} for node in alive]


def reservable(nodes: list[dict[str, float]]) -> list[dict[str, float]]:
    """What the pools may reserve on each node: all but HEADROOM of its CPUs."""
    return [{**node, "CPU": node["CPU"] * (1 - HEADROOM)} for node in nodes]


def place(
    asks: Mapping[str, Ask], counts: Mapping[str, int], nodes: list[dict[str, float]]
) -> tuple[list[str], list[dict[str, float]]]:
    """Places the actors biggest first, each on the first node with room: (the pool of each actor that
    found none, what the nodes have left)."""
    left = [dict(node) for node in nodes]
    actors = sorted(
        ((pool, asks[pool]) for pool, n in counts.items() for _ in range(n)),
        key=lambda a: (a[1].gpus, a[1].memory, a[1].cpus),
        reverse=True,
    )
    missing = []
    for pool, ask in actors:
        node = next((n for n in left if all(ask.amount(r) <= n[r] + EPSILON for r, _, _ in RESOURCES)), None)
        if node is None:
            missing.append(pool)
            continue
        for r, _, _ in RESOURCES:
            node[r] -= ask.amount(r)
    return missing, left


def fit(
    asks: dict[str, Ask],
    counts: dict[str, int],
    nodes: list[dict[str, float]],
    adds: list[dict[str, float]] | None = None,
) -> tuple[dict[str, Ask], dict[str, int], str | None]:
    """The pools' reservations and actor counts that fit the nodes with headroom, and the line that says what
    was shrunk (None when nothing was): CPU reservations not given in config are scaled down first (see the
    module's docstring), then the pool with the most actors loses one until they fit. Raises ConfigError
    naming a pool that does not fit with one actor of every pool, and the resource it lacks, unless the
    cluster's autoscaler can add a node for it (`adds`, from autoscaler_adds: its node types; [] where it
    does not say which, None where the cluster has none): that pool waits for the node, said in the line."""
    room = reservable(nodes)
    asks, scaled = scale_cpus(asks, counts, room)
    fitted, missing = shrink(asks, counts, room)
    types = reservable(adds or [])
    waiting = [p for p in dict.fromkeys(missing) if adds == [] or (types and not place(asks, {p: 1}, types)[0])]
    if refused := [p for p in missing if p not in waiting]:
        beside = "; no node type of the cluster's autoscaler holds it either" if adds else ""
        raise ConfigError(lacking(refused[0], asks, fitted, room) + beside)
    if waiting:  # the other pools fitted without them; theirs start at one actor, grown once their nodes join
        others = {p: n for p, n in counts.items() if p not in waiting}
        fitted = shrink(asks, others, room)[0] | dict.fromkeys(waiting, 1)
    said = [f"{p} waits for a node the cluster's autoscaler adds (ray_waits.place_s at most)" for p in waiting]
    if scaled is not None:
        unset = sorted({a.cpus for a in asks.values() if not a.cpus_given})
        to = f"{unset[0]:g}" if len(unset) == 1 else f"{unset[0]:g}-{unset[-1]:g}"
        said.append(f"CPUs per actor not set in config scaled to {to} (pools.<tool>.cpus sets them)")
    said += [f"{p} {counts[p]} -> {n} actors" for p, n in fitted.items() if n != counts[p]]
    if not said:
        return asks, fitted, None
    have = ", ".join(f"{sum(n[r] for n in nodes):g} {r}" for r in ("CPU", "GPU"))
    kept = f"{HEADROOM:.0%} of CPUs kept free"
    return asks, fitted, f"Ray: the pools were fitted to the cluster ({have}, {kept}): {'; '.join(said)}"


def autoscaler_adds() -> list[dict[str, float]] | None:
    """What each node type the connected cluster's autoscaler can add offers, by resource; [] where an
    autoscaler runs but does not say which types it adds, None where the cluster has none. Ray has no public
    API for either (ray.autoscaler.sdk only asks for resources), so two records in its GCS are read: the
    cluster config an autoscaler reports (its node groups; Ray Train reads it through ray._private.state
    too), and the status the autoscaler's monitor writes for `ray status`, whose node types are read-only
    mirrors of the nodes (format_readonly_node_type) where the head was started without an autoscaler."""
    import json

    from ray._private import state
    from ray._private.ray_constants import DEBUG_AUTOSCALING_STATUS
    from ray.autoscaler._private.util import format_readonly_node_type
    from ray.experimental.internal_kv import _internal_kv_get

    config = state.state.get_cluster_config()
    if config is not None and (groups := [g for g in config.node_group_configs if g.max_count != 0]):
        return [{r: float(g.resources.get(r, 0)) for r, _, _ in RESOURCES} for g in groups]
    status = _internal_kv_get(DEBUG_AUTOSCALING_STATUS)
    types = ((json.loads(status).get("autoscaler_report") or {}).get("node_type_mapping") or {}) if status else {}
    return [] if any(kind != format_readonly_node_type(node) for node, kind in types.items()) else None


def scale_cpus(
    asks: dict[str, Ask], counts: Mapping[str, int], room: list[dict[str, float]]
) -> tuple[dict[str, Ask], float | None]:
    """The asks with the CPUs the config did not set scaled so that every actor fits the nodes' room and,
    with several nodes, one actor of each pool fits the room of all but the biggest; (asks, the scale, None
    when nothing needed scaling)."""
    cpus = sorted(n["CPU"] for n in room)
    bounds = [(sum(cpus), counts)]
    if len(cpus) > 1:
        bounds.append((sum(cpus[:-1]), dict.fromkeys(counts, 1)))
    scale = 1.0
    for total, each in bounds:
        given = sum(a.cpus * each[p] for p, a in asks.items() if a.cpus_given)
        scalable = sum(a.cpus * each[p] for p, a in asks.items() if not a.cpus_given)
        if scalable and given + scalable > total + EPSILON:
            scale = min(scale, max(0.0, total - given) / scalable)
    if scale >= 1.0:
        return asks, None
    scaled = {
        p: a if a.cpus_given else replace(a, cpus=max(MIN_SCALED_CPUS, math.floor(a.cpus * scale * 1e4) / 1e4))
        for p, a in asks.items()
    }
    return scaled, scale


def shrink(
    asks: Mapping[str, Ask], counts: Mapping[str, int], room: list[dict[str, float]]
) -> tuple[dict[str, int], list[str]]:
    """The actor counts that place on the room, the pool with the most actors losing one at a time (the
    pools left out first, then those holding what they lack: GPUs, memory), never below one; and the pools
    whose one actor still finds no room."""
    counts = dict(counts)
    while (missing := place(asks, counts, room)[0]) and (shrinkable := [p for p, n in counts.items() if n > 1]):
        scarce = {r for m in missing for r in ("GPU", "memory") if asks[m].amount(r) > 0}
        pool = max(shrinkable, key=lambda p: (p in missing, any(asks[p].amount(r) for r in scarce), counts[p]))
        counts[pool] -= 1
    return counts, missing


def lacking(pool: str, asks: Mapping[str, Ask], counts: Mapping[str, int], nodes: list[dict[str, float]]) -> str:
    """One line: the pool, the resource its actor lacks once the other pools' actors are placed, what the
    cluster has, and the setting to change."""
    ask, (_, left) = asks[pool], place(asks, {p: n for p, n in counts.items() if p != pool}, nodes)
    for resource, key, unit in RESOURCES:
        most = max((n[resource] for n in left), default=0.0)
        if ask.amount(resource) > most + EPSILON:
            scale = 2**30 if resource == "memory" else 1
            total = sum(n[resource] for n in nodes) / scale
            hint = " or --gpus N (the logical GPUs of a Ray the run starts)" if resource == "GPU" else ""
            return (
                f"Ray pool {pool}: an actor asks for {ask.amount(resource) / scale:g} {unit} and no node has that "
                f"left beside the other pools ({max(0.0, most) / scale:g} free, {total:g} in the cluster): lower "
                f"pools.{pool}.{key}{hint}"
            )
    return f"Ray pool {pool}: its actor does not fit on any node of the cluster"
