"""Nodes lost and added while a run goes on, with the default config (no reservation set by hand). Ray's own test
helper (ray.cluster_utils.Cluster) runs a head of 1 CPU (the driver's node) and worker nodes as raylets of their
own on this machine; remove_node is node loss. A lost node's actors restart on the nodes left (the pools'
reservations leave room for them), its interrupted calls run again there, the pools shrink to what the nodes
left hold and grow back when a node joins, and each run ends with the decisions and the charges of an
undisturbed run of the same seed, every call charged once."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import deep_merge, load_config
from agent.faults import PoolStop
from agent.ray_cluster import autoscaler_adds
from agent.ray_pools import RayExecutor
from agent.runner import Factory
from bench.fake_llm_server import Reply, ScriptedLLMServer, plan_json
from tests.conftest import SMALL
from tests.e2e.ray_runs import charged_once, charges, one_clip_config, outcome

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="ray is missing: pip install -e '.[scale]'")
cluster_utils = pytest.importorskip("ray.cluster_utils")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """The issue's cluster's head: 1 CPU; each test adds its node_b of 2 CPUs. The helper writes its address
    where `ray.init()` looks for a cluster to join: RAY_TMPDIR keeps that in a folder of the module's own,
    away from other Ray users of this machine."""
    tmp = tempfile.mkdtemp(prefix="rn-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    before = os.environ.get("RAY_TMPDIR")
    os.environ.update(RAY_TMPDIR=tmp, RAY_AUTH_MODE="disabled")
    made = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    ray.init(address=made.address, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        yield made
    finally:
        ray.shutdown()
        made.shutdown()
        if before is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = before
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same run on the local executor, once for the module: its outcome and its number of charges."""
    tmp = tmp_path_factory.mktemp("undisturbed")
    with ScriptedLLMServer([Reply(plan_json())]) as server:
        factory = Factory(one_clip_config(tmp, config_maker(tmp), server.url, executor="local"))
        factory.execute()
    return {"outcome": outcome(factory), "charges": charges(factory)}


def config_maker(tmp: Path) -> Callable[..., Any]:
    def make(**overrides: Any) -> Any:
        return load_config("cpu", None, deep_merge(deep_merge(SMALL, {"out": tmp / "out"}), overrides))

    return make


def head_held(cluster: Any) -> Any:
    """Another job's actor holding the head's CPU, so that node_b holds every actor of the run; it lets go
    when node_b is lost, as a job ends."""

    @ray.remote(num_cpus=1)
    class Holder:
        def ready(self) -> None:
            return None

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    head = cluster.head_node.node_id
    holder = Holder.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote()
    ray.get(holder.ready.remote())
    return holder


def until(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.05)


def same_as_undisturbed(factory: Factory, undisturbed: dict[str, Any]) -> None:
    assert len(outcome(factory)["decisions"]) == 2
    assert outcome(factory) == undisturbed["outcome"] and charges(factory) == undisturbed["charges"]
    assert charged_once(factory)


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "agent.ray_pools" and text in r.getMessage()]


def test_a_cluster_without_an_autoscaler_is_seen_as_one(cluster: Any) -> None:
    """Its head's monitor runs Ray's read-only autoscaler all the same: a pool that does not fit is refused at
    once, not left waiting for a node nothing would add (tests/e2e/test_ray_autoscaler.py: one that does)."""
    assert autoscaler_adds() is None


def test_the_node_types_an_autoscaler_reports_to_rays_gcs_are_what_it_adds(cluster: Any) -> None:
    """The cluster config an autoscaler may report (Ray's own does not), written where Ray keeps it."""
    from ray._raylet import GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, GCS_AUTOSCALER_STATE_NAMESPACE
    from ray.core.generated.autoscaler_pb2 import ClusterConfig, NodeGroupConfig
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_put

    gpu = NodeGroupConfig(name="gpu", resources={"CPU": 8, "GPU": 2, "memory": 2**35}, max_count=-1)
    none = NodeGroupConfig(name="none", resources={"CPU": 64}, max_count=0)
    where = {"namespace": GCS_AUTOSCALER_STATE_NAMESPACE}
    _internal_kv_put(
        GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, ClusterConfig(node_group_configs=[gpu, none]).SerializeToString(), **where
    )
    try:
        assert autoscaler_adds() == [{"GPU": 2.0, "CPU": 8.0, "memory": 2.0**35}]
    finally:
        _internal_kv_del(GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, **where)
    assert autoscaler_adds() is None


