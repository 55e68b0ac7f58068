"""The tiny profile: the whole graph with real model classes at tiny size, on CPU."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("torch")
pytestmark = [pytest.mark.tiny, pytest.mark.slow]

from main import app  # noqa: E402


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def two_clips(tmp_path: Path, clips: list[Path]) -> Path:
    d = tmp_path / "clips"
    d.mkdir()
    for clip in (clips[0], clips[2]):  # bigbuckbunny and carphone: no scene cut
        shutil.copy(clip, d / clip.name)
    return d


def test_tiny_profile_runs_two_clips_to_a_decision(tmp_path: Path, clips: list[Path]) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"episodes_per_clip": 1, "policy": {"max_attempts": 1}}))
    out = tmp_path / "out"
    result = run(
        "--profile", "tiny", "--config", str(config), "--out", str(out), "--source-dir", str(two_clips(tmp_path, clips))
    )
    assert result.exit_code == 0, result.output
    assert "qwen-image-edit:qwen_image_edit" in result.output and "wan-vace:wan_vace" in result.output
    db = sqlite3.connect(out / "ditto.db")
    rows = db.execute("select status, reason from episode").fetchall()
    assert len(rows) == 2 and all(s == "discarded" for s, _ in rows)
    # Random-weight judges cannot write the rubric's JSON: recorded as a judge failure, never passed.
    assert {r for _, r in rows} == {"llm_schema@judge_keyframe"}


def test_tiny_generators_reach_commit_with_metric_judges(tmp_path: Path, clips: list[Path]) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "episodes_per_clip": 1,
                "backends": {"keyframe_judge": {"kind": "metric"}, "video_judge": {"kind": "metric"}},
                "policy": {"max_attempts": 1, "keyframe_pass": {}, "video_pass": {}},
            }
        )
    )
    out = tmp_path / "out"
    result = run(
        "--profile", "tiny", "--config", str(config), "--out", str(out), "--source-dir", str(two_clips(tmp_path, clips))
    )
    assert result.exit_code == 0, result.output
    db = sqlite3.connect(out / "ditto.db")
    assert db.execute("select count(*) from sample").fetchone()[0] == 2
    tools = {t for (t,) in db.execute("select distinct tool from toolcall where error_kind is null")}
    assert {"caption_clip", "edit_keyframe", "estimate_depth", "propagate", "enhance_temporal"} <= tools
    assert all((p / "depth.mp4").is_file() for p in (out / "dataset").iterdir() if p.is_dir())


def test_full_profile_with_missing_weights_fails_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("--profile", "full", "--out", str(out))
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "backends.captioner.path: no checkpoint at /models/Qwen2.5-VL-7B-Instruct" in message
    assert not (out / "dataset").exists()
