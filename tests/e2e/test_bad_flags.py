"""Bad input on the command line or in the config: one line naming the flag and what is wrong, a non-zero
exit, and no run left behind in the store. The table of flags is bench/bad_inputs.py's, which the fault
bench counts too."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.bad_inputs import BAD_FLAGS, bad_flag_args
from main import app
from tests.conftest import run_main

ROOT = Path(__file__).resolve().parents[2]


def assert_no_run_left(out: Path) -> None:
    db = out / "ditto.db"
    assert not db.exists() or sqlite3.connect(db).execute("select count(*) from run").fetchone() == (0,)


@pytest.mark.parametrize(("flags", "says"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_is_refused_in_one_line_naming_it(flags: list[str], says: str, tmp_path: Path) -> None:
    args = bad_flag_args(flags, tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["--out", str(out), *args])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert says.replace("{tmp}", str(tmp_path)) in lines[0]
    assert_no_run_left(out)
    assert not any(out.iterdir()) if out.is_dir() else True  # nothing created in --out


def test_prompts_diff_with_a_missing_folder_is_one_line() -> None:
    result = CliRunner().invoke(app, ["prompts", "diff", "judge_video.j2", "--prompts", "/nonexistent"])
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "error: prompt override folder (--prompts) /nonexistent is not a folder"
    ]


def test_a_bad_value_in_a_config_file_names_its_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("concurrency: 0\nbudget_gpu_days: .nan\n")
    result = CliRunner().invoke(app, ["--out", str(tmp_path / "out"), "--config", str(config)])
    assert result.exit_code == 1
    assert f"invalid config in {config}: budget_gpu_days: Input should be a finite number; concurrency:" in (
        result.output
    )


@pytest.mark.slow
def test_an_out_folder_the_user_cannot_write_is_named(tmp_path: Path) -> None:
    """Tests run as root, which writes anywhere: the command runs without the capabilities that let root
    ignore file modes (setpriv), so that a read-only folder bites."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    as_plain_user = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    out = locked / "out"
    result = subprocess.run(
        [*as_plain_user, sys.executable, "main.py", "--out", str(out), "--max-samples", "1"],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == f"error: --out {out}: cannot write in {locked} (Permission denied)"
    assert not out.exists()


@pytest.mark.parametrize("profile", ["tiny", "full"])
def test_a_profile_whose_extra_is_not_installed_is_named_in_one_line(profile: str, tmp_path: Path) -> None:
    """On the base install the model profiles ended in a 112-line traceback (No module named 'torch')."""
    done = run_main("--profile", profile, "--out", str(tmp_path / "out"), without=("torch",))
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout.count("\n") == 1 and not done.stderr, done.stdout + done.stderr
    assert "the models extra is not installed (no module named torch): pip install -e '.[models]'" in done.stdout
    assert "backends.propagator.kind" in done.stdout
    assert not (tmp_path / "out").exists()