def test_a_node_lost_before_its_actors_loaded(
    tmp_path: Path,
    cluster: Any,
    undisturbed: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """node_b goes as soon as every pool's actor has been started there, before they have loaded."""
    caplog.set_level(logging.INFO, logger="agent.ray_pools")
    node_b = cluster.add_node(num_cpus=2)
    holder = head_held(cluster)
    wait = RayExecutor._wait_until_started

    def lose_node_b_then_wait(executor: RayExecutor) -> None:
        ray.kill(holder)
        cluster.remove_node(node_b)
        wait(executor)

    monkeypatch.setattr(RayExecutor, "_wait_until_started", lose_node_b_then_wait)
    with ScriptedLLMServer([Reply(plan_json())]) as server:
        factory = Factory(one_clip_config(tmp_path, config_maker(tmp_path), server.url, pools={}))
        factory.execute()
    assert lines(caplog, f"node {node_b.node_id[:8]} left (2 CPUs, 0 GPUs)")
    same_as_undisturbed(factory, undisturbed)


def test_a_node_lost_mid_call_costs_a_retry_not_an_episode(
    tmp_path: Path, cluster: Any, undisturbed: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """node_b holds every actor; it goes while the planner's call waits on the LLM: the call runs again on
    the head, where its actor restarts."""
    caplog.set_level(logging.INFO, logger="agent.ray_pools")
    node_b = cluster.add_node(num_cpus=2)
    holder = head_held(cluster)
    with ScriptedLLMServer([Reply(plan_json(), delay_s=4), Reply(plan_json())]) as server:
        factory = Factory(one_clip_config(tmp_path, config_maker(tmp_path), server.url, concurrency=1, pools={}))

        def lose_node_b_mid_call() -> None:
            until(lambda: bool(server.requests))
            ray.kill(holder)
            cluster.remove_node(node_b)

        threading.Thread(target=lose_node_b_mid_call, daemon=True).start()
        factory.execute()
    assert len(server.requests) >= 2  # the planner's call ran again after the loss
    said = lines(caplog, f"node {node_b.node_id[:8]} left")
    assert said and "1 calls in flight there run again on the nodes left" in said[0]
    same_as_undisturbed(factory, undisturbed)


def test_a_node_lost_after_loading_shrinks_the_pools_and_one_added_grows_them(
    tmp_path: Path, cluster: Any, undisturbed: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Three key-frame judges where the cluster has room (an actor count, no reservation): node_b lost once
    every actor has loaded, the pool shrinks to the one the head holds beside the others; a new node of 2
    CPUs joins and it grows back to three. (The run goes on in a thread: Ray's helper adds nodes only from
    the main thread.)"""
    caplog.set_level(logging.INFO, logger="agent.ray_pools")
    node_b = cluster.add_node(num_cpus=2)
    with ScriptedLLMServer([Reply(plan_json(), delay_s=8), Reply(plan_json())]) as server:
        pools = {"judge_keyframe": {"actors": 3}}
        factory = Factory(one_clip_config(tmp_path, config_maker(tmp_path), server.url, concurrency=1, pools=pools))
        judges = factory.caller.executor.pools["judge_keyframe"]  # type: ignore[attr-defined]
        assert len(judges.actors) == 3
        run = threading.Thread(target=factory.execute, daemon=True)
        run.start()
        until(lambda: bool(server.requests))
        cluster.remove_node(node_b)
        until(lambda: len(judges.actors) == 1)
        joined = cluster.add_node(num_cpus=2)
        until(lambda: len(judges.actors) == 3)
        run.join(300)
    shrunk = f"node {node_b.node_id[:8]} left (2 CPUs, 0 GPUs): pools re-fitted: judge_keyframe 3 -> 1"
    grown = f"node {joined.node_id[:8]} joined (2 CPUs, 0 GPUs): pools re-fitted: judge_keyframe 1 -> 3"
    assert lines(caplog, shrunk) and lines(caplog, grown)
    same_as_undisturbed(factory, undisturbed)
    cluster.remove_node(joined)


def test_a_pool_whose_only_node_is_lost_stops_the_run_resumably_within_its_deadline(
    tmp_path: Path, cluster: Any, undisturbed: dict[str, Any]
) -> None:
    """Propagation on a GPU that only node_b has: node_b lost, its actor finds no node with room within
    ray_waits.place_s (5 s here, 300 by default), and the run stops in one line naming the pool and what it
    lacks. A node with a GPU joins, and the same run resumed ends as an undisturbed one."""
    node_b = cluster.add_node(num_cpus=2, num_gpus=1)
    with ScriptedLLMServer([Reply(plan_json())]) as server:
        pools = {"propagate": {"gpus": 1}}
        cfg = one_clip_config(
            tmp_path, config_maker(tmp_path), server.url, concurrency=1, pools=pools, ray_waits={"place_s": 5}
        )
        factory = Factory(cfg)
        stopped: list[BaseException | None] = []
        run = threading.Thread(target=lambda: stopped.append(catch(factory.execute)), daemon=True)
        run.start()  # in a thread: Ray's helper adds and removes nodes only from the main thread
        until(lambda: bool(server.requests))
        cluster.remove_node(node_b)
        run.join(120)
        assert isinstance(stopped[0], PoolStop), stopped
        said = str(stopped[0])
        assert said.startswith("Ray pool propagate has no actor left: no node had room for an actor (1 GPUs")
        assert "ray_waits.place_s (5 s)" in said and "\n" not in said
        gpu_node = cluster.add_node(num_cpus=2, num_gpus=1)
        resumed = Factory(cfg, run_id=factory.run.id)
        resumed.execute()
    same_as_undisturbed(resumed, undisturbed)
    cluster.remove_node(gpu_node)


def catch(run: Callable[[], Any]) -> BaseException | None:
    try:
        run()
    except BaseException as err:  # noqa: BLE001 -- handed to the test
        return err
    return None
