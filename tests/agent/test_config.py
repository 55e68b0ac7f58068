"""Run configs stored by earlier versions still load; every number a config sets is held to a range; endpoints
named in config are checked before a run."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic import BaseModel

from agent.checks import check_endpoint
from agent.config import ConfigError, RunConfig, endpoints, load_config
from bench.pg_server import free_port
from tools import build_toolkit

CONFIGS = Path(__file__).parents[2] / "configs"

BOUNDS = (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt, annotated_types.Interval)


def numbers_without_a_range(annotation: Any, metadata: list[Any], key: str) -> Iterator[str]:
    """Config keys (with * for a mapping's keys) whose type is a number that no bound holds."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *more = typing.get_args(annotation)
        metadata = [*metadata, *more]
        metadata += [m for x in more for m in getattr(x, "metadata", [])]  # Field(ge=...) inside Annotated
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            yield from numbers_without_a_range(field.annotation, field.metadata, f"{key}.{name}".lstrip("."))
        return
    if typing.get_origin(annotation) is dict:
        yield from numbers_without_a_range(typing.get_args(annotation)[1], [], f"{key}.*")
        return
    options = typing.get_args(annotation) or (annotation,)
    if any(a in (int, float) for a in options) and not any(isinstance(m, BOUNDS) for m in metadata):
        yield key
    for option in options:
        if option is not annotation and not (option in (int, float) or option is type(None)):
            yield from numbers_without_a_range(option, [], key)


def test_every_number_a_config_sets_is_held_to_a_range() -> None:
    """A negative or absurd fps, seed or threshold is refused in one line naming its key, never accepted to fail
    every episode later (tools: {ingest: {fps: -5}} once ran 24 episodes to 24 discards)."""
    assert list(numbers_without_a_range(RunConfig, [], "")) == []


def test_a_config_stored_with_a_retired_key_still_loads() -> None:
    """metadata_every (metadata.csv rewritten every N samples) was stored with every run before commits
    appended to the file; those runs must resume."""
    stored = json.loads(load_config("cpu").model_dump_json())
    assert RunConfig.model_validate({**stored, "metadata_every": 10}) == RunConfig.model_validate(stored)


def test_the_vlm_endpoint_config_serves_every_vlm_role_from_one_endpoint_and_loads_no_model() -> None:
    cfg = load_config("full", CONFIGS / "vlm_endpoint.yaml")
    roles = ("captioner", "planner", "keyframe_judge", "video_judge")
    assert endpoints(cfg.backends) == dict.fromkeys(roles, "http://localhost:8000/v1")
    toolkit = build_toolkit(cfg.tools, cfg.backends, wanted=["caption_clip", "judge_keyframe", "judge_video"])
    assert {tool.backend_id for tool in toolkit.values()} == {"openai-chat:qwen2.5-vl-72b"}
    assert {tool.resources.devices for tool in toolkit.values()} == {0}  # it holds no device of ours


def test_a_judge_endpoint_that_is_not_http_or_not_up_is_refused_naming_its_key() -> None:
    with pytest.raises(ConfigError, match="backends.video_judge.base_url ftp://x: not an http"):
        load_config("cpu", overrides={"backends": {"video_judge": {"kind": "openai", "base_url": "ftp://x"}}})
    port = free_port()  # nothing listens there
    with pytest.raises(ConfigError, match=f"backends.keyframe_judge.base_url http://127.0.0.1:{port}/v1: .*refused"):
        check_endpoint("keyframe_judge", f"http://127.0.0.1:{port}/v1")
