"""One small cpu run shared by the report and export tests (it takes a few seconds; they only read it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from main import app
from tests.conftest import SMALL


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT of a finished cpu run over the three sample clips: accepted and discarded episodes (a scene cut)."""
    folder = tmp_path_factory.mktemp("finished-run")
    config = folder / "small.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in SMALL.items() if k != "budget_gpu_days"} | {"seed": 3}))
    result = CliRunner().invoke(app, ["--out", str(folder / "out"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    return folder / "out"


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run, for a test that changes it."""
    return Path(shutil.copytree(finished_run, tmp_path / "out"))
