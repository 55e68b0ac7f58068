"""One small cpu run shared by the report and export tests (it takes a few seconds; they only read it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from bench.bad_inputs import write_test_video
from main import app
from store.video_io import decode_clip
from tests.conftest import SMALL


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, clips: list[Path]) -> Path:
    """OUT of a finished cpu run over two sample clips and one that cuts to another shot every 0.75 s: accepted
    episodes, and discarded ones (scene cuts)."""
    folder = tmp_path_factory.mktemp("finished-run")
    sources = folder / "sources"
    sources.mkdir()
    for clip in clips:
        if clip.name != "bikes.mp4":
            shutil.copy(clip, sources / clip.name)
    bunny = decode_clip(sources / "bigbuckbunny.mp4", 12, 45, 128, 10**9).frames
    phone = decode_clip(sources / "carphone_pristine.mp4", 12, 45, 128, 10**9).frames
    phone = np.stack([cv2.resize(f, (bunny.shape[2], bunny.shape[1])) for f in phone])
    shots = [(bunny if k % 2 == 0 else phone)[9 * k : 9 * k + 9] for k in range(5)]  # no 17 frames without a cut
    write_test_video(sources / "cuts.mp4", np.concatenate(shots), fps=12)
    config = folder / "small.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in SMALL.items() if k != "budget_gpu_days"} | {"seed": 3}))
    result = CliRunner().invoke(
        app, ["--out", str(folder / "out"), "--config", str(config), "--source-dir", str(sources)]
    )
    assert result.exit_code == 0, result.output
    return folder / "out"


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run, for a test that changes it."""
    return Path(shutil.copytree(finished_run, tmp_path / "out"))
