"""`judges score` and `judges calibrate` on a case folder, through the CLI, with the cpu profile's judges; and a
run whose config gives a category thresholds of its own decides that category's episodes by them."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from agent.config import load_config
from agent.policy import pass_thresholds
from main import app
from models.cpu.styles import STYLES
from store.cases import write_cases
from store.video_io import decode_clip, encode_video

pytestmark = pytest.mark.slow
SMALL = {"tools": {"ingest": {"num_frames": 9, "fps": 12, "max_side": 96}}, "policy": {"min_frames": 9}}
SEPIA, NIGHT = "Give the video an old sepia look.", "Make it night time."


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, clips: list[Path]) -> Path:
    """Sepia and night edits of the in-car clip, each frame edited by the cpu editor's own operator (accept), and
    the sepia too weak to see and no edit at all (reject)."""
    folder = tmp_path_factory.mktemp("cases")
    carphone = next(c for c in clips if c.name.startswith("carphone"))
    source = decode_clip(carphone, 12, 9, 96, 10**8).frames
    encode_video(source, 12, folder / "source.mp4")
    sepia = np.stack([STYLES["sepia"].apply(f) for f in source])
    weak = np.clip(source + 0.2 * (sepia.astype(np.float32) - source), 0, 255).astype(np.uint8)
    night = np.stack([STYLES["night"].apply(f) for f in source])
    rows = []
    for name, video, instruction, category, label in (
        ("sepia", sepia, SEPIA, "global_style", "accept"),
        ("weak", weak, SEPIA, "global_style", "reject"),
        ("same", source, SEPIA, "global_style", "reject"),
        ("night", night, NIGHT, "global_freeform", "accept"),
    ):
        encode_video(video, 12, folder / f"{name}.mp4")
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(video[0], cv2.COLOR_RGB2BGR))
        row = {"source": "source.mp4", "edited": f"{name}.mp4", "instruction": instruction, "category": category}
        rows.append({**row, "label": label, "note": name, "edited_keyframe": f"{name}.png" if name != "night" else ""})
    write_cases(folder, rows)
    (folder / "small.yaml").write_text(yaml.safe_dump(SMALL))
    return folder


def test_score_decides_each_case_as_a_run_would_and_says_why(cases: Path) -> None:
    result = CliRunner().invoke(
        app, ["judges", "score", "--cases", str(cases), "--config", str(cases / "small.yaml"), "--json"]
    )
    assert result.exit_code == 0, result.output
    verdicts = {v["edited"]: v for v in json.loads(result.output)}
    assert {e: v["accepted"] for e, v in verdicts.items()} == {
        "sepia.mp4": True,
        "weak.mp4": False,
        "same.mp4": False,
        "night.mp4": True,
    }
    assert set(verdicts["sepia.mp4"]["scores"]) == {"keyframe", "video"}
    assert set(verdicts["night.mp4"]["scores"]) == {"video"}  # no edited key frame: the video judge only
    weak = verdicts["weak.mp4"]
    assert "coverage" in weak["reason"] and weak["scores"]["video"]["coverage"] < 8
    assert "changed alike" in weak["reasons"]["video"]["coverage"]
    table = CliRunner().invoke(app, ["judges", "score", "--cases", str(cases), "--config", str(cases / "small.yaml")])
    assert table.exit_code == 0 and "2 of 4 cases accepted" in table.output


def test_calibrate_reports_the_labels_agreement_and_writes_thresholds_a_run_loads(cases: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "calibrated.yaml"
    args = [
        "judges",
        "calibrate",
        "--cases",
        str(cases),
        "--config",
        str(cases / "small.yaml"),
        "--write",
        str(overlay),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "judges against the labels" in result.output and "each criterion against the labels" in result.output
    assert "global_freeform: not fitted: needs cases labelled accept" in " ".join(result.output.split())
    cfg = load_config("cpu", overlay)
    assert cfg.tools.ingest.num_frames == 9  # the config the cases were judged with, kept
    fitted = yaml.safe_load(overlay.read_text())["policy"]["category_pass"]
    assert set(fitted) == {"global_style"}
    assert pass_thresholds(cfg.policy, "video", "global_style") == fitted["global_style"]["video_pass"]


def test_a_malformed_case_folder_ends_in_one_line(cases: Path, tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text("source,edited,instruction,category,label,note\na,b,c,global_style,yes,\n")
    result = CliRunner().invoke(app, ["judges", "calibrate", "--cases", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "row 2:" in result.output and "label 'yes'" in result.output


def test_a_run_decides_a_category_by_its_own_thresholds(tmp_path: Path, clips: list[Path]) -> None:
    """Text edits must keep the frame's structure whole, which a subtitle's strip does not; global styles keep the
    policy's thresholds: the text episodes are discarded on the text table's criterion, the styles accepted."""
    sources = tmp_path / "clips"
    sources.mkdir()
    shutil.copy(next(c for c in clips if c.name.startswith("carphone")), sources / "carphone.mp4")
    only = {c: {"target": 0} for c in ("global_freeform", "local_attribute")}
    config = {
        **SMALL,
        "categories": {**only, "global_style": {"target": 0.5}, "text": {"target": 0.5}},
        "policy": {
            **SMALL["policy"],
            "judge_attempts": 1,
            "category_pass": {"text": {"video_pass": {"structure_preservation": 10}}},
        },
    }
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    args = ["--out", str(out), "--source-dir", str(sources), "--episodes-per-clip", "2", "--budget-gpu-days", "1"]
    result = CliRunner().invoke(app, [*args, "--config", str(tmp_path / "overlay.yaml")])
    assert result.exit_code == 0, result.output
    rows = sqlite3.connect(out / "ditto.db").execute("select category, status, reason from episode").fetchall()
    assert sorted(rows) == [
        ("global_style", "accepted", None),
        ("text", "discarded", "video_judge:structure_preservation"),
    ]


@pytest.mark.tiny
def test_score_runs_the_profiles_own_judges(cases: Path) -> None:
    """With --profile tiny a case goes to the real Qwen2.5-VL video judge (tiny, random): the scores are the
    rubric's criteria, held to the tiny profile's thresholds. One case, no key frame: one call of the judge."""
    pytest.importorskip("torch")
    one = cases / "one"
    one.mkdir()
    row = {"source": "../source.mp4", "edited": "../sepia.mp4", "instruction": SEPIA, "category": "global_style"}
    write_cases(one, [{**row, "label": "accept", "note": ""}])
    clip = one / "tiny.yaml"  # the cases' frame rate and length, at the tiny profile's size
    clip.write_text(yaml.safe_dump({"tools": {"ingest": {"num_frames": 9, "fps": 12, "max_side": 64}}}))
    args = ["judges", "score", "--cases", str(one), "--profile", "tiny", "--config", str(clip), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (verdict,) = json.loads(result.stdout)  # stdout is the JSON alone: the models' loading bars go to stderr
    assert verdict["edited"] == "../sepia.mp4" and not verdict["prefilter"]
    assert set(verdict["scores"]) == {"video"}
    assert {"instruction_fidelity", "source_preservation", "temporal_consistency"} <= set(verdict["scores"]["video"])
    assert verdict["thresholds"]["video"] == load_config("tiny").policy.video_pass
