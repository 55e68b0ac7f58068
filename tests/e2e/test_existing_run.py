"""Flags given to an --out that holds a run are applied or refused, never dropped: what cannot change an output
is applied and said, any other difference from the stored config is refused naming each key, and a bad value
is refused as it is on a fresh --out."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from main import app
from tests.conftest import SMALL

pytestmark = pytest.mark.slow


def cli(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(an --out holding one finished run, the config file it was made with)."""
    tmp = tmp_path_factory.mktemp("existing")
    config = tmp / "small.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "episodes_per_clip": 1}))
    result = cli("--out", str(tmp / "out"), "--config", str(config), "--max-samples", "1")
    assert result.exit_code == 0, result.output
    return tmp / "out", config


@pytest.fixture
def out(made: tuple[Path, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(made[0], copy)
    return copy


def runs(out: Path) -> list[tuple[str, str]]:
    return sqlite3.connect(out / "ditto.db").execute("select id, config_json from run").fetchall()


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--profile", "bogus"], "--profile: unknown profile 'bogus'"),
        (["--config", "/nonexistent.yaml"], "--config /nonexistent.yaml: No such file or directory"),
        (["--llm-base-url", "not-a-url"], "not-a-url: not an http(s) URL"),
        (["--seed", "5"], "seed 0 -> 5"),
        (["--profile", "tiny"], 'profile "cpu" -> "tiny"'),
        (["--llm-base-url", "http://127.0.0.1:8000/v1"], 'backends.planner.kind "rules" -> "openai"'),
        (["--train-every", "2"], "training.every null -> 2"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_a_flag_that_differs_or_is_bad_is_refused_in_one_line(flags: list[str], says: str, out: Path) -> None:
    before = runs(out)
    result = cli("--out", str(out), *flags)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.output
    assert runs(out) == before  # nothing applied, no run added


def test_a_config_file_that_differs_names_each_key_and_the_way_to_apply_it(made: tuple[Path, Path], out: Path) -> None:
    other = out.parent / "other.yaml"
    data = yaml.safe_load(made[1].read_text())
    data["tools"]["ingest"]["fps"] = 6
    data["backends"] = {"propagator": {"stabilise": 0.0}, "enhancer": {"strength": 0.0}}
    other.write_text(yaml.safe_dump(data))
    result = cli("--out", str(out), "--config", str(other))
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    for change in ("tools.ingest.fps 12.0 -> 6", "backends.propagator.stabilise", "backends.enhancer.strength"):
        assert change in line, line
    assert "--new-run" in line


def test_the_same_config_file_again_continues_the_run(made: tuple[Path, Path], out: Path) -> None:
    result = cli("--out", str(out), "--config", str(made[1]), "--max-samples", "1")
    assert result.exit_code == 0, result.output
    assert len(runs(out)) == 1 and "Applied" not in result.output


def test_settings_that_cannot_change_an_output_are_applied_and_said(out: Path) -> None:
    result = cli("--out", str(out), "--concurrency", "3", "--budget-gpu-days", "2", "--allow-download")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "Applied to run" in said and "concurrency 2 -> 3" in said and "budget_gpu_days 1.0 -> 2.0" in said
    [(_, config_json)] = runs(out)
    stored = json.loads(config_json)
    assert (stored["concurrency"], stored["budget_gpu_days"], stored["allow_download"]) == (3, 2.0, True)


def test_allow_download_reaches_a_new_runs_config(tmp_path: Path) -> None:
    result = cli("--out", str(tmp_path / "fresh"), "--allow-download", "--print-config")
    assert result.exit_code == 0, result.output
    assert '"allow_download": true' in result.output


def test_a_finished_run_says_why_and_more_episodes_per_clip_extend_it(out: Path) -> None:
    before = sqlite3.connect(out / "ditto.db").execute("select count(*) from episode").fetchone()[0]
    result = cli("--out", str(out), "--episodes-per-clip", "2", "--max-samples", "100")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "episodes_per_clip 1 -> 2" in said and "Every planned episode has run: 3 clips x 2 episodes per clip" in said
    after = sqlite3.connect(out / "ditto.db").execute("select count(*) from episode").fetchone()[0]
    assert before < after == 6 and len(runs(out)) == 1  # 3 clips x 2: the plan grew, the run is the same
