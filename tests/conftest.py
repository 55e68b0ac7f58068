"""Shared fixtures: offline hubs, small cpu configs, sample and broken clips."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("OPENAI_BASE_URL", None)

from agent.config import RunConfig, deep_merge, load_config  # noqa: E402
from agent.runner import sample_clips  # noqa: E402
from bench.bad_inputs import write_bad_clips  # noqa: E402

# Small enough that an episode takes well under a second on one core.
SMALL: dict[str, Any] = {
    "tools": {"ingest": {"num_frames": 17, "fps": 12, "max_side": 128}},
    "policy": {"min_frames": 9},
    "episodes_per_clip": 2,
    "concurrency": 2,
    "budget_gpu_days": 1.0,
}


@pytest.fixture
def small_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(**overrides: Any) -> RunConfig:
        return load_config("cpu", None, deep_merge(deep_merge(SMALL, {"out": tmp_path / "out"}), overrides))

    return make


@pytest.fixture(scope="session")
def clips() -> list[Path]:
    found = sample_clips()
    assert len(found) == 3, found
    return found


@pytest.fixture
def bad_clips_dir(tmp_path: Path, clips: list[Path]) -> Path:
    """A source folder with one good clip and every kind of broken one."""
    return write_bad_clips(tmp_path / "sources with spaces ü", clips[0])


@pytest.fixture(scope="session", autouse=True)
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny checkpoints are built once per test session, in a temporary folder."""
    path = tmp_path_factory.mktemp("tiny-models")
    os.environ["DITTO_TINY_DIR"] = str(path)
    return path


from tests.postgres import postgres_server, postgres_url  # noqa: E402, F401  (a throwaway PostgreSQL)
