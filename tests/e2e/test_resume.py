"""Kill -9 the factory at random moments, resume it each time, and compare with an uninterrupted run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.faults import compare, finish, run_with_kills, start, write_config

pytestmark = pytest.mark.slow
KILLS = int(os.environ.get("DITTO_TEST_KILLS", "6"))


def test_sigkill_resume_loses_nothing_duplicates_nothing_and_charges_once(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    finish(start(tmp_path / "straight", config))
    landed = run_with_kills(tmp_path / "killed", config, KILLS)
    assert landed >= min(KILLS, 3)
    result = compare(tmp_path / "killed", tmp_path / "straight")
    assert result.samples_lost == result.duplicates == result.double_charges == 0
    assert result.bad_artifacts == result.decisions_differ == 0
    out = tmp_path / "killed"
    metadata = (out / "dataset" / "metadata.csv").read_text().splitlines()
    folders = [p for p in (out / "dataset").iterdir() if p.is_dir()]
    assert len(metadata) == len(folders) + 1 > 1
