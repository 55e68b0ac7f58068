"""Exports are read back the way their consumers read them: csv rows whose files decode."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import cv2
import pytest
import yaml
from typer.testing import CliRunner

from main import app
from tests.conftest import SMALL

pytestmark = pytest.mark.slow


def test_diffsynth_export_lists_decodable_triplets(tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in SMALL.items() if k != "budget_gpu_days"}))
    out = tmp_path / "out"
    runner = CliRunner()
    assert runner.invoke(app, ["--out", str(out), "--config", str(config), "--max-samples", "2"]).exit_code == 0
    result = runner.invoke(app, ["export", "--out", str(out), "--format", "diffsynth"])
    assert result.exit_code == 0 and "2 samples" in result.output
    rows = list(csv.DictReader(open(out / "dataset" / "metadata_vace.csv")))
    assert len(rows) == 2 and list(rows[0]) == ["video", "vace_video", "vace_reference_image", "prompt"]
    for row in rows:
        for key in ("video", "vace_video"):
            with av.open(str(out / "dataset" / row[key])) as video:
                assert sum(1 for _ in video.decode(video=0)) == 17
        assert cv2.imread(str(out / "dataset" / row["vace_reference_image"])) is not None
        assert row["prompt"]
    assert runner.invoke(app, ["export", "--out", str(out), "--format", "parquet"]).exit_code == 1
