"""Where weights come from (models/checkpoints.py). Needs no torch, so it runs on the cpu profile's install."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.checkpoints import CheckpointMissingError, resolve_checkpoint


def test_missing_checkpoint_names_step_and_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointMissingError, match=r"backends.propagator.path: no checkpoint at /nowhere/wan"):
        resolve_checkpoint("propagator", "/nowhere/wan", allow_download=False)
    with pytest.raises(CheckpointMissingError, match="--allow-download"):
        resolve_checkpoint("editor", "Qwen/Qwen-Image-Edit", allow_download=False)
    assert resolve_checkpoint("editor", "Qwen/Qwen-Image-Edit", allow_download=True) == "Qwen/Qwen-Image-Edit"
    assert resolve_checkpoint("editor", str(tmp_path), allow_download=False) == str(tmp_path)
