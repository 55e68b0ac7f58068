"""The terminal side of reading a run: `trace --json` for scripts, and `traces` filters that say so when
a value is wrong."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from main import app

pytestmark = pytest.mark.slow


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def listed_ids(output: str) -> list[str]:
    return re.findall(r"^ ?(run-[\d-]+:\d+) ", output, flags=re.M)


def test_trace_json_has_what_trace_prints(finished_run: Path) -> None:
    code, output = cli("traces", "--out", str(finished_run), "--status", "accepted")
    episode_id = listed_ids(output)[0]
    code, text = cli("trace", episode_id, "--out", str(finished_run))
    text = " ".join(text.split())  # rich wraps at the terminal's width
    code_json, raw = cli("trace", episode_id, "--out", str(finished_run), "--json")
    assert code == code_json == 0
    data = json.loads(raw)
    assert data["episode"]["id"] == episode_id and data["decision"]["status"] == "accepted"
    assert "path: " + " -> ".join(data["path"]) in text
    assert [c["tool"] for c in data["calls"]][:2] == ["ingest", "caption_clip"]
    assert all(isinstance(c["input"], dict) for c in data["calls"])
    prompts = [p for c in data["calls"] for p in c["prompts"]]
    assert prompts and all(p["sha256"][:12] in text and p["text"] for p in prompts)
    assert {v["stage"] for v in data["verdicts"]} == {"keyframe", "video"}
    assert " ".join(data["sample"]["record"]["instruction"].split()) in text
    code, _ = cli("trace", "run-bogus:00000", "--out", str(finished_run), "--json")
    assert code == 1


def test_traces_filter_by_category_since_and_sort_by_cost(finished_run: Path) -> None:
    code, everything = cli("traces", "--out", str(finished_run))
    all_ids = listed_ids(everything)
    assert code == 0 and len(all_ids) == 6
    trace = json.loads(cli("trace", all_ids[0], "--out", str(finished_run), "--json")[1])
    category = trace["episode"]["category"]
    code, output = cli("traces", "--out", str(finished_run), "--category", category)
    chosen = listed_ids(output)
    assert code == 0 and all_ids[0] in chosen and 0 < len(chosen) < 6
    for episode_id in chosen:
        assert json.loads(cli("trace", episode_id, "--out", str(finished_run), "--json")[1])["episode"]["category"] == (
            category
        )
    assert len(listed_ids(cli("traces", "--out", str(finished_run), "--since", "1d")[1])) == 6
    assert listed_ids(cli("traces", "--out", str(finished_run), "--since", "2999-01-01")[1]) == []
    costly = listed_ids(cli("traces", "--out", str(finished_run), "--sort", "cost")[1])
    costs = [
        sum(c["device_seconds"] for c in json.loads(cli("trace", i, "--out", str(finished_run), "--json")[1])["calls"])
        for i in costly
    ]
    assert sorted(costly) == sorted(all_ids) and costs == sorted(costs, reverse=True)


@pytest.mark.parametrize(
    ("flag", "value", "named", "exit_code"),
    # A value outside --sort's choices is a usage error (typer's, exit 2), as for any flag of a fixed type.
    [("--status", "bogus", "accepted", 1), ("--since", "yesterday", "--since", 1), ("--sort", "price", "--sort", 2)],
)
def test_traces_rejects_a_bad_value_by_name(
    finished_run: Path, flag: str, value: str, named: str, exit_code: int
) -> None:
    code, output = cli("traces", "--out", str(finished_run), flag, value)
    assert code == exit_code and named in output and value in output and "Traceback" not in output
