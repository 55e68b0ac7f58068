"""A run whose LLM endpoint answers hostile text, then one instruction over and over: no episode is lost to
the planner, none of that text reaches the dataset, and no clip gets the same instruction twice."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bench.bad_inputs import HOSTILE_INSTRUCTION, HOSTILE_TARGET
from bench.fake_llm_server import Reply, ScriptedLLMServer, plan_json
from main import app
from tests.conftest import SMALL

pytestmark = pytest.mark.slow


def test_hostile_and_repeating_answers_lose_no_episode_and_reach_no_output(tmp_path: Path, clips: list[Path]) -> None:
    source = tmp_path / "sources"
    source.mkdir()
    shutil.copy(clips[0], source / clips[0].name)
    config = tmp_path / "small.yaml"
    # The endpoint answers global_style edits: every episode is asked for one.
    only_style = {c: {"target": 0} for c in ("global_freeform", "local_attribute", "text")}
    settings = {k: v for k, v in SMALL.items() if k != "budget_gpu_days"}
    config.write_text(yaml.safe_dump({**settings, "concurrency": 1, "episodes_per_clip": 3, "categories": only_style}))
    hostile = json.dumps(
        {"instruction": HOSTILE_INSTRUCTION, "category": "global_style", "target_description": HOSTILE_TARGET}
    )
    replies = [Reply(hostile)] * 3 + [Reply(plan_json("Make it look like a pencil sketch."))]  # the last repeats
    out = tmp_path / "out"
    with ScriptedLLMServer(replies) as server:
        args = ["--out", str(out), "--config", str(config), "--source-dir", str(source), "--llm-base-url", server.url]
        result = CliRunner().invoke(app, [*args, "--llm-model", "planner"])
    assert result.exit_code == 0, result.output

    db = sqlite3.connect(out / "ditto.db")
    ends = db.execute("select status, coalesce(reason, '') from episode").fetchall()
    assert len(ends) == 3 and not any(reason.startswith("llm_schema") for _, reason in ends), ends
    rows = db.execute(
        "select episode_id, attempt, node, output_json, prompts_json from toolcall "
        "where tool = 'plan_instruction' order by id"
    ).fetchall()
    plans = [(episode, json.loads(output), prompts) for episode, _, _, output, prompts in rows]
    # An answer that repeats what an episode beside it got meanwhile is asked again at the `:repeat` call
    # site of the same attempt; that answer is the one the episode goes on with.
    superseded = {(e, a, node.removesuffix(":repeat")) for e, a, node, _, _ in rows if node.endswith(":repeat")}
    used = [json.loads(output)["instruction"] for e, a, node, output, _ in rows if (e, a, node) not in superseded]
    assert superseded and len(used) == len(set(used)), used  # never twice on the clip
    assert {p["planner"] for _, p, _ in plans} == {"rule-planner-v3", "openai-chat:planner"}
    assert any("plan_instruction.reask.j2" in prompts for _, _, prompts in plans)
    # a later episode was offered an earlier one's instruction again, and was told so
    assert any("repeats one already used" in r["body"]["messages"][-1]["content"] for r in server.requests)

    written = [p.read_text() for p in (out / "dataset").rglob("*") if p.suffix in (".csv", ".json")]
    accepted = [status for status, _ in ends if status == "accepted"]
    assert written and len(accepted) == len(list((out / "dataset").glob("*/record.json")))
    for text in written:
        for fragment in ("{{", "{%", "$(", "`", "etc/passwd", "<script", "HYPERLINK"):
            assert fragment not in text
    for record in (out / "dataset").glob("*/record.json"):
        assert json.loads(record.read_text())["planner"] in {"rule-planner-v3", "openai-chat:planner"}
    with (out / "dataset" / "metadata.csv").open() as fh:
        for row in csv.DictReader(fh):
            assert not row["instruction"].startswith(("=", "+", "-", "@")), row
