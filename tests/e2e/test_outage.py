"""An endpoint that is down stops the run, resumably, instead of discarding every episode that waits on it; once
it is back, the same command finishes the run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bench.fake_llm_server import Reply, ScriptedLLMServer, plan_json
from main import app
from tests.conftest import SMALL

pytestmark = pytest.mark.slow


def run(out: Path, config: Path, url: str):  # type: ignore[no-untyped-def]
    args = ["--out", str(out), "--config", str(config), "--llm-base-url", url, "--llm-model", "m"]
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(
    "down",
    [Reply(status=503), Reply(status=429, headers={"retry-after": "0"}), Reply(plan_json(), delay_s=60)],
    ids=["503", "429", "hangs"],
)
def test_an_endpoint_that_is_down_stops_the_run_and_discards_nothing(down: Reply, tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    quick = {"request_timeout_s": 2, "deadline_s": 2, "max_attempts": 2}  # the endpoint's own retries, kept short
    config.write_text(
        yaml.safe_dump({**SMALL, "episodes_per_clip": 1, "backends": {"planner": {"kind": "openai", **quick}}})
    )
    out = tmp_path / "out"
    with ScriptedLLMServer([down]) as server:
        result = run(out, config, server.url)
        tries = len(server.requests)
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "plan_instruction stopped the run: its backend openai-chat:m was unreachable 3 calls in a row" in said
    assert "--resume" in said
    db = sqlite3.connect(out / "ditto.db")
    assert db.execute("select status from run").fetchone() == ("interrupted",)
    discarded = db.execute("select reason from episode where status = 'discarded'").fetchall()
    assert set(discarded) <= {("scene_cut",)}, discarded  # bikes.mp4's cut is found before any planning
    assert db.execute("select count(*) from toolcall where tool = 'plan_instruction'").fetchone() == (0,)
    assert tries <= 3 * 2 * SMALL["concurrency"]  # no more than the breaker's calls, each with its own retries

    with ScriptedLLMServer([Reply(plan_json())]) as server:  # back: the same command finishes the run
        again = run(out, config, server.url)
    assert again.exit_code == 0, again.output
    assert db.execute("select status from run").fetchone() == ("finished",)
    assert db.execute("select count(*) from episode where status = 'running'").fetchone() == (0,)
    assert db.execute("select count(*) from episode where reason like 'backend_unavailable%'").fetchone() == (0,)
