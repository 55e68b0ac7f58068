"""Which tools share a resident model, and so one Ray actor pool (agent/ray_pools.py)."""

from __future__ import annotations

from pathlib import Path

from agent.config import load_config
from tools import EPISODE_TOOLS, pool_resources, shared_model_pools

CLUSTER = Path(__file__).resolve().parents[2] / "configs" / "cluster.yaml"
VLM_TOOLS = ("caption_clip", "plan_instruction", "judge_keyframe", "judge_video")


def test_the_captioner_planner_and_judges_on_one_vlm_share_one_pool() -> None:
    backends = load_config("full").backends
    assert shared_model_pools(backends, EPISODE_TOOLS) == dict.fromkeys(VLM_TOOLS, "caption_clip")


def test_a_role_on_another_checkpoint_or_an_endpoint_keeps_a_pool_of_its_own() -> None:
    other = {"video_judge": {"path": "/models/Qwen2.5-VL-72B-Instruct"}}
    endpoint = {"planner": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"}}
    pools = shared_model_pools(load_config("full", None, {"backends": other | endpoint}).backends, EPISODE_TOOLS)
    assert pools == {"caption_clip": "caption_clip", "judge_keyframe": "caption_clip", "judge_video": "judge_video"}


def test_a_shared_pool_gets_the_most_actors_and_gpus_its_tools_ask_for() -> None:
    backends = load_config("full", CLUSTER).backends
    shared = pool_resources(list(VLM_TOOLS), backends)
    assert [backends.captioner["actors"], backends.video_judge["actors"]] == [1, 2] and shared.actors == 2
    assert shared.gpus == 0.5 and shared.cpus == 1
