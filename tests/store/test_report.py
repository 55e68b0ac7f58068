"""The HTML report shows every episode with its videos and scores, and escapes what models wrote."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from main import app
from tests.conftest import SMALL

pytestmark = pytest.mark.slow


def test_report_links_existing_videos_and_escapes_model_text(tmp_path: Path) -> None:
    runner = CliRunner()
    prompts = tmp_path / "prompts"
    runner.invoke(app, ["prompts", "copy", "edit_vocabulary.yaml", str(prompts)])
    vocab = yaml.safe_load((prompts / "edit_vocabulary.yaml").read_text())
    vocab["edits"] = [e for e in vocab["edits"] if e["style"] == "sepia"]
    vocab["edits"][0]["instructions"] = ["Make it sepia.", "Age it with sepia tones."]
    (prompts / "edit_vocabulary.yaml").write_text(yaml.safe_dump(vocab))
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in SMALL.items() if k != "budget_gpu_days"}))
    out = tmp_path / "out"
    assert runner.invoke(app, ["--out", str(out), "--config", str(config), "--prompts", str(prompts)]).exit_code == 0

    # The planner refuses markup now (tests/tools/test_plan_instruction.py); text recorded before it did,
    # or edited in the database, must still reach the page escaped.
    db = sqlite3.connect(out / "ditto.db")
    markup = "<script>alert(1)</script> Make it sepia."
    db.execute(
        "update toolcall set output_json = json_set(output_json, '$.instruction', ?) where tool = ?",
        (markup, "plan_instruction"),
    )
    db.commit()
    result = runner.invoke(app, ["report", "--out", str(out)])
    assert result.exit_code == 0 and "6 episodes" in result.output
    html = (out / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count('class="accepted"') == 4 and html.count('class="discarded"') == 2
    assert "scene_cut" in html and "temporal_consistency" in html
    videos = re.findall(r'<video src="([^"]+)"', html)
    assert len(videos) >= 8
    assert all((out / v).is_file() for v in videos)
