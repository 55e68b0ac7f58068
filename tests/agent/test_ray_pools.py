"""The Ray pools' bookkeeping without Ray: what fits a cluster, and how a pool hands out, takes back and
retires its actors."""

from __future__ import annotations

import itertools
import threading
import time
from types import SimpleNamespace

import pytest

from agent.actor_pool import DEAD_REPLACED, LOAD_DEATHS, Pool
from agent.config import ConfigError
from agent.executors import Executed
from agent.faults import PoolStop
from agent.ray_cluster import HEADROOM, Ask, fit, place, reservable, shrink
from agent.ray_pools import RayExecutor, pool_ask
from tests.agent.test_ledger import FakeClock
from tools import declare_tools
from tools.base import Resources

TWO_CPUS = [{"CPU": 2.0, "GPU": 0.0, "memory": 8 * 2**30}]


def cpu_profile_asks(small_config) -> dict[str, Ask]:  # type: ignore[no-untyped-def]
    cfg = small_config()
    tools = ("fingerprint_clip", "ingest", "caption_clip", "plan_instruction", "edit_keyframe", "judge_keyframe")
    tools += ("propagate", "enhance_temporal", "judge_video")
    declared = declare_tools(cfg.tools, cfg.backends, tools)
    return {name: pool_ask(tool.resources, None) for name, tool in declared.items()}


def test_the_cpu_profile_fits_two_cpus_by_scaling_the_reservations_it_did_not_set(small_config) -> None:  # type: ignore[no-untyped-def]
    asks = cpu_profile_asks(small_config)
    fitted, counts, said = fit(asks, dict.fromkeys(asks, 1), TWO_CPUS)
    assert counts == dict.fromkeys(asks, 1)
    assert sum(a.cpus for a in fitted.values()) <= 2.0
    assert said is not None and "scaled" in said and said.count("\n") == 0


def test_a_pool_too_big_for_the_cluster_is_shrunk_and_the_line_names_it() -> None:
    asks = {"propagate": Ask(cpus=0.5, gpus=1), "judge_video": Ask(cpus=0.5, gpus=0.5), "ingest": Ask(cpus=0.5, gpus=0)}
    nodes = [{"CPU": 8.0, "GPU": 2.0, "memory": 0.0}]
    _, counts, said = fit(asks, {"propagate": 3, "judge_video": 1, "ingest": 4}, nodes)
    assert counts == {"propagate": 1, "judge_video": 1, "ingest": 4}  # the GPU pool shrinks, not the CPU one
    assert said and "propagate 3 -> 1 actors" in said


def test_a_pool_that_cannot_fit_at_all_is_refused_naming_the_pool_and_the_resource() -> None:
    asks = {"propagate": Ask(cpus=0.1, gpus=1), "ingest": Ask(cpus=0.1, gpus=0)}
    with pytest.raises(ConfigError) as refused:
        fit(asks, {"propagate": 1, "ingest": 1}, TWO_CPUS)
    message = str(refused.value)
    assert "Ray pool propagate" in message and "1 GPUs" in message and "pools.propagate.gpus" in message


def test_on_an_autoscaling_cluster_a_pool_its_nodes_would_hold_waits_for_one_and_the_line_says_so() -> None:
    """The same pools as above: refused without an autoscaler; with one whose node type has a GPU, propagate
    starts one actor that waits for that node while the others fit the nodes there are; with one whose node
    types are too small, refused naming both; with one that does not say its node types, it waits."""
    asks = {"propagate": Ask(cpus=0.1, gpus=1), "ingest": Ask(cpus=0.1, gpus=0)}
    counts = {"propagate": 2, "ingest": 3}
    _, fitted, said = fit(asks, counts, TWO_CPUS, [{"CPU": 4.0, "GPU": 1.0, "memory": 0.0}])
    assert fitted == {"propagate": 1, "ingest": 3}
    assert said and "propagate waits for a node the cluster's autoscaler adds (ray_waits.place_s" in said
    assert "propagate 2 -> 1 actors" in said and "ingest" not in said and "\n" not in said
    with pytest.raises(ConfigError, match="Ray pool propagate.*no node type of the cluster's autoscaler holds it"):
        fit(asks, counts, TWO_CPUS, [{"CPU": 4.0, "GPU": 0.0, "memory": 0.0}])
    assert fit(asks, counts, TWO_CPUS, [])[1] == {"propagate": 1, "ingest": 3}
    with pytest.raises(ConfigError, match="Ray pool propagate"):
        fit(asks, counts, TWO_CPUS, None)


