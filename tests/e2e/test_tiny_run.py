"""The tiny profile: the whole graph with real model classes at tiny size, on CPU."""

from __future__ import annotations

import json
import sqlite3
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("torch")
pytestmark = [pytest.mark.tiny, pytest.mark.slow]

from diffusers import WanVACEPipeline  # noqa: E402

from agent.quotas import default_categories  # noqa: E402
from main import app  # noqa: E402


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


# The class behind each stage, as its backend names itself in the trace.
REAL_CLASSES = {
    "caption_clip": "qwen2.5-vl:",
    "plan_instruction": "qwen2.5-vl:",
    "edit_keyframe": "qwen-image-edit:",
    "judge_keyframe": "qwen2.5-vl:",
    "estimate_depth": "depth-anything:",
    "propagate": "wan-vace:",
    "enhance_temporal": "wan-v2v:",
    "judge_video": "qwen2.5-vl:",
}


def test_tiny_run_accepts_samples_through_every_real_class_and_trains_editto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random-weight judges decode under the rubric's schema, so their verdicts are random but valid, and the
    tiny profile's thresholds let them pass: samples reach commit and an Editto round trains on them. The VLM
    plans every instruction, and each category's control strength reaches the VACE pipeline's call."""
    controls = []  # the control video of every propagation, as WanVACEPipeline was called with it
    pipeline_call = WanVACEPipeline.__call__

    def recording_call(pipe, *args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("prompt") is not None:  # propagation (Editto's edits pass their prompts encoded)
            controls.append(np.stack([np.asarray(frame, np.float32) for frame in kwargs["video"]]))
        return pipeline_call(pipe, *args, **kwargs)

    monkeypatch.setattr(WanVACEPipeline, "__call__", recording_call)
    out = tmp_path / "out"
    config = tmp_path / "tiny.yaml"
    strengths = {name: {"control_strength": 0.25} for name in default_categories()}
    config.write_text(yaml.safe_dump({"training": {"steps": 2}, "categories": strengths}))
    result = run(
        "--profile", "tiny", "--config", str(config), "--out", str(out), "--train-every", "1", "--max-samples", "3"
    )
    assert result.exit_code == 0, result.output
    db = sqlite3.connect(out / "ditto.db")
    assert db.execute("select count(*) from toolcall where error_kind = 'llm_schema'").fetchone()[0] == 0
    samples = db.execute("select id, dataset_dir, record_json from sample").fetchall()
    assert len(samples) >= 3
    for _, folder, record in samples:
        models = json.loads(record)["models"]
        assert all(models[tool].startswith(cls) for tool, cls in REAL_CLASSES.items()), models
        assert json.loads(record)["planner"].startswith("qwen2.5-vl:")  # the VLM wrote it, not a fallback
        assert json.loads(record)["control_strength"] in (0.25, 0.125)  # the category's, or lowered once
        assert (out / "dataset" / folder / "depth.mp4").is_file()
    # The enhancer starts from the propagation's latents (the same VAE at the same size), as its trace says.
    started = db.execute(
        "select usage_json from toolcall where tool = 'enhance_temporal' and error_kind is null"
    ).fetchall()
    assert started and {json.loads(usage)["started_from"] for (usage,) in started} == {"the propagation's latents"}
    # Each clip's depth spans black to white; at strength 0.25 the control VACE is given spans a quarter of that
    # around neutral grey, 127.5 +- 32.
    spans = [float(np.abs(control - 127.5).max()) for control in controls]
    assert controls and all(8 < span <= 0.25 * 127.5 + 1 for span in spans), spans
    rounds = db.execute(
        "select status, train_samples_json, checkpoint_dir, heldout_samples_json, card_json, "
        "eval_scores_json, eval_scores_with_reference_json from trainingrun order by `index`"
    ).fetchall()
    assert rounds and all(r[0] == "finished" for r in rounds)
    sets = [json.loads(r[3]) for r in rounds]
    assert all(later[: len(earlier)] == earlier for earlier, later in pairwise(sets))  # it only grows
    for r in rounds:  # the global batch, and both evaluations of every round
        assert json.loads(r[4])["global_batch"] == 2 and json.loads(r[5]) and json.loads(r[6])
    trained_on, checkpoint = json.loads(rounds[-1][1]), out / rounds[-1][2]
    assert trained_on and set(trained_on) <= {sample_id for sample_id, _, _ in samples}
    assert (checkpoint / "editto.safetensors").is_file()


def test_full_profile_with_missing_weights_fails_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("--profile", "full", "--out", str(out))
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "backends.captioner.path: no checkpoint at /models/Qwen2.5-VL-7B-Instruct" in message
    assert not (out / "dataset").exists()
