"""What the tools' declarations tell without loading a model: which tools share a resident model (and so one
Ray actor pool, agent/ray_pools.py), what such a pool reserves, and each backend's id as the loaded backend
has it."""

from __future__ import annotations

from pathlib import Path

from agent.config import load_config
from models.pool import ModelPool
from models.registry import backend_id, build_backend
from tools import by_model, declare_tools, pool_resources, tools_used_in

CLUSTER = Path(__file__).resolve().parents[2] / "configs" / "cluster.yaml"
VLM_TOOLS = ["caption_clip", "plan_instruction", "judge_keyframe", "judge_video"]


def groups(overrides: dict | None = None, config: Path | None = None) -> dict[str, list[str]]:
    cfg = load_config("full", config, overrides)
    declared = declare_tools(cfg.tools, cfg.backends, tools_used_in("episode", "training"))
    return {group: [tool.name for tool in tools] for group, tools in by_model(declared).items()}


def test_the_captioner_planner_and_judges_on_one_vlm_share_one_pool_and_editto_is_one_model() -> None:
    found = groups()
    assert found["caption_clip"] == VLM_TOOLS and found["train_editto"] == ["train_editto", "edit_with_editto"]
    assert found["fingerprint_clip"] == ["fingerprint_clip"] and found["ingest"] == ["ingest"]


def test_a_role_on_another_checkpoint_or_an_endpoint_keeps_a_pool_of_its_own() -> None:
    other = {"video_judge": {"path": "/models/Qwen2.5-VL-72B-Instruct"}}
    endpoint = {"planner": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"}}
    found = groups({"backends": other | endpoint})
    assert found["caption_clip"] == ["caption_clip", "judge_keyframe"]
    assert found["plan_instruction"] == ["plan_instruction"] and found["judge_video"] == ["judge_video"]


def test_a_shared_pool_gets_the_most_actors_and_gpus_its_tools_ask_for() -> None:
    cfg = load_config("full", CLUSTER)
    declared = declare_tools(cfg.tools, cfg.backends, VLM_TOOLS)
    shared = pool_resources(list(declared.values()))
    assert [cfg.backends.captioner["actors"], cfg.backends.video_judge["actors"]] == [1, 2] and shared.actors == 2
    assert shared.gpus == 0.5 and shared.cpus == 1


def test_a_backend_id_read_from_config_is_the_loaded_backends_own(small_config) -> None:  # type: ignore[no-untyped-def]
    """The cache key, the trace and the Ray driver take a tool's backend id from config (models.registry.backend_id);
    the backend, once loaded, names itself the same. The cpu profile's backends and an endpoint here; the neural
    ones where tests load them at tiny size (tests/models)."""
    cpu = small_config().backends.model_dump(exclude_none=True)
    cpu.pop("editto")  # torch's, and trained: tests/models/test_editto_trainer.py
    endpoint = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "served-model"}
    remote = dict.fromkeys(("captioner", "planner", "keyframe_judge", "video_judge"), endpoint)
    for step, spec in [*cpu.items(), *remote.items()]:
        assert build_backend(step, spec, ModelPool()).spec_id == backend_id(step, spec), step


def test_a_data_parallel_round_is_charged_its_workers_and_its_actor_reserves_one_gpu() -> None:
    """backends.editto workers 8: a round's call is charged 8 devices, and the Editto pool's actor reserves the one
    GPU its held-out evaluation and edits run on, not 8 more beside the workers' (docs/training.md)."""
    cfg = load_config("full", CLUSTER, {"backends": {"editto": {"workers": 8}}})
    declared = declare_tools(cfg.tools, cfg.backends, ["train_editto", "edit_with_editto"])
    assert declared["train_editto"].resources.devices == 8 and declared["edit_with_editto"].resources.devices == 1
    assert pool_resources(list(declared.values())).gpus == 1