def test_actors_are_placed_node_by_node_not_against_the_cluster_total() -> None:
    """Two nodes of one GPU each hold two 1-GPU actors, not one 2-GPU actor."""
    nodes = [{"CPU": 4.0, "GPU": 1.0, "memory": 0.0}] * 2
    assert fit({"p": Ask(cpus=0.1, gpus=1)}, {"p": 2}, nodes)[1] == {"p": 2}
    with pytest.raises(ConfigError, match="Ray pool p"):
        fit({"p": Ask(cpus=0.1, gpus=2)}, {"p": 1}, nodes)


def test_configured_cpus_are_kept_and_unset_ones_default_by_kind() -> None:
    assert pool_ask(Resources(cpus=3), None) == Ask(cpus=3, gpus=1)
    cpu_algorithm = pool_ask(Resources(clock="process_cpu", gpus=0), None)
    gpu_model = pool_ask(Resources(), None)
    assert not cpu_algorithm.cpus_given and cpu_algorithm.cpus > gpu_model.cpus > 0 and gpu_model.gpus == 1


class FakeActors:
    """start/probe/kill for a Pool: actors are numbers, a probe is ('probe', actor)."""

    def __init__(self) -> None:
        self.numbers, self.killed = itertools.count(), []

    def start(self) -> int:
        return next(self.numbers)

    def probe(self, actor: int) -> tuple[str, int]:
        return ("probe", actor)

    def kill(self, actor: int) -> None:
        self.killed.append(actor)


def loaded_pool(count: int) -> tuple[Pool, FakeActors]:
    fake = FakeActors()
    pool = Pool("p", fake.start, fake.probe, fake.kill)
    pool.resize(count)
    for ref in list(pool.loading):
        pool.loaded(ref)
    return pool, fake


def test_a_call_waits_for_an_actor_that_has_loaded_its_tools() -> None:
    fake = FakeActors()
    pool = Pool("p", fake.start, fake.probe, fake.kill)
    pool.resize(1)
    taken: list[int] = []
    waiter = threading.Thread(target=lambda: taken.append(pool.take()))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # still loading: nothing to hand out
    pool.loaded(("probe", 0))
    waiter.join(5)
    assert taken == [0]


def test_a_shrink_retires_busy_actors_when_their_call_ends() -> None:
    pool, fake = loaded_pool(3)
    busy = [pool.take(), pool.take()]  # 0 and 1 busy, 2 idle
    pool.resize(1)
    assert fake.killed == [2] and pool.actors == [1]  # the idle one at once; 0 once its call ends
    for actor in busy:
        pool.give_back(actor)
    assert fake.killed == [2, 0] and pool.actors == [1] and list(pool.idle) == [1]


def test_an_actor_killed_past_its_time_limit_is_handed_out_again_once_reloaded() -> None:
    pool, _ = loaded_pool(1)
    actor = pool.take()
    pool.give_back(actor, restarting=True)
    assert not pool.idle and list(pool.loading.values()) == [actor]
    pool.loaded(next(iter(pool.loading)))
    assert pool.take() == actor


def test_an_actor_that_cannot_load_is_killed_and_an_empty_pool_stops_the_run_naming_it() -> None:
    fake = FakeActors()
    pool = Pool("p", fake.start, fake.probe, fake.kill)
    pool.resize(1)
    pool.loaded(("probe", 0), "ValueError: no weights at /models/x")
    assert fake.killed == [0]  # its process and its reservation go
    with pytest.raises(PoolStop, match="Ray pool p has no actor left: .*no weights"):
        pool.take()


def test_an_actor_killed_while_it_loads_is_probed_again_up_to_a_bound() -> None:
    """Ray restarts it: a death while loading is a retry, not the end of the pool; one that dies every time
    leaves (killed for good) after LOAD_DEATHS."""
    fake = FakeActors()
    pool = Pool("p", fake.start, fake.probe, fake.kill)
    pool.resize(1)
    for _ in range(LOAD_DEATHS - 1):
        pool.loaded(next(iter(pool.loading)), "The actor died unexpectedly", died=True)
        assert list(pool.loading.values()) == [0] and not fake.killed
    pool.loaded(next(iter(pool.loading)), "The actor died unexpectedly", died=True)
    assert fake.killed == [0] and not pool.actors and "died 3 times while loading" in str(pool.failed)


