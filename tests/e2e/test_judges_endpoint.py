"""A cpu run whose captioner and judges are a vision-language model at an OpenAI-compatible endpoint: while the
judges' endpoint is down the run stops, resumably, discarding nothing for it; once it is back the same command
finishes the run, the samples carry the endpoint's verdicts, and every frame it was shown arrived as an image."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from bench.fake_llm_server import Reply, ScriptedLLMServer, answer_schema_of, fitting_answer, images_in
from main import app
from tests.conftest import SMALL

pytestmark = pytest.mark.slow
QUICK = {"request_timeout_s": 2, "deadline_s": 2, "max_attempts": 2}  # the endpoint's own retries, kept short
RUBRIC_PASS = {  # the rubric's criteria (prompts/templates/judge_*.j2), as the full profile names them
    "keyframe_pass": {"instruction_fidelity": 7, "source_preservation": 7, "visual_quality": 6, "safety": 9},
    "video_pass": {"instruction_fidelity": 7, "temporal_consistency": 7, "safety": 9},
}


def judges_down(body: dict[str, Any]) -> Reply:
    """Captions are answered; the judges' requests find the server overloaded."""
    is_verdict = "scores" in (answer_schema_of(body) or {}).get("properties", {})
    return Reply(status=503) if is_verdict else fitting_answer(body)


def write_config(tmp_path: Path, url: str) -> Path:
    at_endpoint = {"kind": "openai", "base_url": url, "model": "qwen-vl", **QUICK}
    backends = {step: at_endpoint for step in ("captioner", "keyframe_judge", "video_judge")}
    config = tmp_path / "judges_at_endpoint.yaml"
    settings = {**SMALL, "episodes_per_clip": 1, "max_samples": 2, "backends": backends}
    config.write_text(yaml.safe_dump({**settings, "policy": {**SMALL["policy"], **RUBRIC_PASS}}))
    return config


def test_judges_at_an_endpoint_stop_the_run_while_it_is_down_and_judge_every_sample_once_back(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with ScriptedLLMServer(answer=judges_down) as server:
        config = write_config(tmp_path, server.url)
        stopped = CliRunner().invoke(app, ["--out", str(out), "--config", str(config)])
    assert stopped.exit_code == 1, stopped.output
    said = " ".join(stopped.output.split())
    assert "judge_keyframe stopped the run: its backend openai-chat:qwen-vl was unreachable 3 calls in a row" in said
    db = sqlite3.connect(out / "ditto.db")
    assert db.execute("select status from run").fetchone() == ("interrupted",)
    assert db.execute("select count(*) from episode where reason like 'backend_unavailable%'").fetchone() == (0,)
    assert db.execute("select count(*) from toolcall where tool like 'judge%'").fetchone() == (0,)

    # Back, at another port: where a model is served is applied to the run as it goes on (models.registry
    # OUTPUT_NEUTRAL), the model's name is not.
    with ScriptedLLMServer(answer=fitting_answer) as server:
        finished = CliRunner().invoke(app, ["--out", str(out), "--config", str(write_config(tmp_path, server.url))])
        requests = [r["body"] for r in server.requests]
    assert finished.exit_code == 0, finished.output
    assert db.execute("select status from run").fetchone() == ("stopped_max_samples",)
    records = [json.loads(p.read_text()) for p in sorted((out / "dataset").glob("*/record.json"))]
    assert len(records) == 2
    for record in records:
        assert set(record["scores"]["keyframe"]) == set(RUBRIC_PASS["keyframe_pass"])
        assert set(record["scores"]["video"]) >= set(RUBRIC_PASS["video_pass"]) | {"shape_fidelity"}
    verdicts = [b for b in requests if "scores" in (answer_schema_of(b) or {}).get("properties", {})]
    shown = [[mime for mime, _ in images_in(b)] for b in verdicts]
    assert ["image/png"] * 2 in shown and ["image/jpeg"] * 16 in shown  # key frames, then 8 frames of each video
