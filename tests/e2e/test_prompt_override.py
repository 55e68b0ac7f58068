"""A user copies a template, edits it and runs with --prompts: only that file changes, traces say so."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from main import app
from prompts.loader import PromptBook
from tests.conftest import SMALL

pytestmark = pytest.mark.slow


def test_prompt_override_is_used_and_traced(tmp_path: Path) -> None:
    folder = tmp_path / "my prompts"
    runner = CliRunner()
    assert runner.invoke(app, ["prompts", "copy", "edit_vocabulary.yaml", str(folder)]).exit_code == 0
    vocab = yaml.safe_load((folder / "edit_vocabulary.yaml").read_text())
    vocab["edits"] = [e for e in vocab["edits"] if e["style"] == "sepia"]
    vocab["edits"][0]["instructions"] = ["Make it sepia, like a photo from 1900.", "Age it with sepia tones."]
    (folder / "edit_vocabulary.yaml").write_text(yaml.safe_dump(vocab))
    listed = runner.invoke(app, ["prompts", "list", "--prompts", str(folder)]).output
    assert re.search(r"edit_vocabulary.yaml\s+│ override", listed)
    assert re.search(r"judge_video.j2\s+│ built-in", listed)

    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in SMALL.items() if k != "budget_gpu_days"}))
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["--out", str(out), "--config", str(config), "--prompts", str(folder), "--max-samples", "2"]
    )
    assert result.exit_code == 0, result.output
    db = sqlite3.connect(out / "ditto.db")
    instructions = {
        json.loads(o)["instruction"]
        for (o,) in db.execute("select output_json from toolcall where tool='plan_instruction' and output_json != ''")
    }
    assert instructions <= {"Make it sepia, like a photo from 1900.", "Age it with sepia tones."}
    override_hash = PromptBook(folder).source("edit_vocabulary.yaml").sha256
    record = json.loads(next((out / "dataset").glob("*/record.json")).read_text())
    assert record["templates"] == {"edit_vocabulary.yaml": override_hash}  # the one text the cpu backends read
    rows = db.execute("select prompts_json from toolcall")
    origins = {p["name"]: p["origin"] for (raw,) in rows for p in json.loads(raw)}
    assert origins == {"edit_vocabulary.yaml": "override"}
