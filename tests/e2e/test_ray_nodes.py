"""A whole node lost in the middle of a call. Ray's own test helper (ray.cluster_utils.Cluster) runs a head
and worker nodes as raylets of their own on this machine, and remove_node is node loss: the pools' actors
restart on the node that is left, each interrupted call runs again there, and the run ends with the
decisions and the number of charges of an undisturbed run."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.runner import Factory
from bench.fake_llm_server import Reply, ScriptedLLMServer, plan_json
from tests.e2e.ray_runs import charged_once, charges, one_clip_config, outcome

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="ray is missing: pip install -e '.[scale]'")
cluster_utils = pytest.importorskip("ray.cluster_utils")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head without CPUs (the driver's node: no actor is placed there) and one worker node that holds
    every actor. The helper writes its address where `ray.init()` looks for a cluster to join: RAY_TMPDIR
    keeps that in a folder of the module's own, away from other Ray users of this machine."""
    tmp = tempfile.mkdtemp(prefix="rn-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    before = os.environ.get("RAY_TMPDIR")
    os.environ.update(RAY_TMPDIR=tmp, RAY_AUTH_MODE="disabled")
    made = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
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


def test_a_node_lost_mid_call_costs_retries_not_episodes(tmp_path: Path, small_config, cluster: Any) -> None:  # type: ignore[no-untyped-def]
    with ScriptedLLMServer([Reply(plan_json())]) as server:
        undisturbed = Factory(one_clip_config(tmp_path / "undisturbed", small_config, server.url, executor="local"))
        undisturbed.execute()
    doomed = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    with ScriptedLLMServer([Reply(plan_json(), delay_s=4), Reply(plan_json())]) as server:
        # No pools config: the default reservations, scaled to the worker's 2 CPUs, place every actor there.
        cfg = one_clip_config(tmp_path / "lost", small_config, server.url, concurrency=1, pools={})
        factory = Factory(cfg)
        cluster.add_node(num_cpus=2)  # where the actors go once their node is lost
        lost: list[float] = []

        def lose_the_node_mid_call() -> None:
            while not server.requests:
                time.sleep(0.02)
            cluster.remove_node(doomed)
            lost.append(time.perf_counter())

        threading.Thread(target=lose_the_node_mid_call, daemon=True).start()
        result = factory.execute()
    assert lost and len(server.requests) >= 2  # the planner's call ran again after the loss
    assert result.totals.accepted + result.totals.discarded == 2
    assert outcome(factory) == outcome(undisturbed) and charges(factory) == charges(undisturbed)
    assert charged_once(factory)
