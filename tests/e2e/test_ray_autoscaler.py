"""A run on a cluster with an autoscaler, with the default ray_waits: the head (1 CPU) cannot hold the GPU that
propagation asks for, and the autoscaler can add a node that has one. Ray's own autoscaler runs on the head
with its fake multi-node provider (which starts each node it adds as raylets on this machine); Ray's
AutoscalingCluster helper is not used: it runs `ray stop --force`, which would stop every Ray on the machine."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.ray_cluster import autoscaler_adds
from agent.runner import Factory
from bench.fake_llm_server import Reply, ScriptedLLMServer, plan_json
from tests.e2e.ray_runs import charged_once, one_clip_config, outcome
from tests.e2e.test_ray_nodes import config_maker, lines

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="ray is missing: pip install -e '.[scale]'")
cluster_utils = pytest.importorskip("ray.cluster_utils")
ROOT = Path(__file__).resolve().parents[2]
GPU_NODE = {"resources": {"CPU": 2, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 1}


def autoscaling_config(gcs_address: str) -> dict[str, Any]:
    """A cluster config for Ray's fake multi-node provider: the head, and the node type it may add once."""
    return {
        "cluster_name": "ditto-test",
        "max_workers": 1,
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            "gpu_node": GPU_NODE,
        },
        "head_node_type": "ray.head.default",
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "docker": {},
        "auth": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        **dict.fromkeys(("initialization_commands", "setup_commands", "head_setup_commands"), []),
        **dict.fromkeys(("worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands"), []),
    }


@pytest.fixture(scope="module")
def autoscaling() -> Iterator[Any]:
    tmp = tempfile.mkdtemp(prefix="ra-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = {"RAY_TMPDIR": tmp, "RAY_AUTH_MODE": "disabled", "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    with socket.socket() as s:  # the provider must know the GCS's address before the head starts
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = Path(tmp) / "autoscaling.json"
    config.write_text(json.dumps(autoscaling_config(f"{ray._private.services.get_node_ip_address()}:{port}")))
    made = cluster_utils.Cluster()
    made.add_node(num_cpus=1, gcs_server_port=port, autoscaling_config=str(config))
    session = made.head_node.get_session_dir_path()
    ray.init(address=made.address, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        deadline = time.monotonic() + 120  # seconds under a loaded CI machine
        while autoscaler_adds() is None:  # its monitor's first status
            assert time.monotonic() < deadline, "the autoscaler never reported"
            time.sleep(0.2)
        yield made
    finally:
        ray.shutdown()
        made.shutdown()
        # The nodes the autoscaler added are not the helper's to stop: they share the cluster's session folder.
        for proc in psutil.process_iter(["cmdline"]):
            if session in " ".join(proc.info["cmdline"] or []):
                proc.kill()
        for key, value in before.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_pool_only_the_autoscalers_node_holds_waits_for_it_and_the_run_goes_on(
    tmp_path: Path, autoscaling: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Propagation asks for a GPU the head lacks: without an autoscaler the run is refused at once; here it
    starts, says propagation waits for the autoscaler's node, the node joins, and the run ends."""
    caplog.set_level(logging.INFO, logger="agent.ray_pools")
    assert autoscaler_adds() == []  # Ray's v1 autoscaler does not publish its node types
    with ScriptedLLMServer([Reply(plan_json())]) as server:
        cfg = one_clip_config(tmp_path, config_maker(tmp_path), server.url, pools={"propagate": {"gpus": 1}})
        factory = Factory(cfg)
        factory.execute()
    assert lines(caplog, "propagate waits for a node the cluster's autoscaler adds")
    assert lines(caplog, "joined (2 CPUs, 1 GPUs)")
    assert len(outcome(factory)["decisions"]) == 2 and charged_once(factory)