def test_an_actor_the_driver_gives_up_on_leaves_and_its_call_is_not_handed_back() -> None:
    pool, fake = loaded_pool(2)
    busy = pool.take()
    pool.drop(busy, "no node had room for an actor (1 GPUs, 0.25 CPUs) within ray_waits.place_s (300 s)")
    pool.give_back(busy)  # the call it held is run again elsewhere
    assert fake.killed == [busy] and pool.actors == [1 - busy] and list(pool.idle) == [1 - busy]
    pool.drop(pool.take(), "an actor did not load its tools within ray_waits.load_s (1800 s)")
    with pytest.raises(PoolStop, match=r"Ray pool p has no actor left: an actor did not load .* \(1800 s\)"):
        pool.take()


def test_an_actor_ray_gave_up_on_is_replaced_a_few_times_then_an_empty_pool_stops_the_run_naming_it() -> None:
    """Ray gave up on the pool's actor (its restarts spent, or killed for good) in the middle of a call: a fresh
    one starts at once and the call runs again there, DEAD_REPLACED times in a run; past that (a tool that kills
    every process it runs in) it leaves, and the empty pool stops the run in one line that names it and why."""
    pool, fake = loaded_pool(1)
    for fresh in range(1, DEAD_REPLACED + 1):
        dead = pool.take()
        pool.died_for_good(dead, "The actor is dead because it was killed by `ray.kill`.", room=1)
        pool.give_back(dead)  # its call runs again on another
        assert fake.killed[-1] == dead and pool.actors == [fresh] and list(pool.loading.values()) == [fresh]
        pool.loaded(next(iter(pool.loading)))
    pool.died_for_good(pool.take(), "Worker exit type: SYSTEM_ERROR", room=1)
    assert not pool.actors and not pool.loading and fake.killed == list(range(DEAD_REPLACED + 1))
    with pytest.raises(PoolStop) as stopped:
        pool.take()
    assert str(stopped.value) == (
        "Ray pool p has no actor left: an actor died for good (Worker exit type: SYSTEM_ERROR), "
        f"after {DEAD_REPLACED} that did were replaced"
    )


def test_an_actor_ray_gave_up_on_is_not_replaced_beyond_what_the_nodes_alive_hold() -> None:
    pool, fake = loaded_pool(2)
    pool.died_for_good(0, "its node was lost", room=1)
    assert fake.killed == [0] and pool.actors == [1] and not pool.loading and pool.replaced == 0


def test_an_idle_actor_seen_down_is_handed_out_once_it_has_loaded_again() -> None:
    pool, _ = loaded_pool(1)
    pool.went_down(0)
    assert not pool.idle and list(pool.loading.values()) == [0]
    pool.loaded(next(iter(pool.loading)))
    assert pool.take() == 0


def test_a_stopped_pool_stops_a_waiting_call() -> None:
    pool, _ = loaded_pool(1)
    pool.take()
    stopped: list[BaseException] = []

    def wait() -> None:
        try:
            pool.take()
        except PoolStop as err:
            stopped.append(err)

    waiter = threading.Thread(target=wait)
    waiter.start()
    pool.stop("Ray: the pools' watcher stopped (RuntimeError: boom)")
    waiter.join(5)
    assert stopped and "watcher stopped" in str(stopped[0])


def test_reservations_leave_headroom_and_room_for_a_lost_node() -> None:
    """The issue's cluster: a head of 1 CPU and node_b of 2. Nine pools of one actor each, none with CPUs
    set: they fill at most 80% of each node, and all of them fit on the head alone once node_b is lost."""
    asks = {f"p{i}": Ask(cpus=1.0 if i < 2 else 0.25, gpus=0, cpus_given=False) for i in range(9)}
    head, node_b = {"CPU": 1.0, "GPU": 0.0, "memory": 2.0**33}, {"CPU": 2.0, "GPU": 0.0, "memory": 2.0**33}
    fitted, counts, said = fit(asks, dict.fromkeys(asks, 1), [head, node_b])
    assert counts == dict.fromkeys(asks, 1) and said is not None and "20% of CPUs kept free" in said
    assert sum(a.cpus for a in fitted.values()) <= (1 - HEADROOM) * head["CPU"] + 1e-6
    assert not place(fitted, counts, reservable([head]))[0]


def test_pools_shrink_to_the_nodes_left_and_grow_back() -> None:
    asks = {"judge": Ask(cpus=0.2, gpus=0), "ingest": Ask(cpus=0.1, gpus=0)}
    targets = {"judge": 3, "ingest": 1}
    head, node_b = {"CPU": 1.0, "GPU": 0.0, "memory": 0.0}, {"CPU": 2.0, "GPU": 0.0, "memory": 0.0}
    assert shrink(asks, targets, reservable([head]))[0] == {"judge": 3, "ingest": 1}
    small = {"CPU": 0.5, "GPU": 0.0, "memory": 0.0}
    assert shrink(asks, targets, reservable([small])) == ({"judge": 1, "ingest": 1}, [])
    assert shrink(asks, targets, reservable([small, node_b]))[0] == targets


def held_by(went_down: float | None, waiting: bool, returned: bool = False) -> float:
    """RayExecutor._held for a call sent at 100 s and ended at 160 s, its actor as the watcher saw it."""
    executor = RayExecutor.__new__(RayExecutor)
    executor.went_down = {} if went_down is None else {"actor": went_down}
    executor.waiting = {"actor": ("place", 90.0)} if waiting else {}
    return executor._held("actor", 100.0, 160.0, returned)


def test_a_call_is_charged_what_it_held_before_its_actor_went_down_and_nothing_if_it_never_started() -> None:
    assert held_by(None, waiting=False) == 60  # a hung call held its actor all along
    assert held_by(130.0, waiting=True) == 30  # its node lost 30 s in: charged those, not its timeout_s
    assert held_by(90.0, waiting=True) == 0  # its actor was down before the call was sent, and stayed down
    assert held_by(None, waiting=False, returned=True) == 0  # the run that returned measured itself
    assert held_by(130.0, waiting=False, returned=True) == 30  # plus what the interrupted run held


def test_the_ray_deadlines_are_validated_by_name(small_config) -> None:  # type: ignore[no-untyped-def]
    assert small_config(ray_waits={"place_s": 900}).ray_waits.place_s == 900  # an autoscaler's node boot time
    with pytest.raises(Exception, match="ray_waits.place_s"):
        small_config(ray_waits={"place_s": 0})
    with pytest.raises(Exception, match="ray_waits.wait_s"):
        small_config(ray_waits={"wait_s": 10})


class Actor:
    run: SimpleNamespace


def test_waiting_for_a_busy_actor_is_recorded_not_charged(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two calls on a pool of one actor: the second waits for the first. Each is charged what the actor measured
    (as ToolHost does: 0.3 s of the test's clock x half a device), and the wait is only recorded. On the
    test's own clock the figures are exact however loaded the machine is."""
    clock, sent, second_waits = FakeClock(), itertools.count(), threading.Event()
    monkeypatch.setattr(time, "perf_counter", clock)
    actor = Actor()
    actor.run = SimpleNamespace(remote=lambda name, inp: next(sent))  # a call's ref: 0, 1, ...
    pool = Pool("hold", lambda: actor, lambda a: ("probe", a), lambda *a, **k: None)
    pool.resize(1)
    pool.loaded(("probe", actor))
    take = pool.take

    def take_noting_a_wait() -> object:
        if not pool.idle:
            second_waits.set()
        return take()

    def get(ref: int, timeout: float | None) -> tuple[Executed, list, None]:
        if ref == 0:  # the first call holds the actor until the second waits for it
            assert second_waits.wait(60)
        clock.advance(0.3)
        return Executed(None, None, 0.3 * 0.5, 0.0), [], None

    pool.take = take_noting_a_wait  # type: ignore[method-assign]
    executor = RayExecutor.__new__(RayExecutor)
    executor.pools, executor.pool_of, executor.went_down, executor.waiting = {"hold": pool}, {"hold": "hold"}, {}, {}
    executor.ray = SimpleNamespace(
        get=get, exceptions=SimpleNamespace(GetTimeoutError=TimeoutError, RayActorError=OSError)
    )
    tool = SimpleNamespace(name="hold", resources=Resources(devices=0.5))
    results: list[Executed] = []
    calls = [
        threading.Thread(target=lambda: results.append(executor.run(tool, None, SimpleNamespace(rendered=[]))))
        for _ in range(2)
    ]  # type: ignore[arg-type]
    for call in calls:
        call.start()
    for call in calls:
        call.join(60)
    first, second = sorted(results, key=lambda e: e.queued_s)
    assert (first.queued_s, second.queued_s) == (0.0, pytest.approx(0.3))  # the second waited the first's 0.3 s
    assert [e.device_s for e in results] == [pytest.approx(0.15)] * 2
