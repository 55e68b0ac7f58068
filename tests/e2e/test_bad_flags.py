"""Bad input on the command line or in the config: one line naming the flag and what is wrong, a non-zero
exit, and no run left behind in the store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from main import app

ROOT = Path(__file__).resolve().parents[2]


def make_source(kind: str, tmp: Path) -> Path:
    """A --source-dir that is wrong in one way."""
    path = tmp / f"src-{kind}"
    if kind == "empty":
        path.mkdir()
        (path / "notes.txt").write_text("no clips here")
    elif kind == "file":
        path.write_bytes(b"not a folder")
    elif kind == "loop":
        path.symlink_to(path.name)  # points at itself
    return path  # "missing": nothing there


def binary_file(tmp: Path) -> Path:
    path = tmp / "config.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    return path


# (flags, what the one line must say). `{tmp}` is the test's temporary folder.
BAD_FLAGS: list[tuple[list[str], str]] = [
    (["--budget-gpu-days", "nan"], "--budget-gpu-days nan: Input should be a finite number"),
    (["--budget-gpu-days", "inf"], "--budget-gpu-days inf: Input should be a finite number"),
    (["--budget-gpu-days", "-1"], "--budget-gpu-days -1.0: Input should be greater than 0"),
    (["--budget-gpu-days", "0"], "--budget-gpu-days 0.0: Input should be greater than 0"),
    (["--max-samples", "-1"], "--max-samples -1: Input should be greater than or equal to 1"),
    (["--concurrency", "0"], "--concurrency 0: Input should be greater than or equal to 1"),
    (["--concurrency", "-3"], "--concurrency -3: Input should be greater than or equal to 1"),
    (["--db", "bogus://x"], "--db: 'bogus' is not a database SQLAlchemy knows"),
    (["--db", "notaurl"], "--db: not a database URL"),
    (["--db", "postgresql+pg8000://u@127.0.0.1/db"], "--db: the driver for postgresql+pg8000 (pg8000)"),
    (["--db", "mysql://u@127.0.0.1/db"], "--db: the driver for mysql (MySQLdb) is not installed"),
    (["--db", "sqlite:////nonexistent/dir/x.db"], "--db: the folder of the SQLite file, /nonexistent/dir,"),
    (["--config", "BINARY"], "--config {tmp}/config.yaml: not a YAML text file"),
    (["--prompts", "/nonexistent"], "prompt override folder (--prompts) /nonexistent is not a folder"),
    (["--resume", "run-bogus"], "--resume run-bogus: {tmp}/out holds no run database"),
    (["--source-dir", "SRC:missing"], "--source-dir {tmp}/src-missing: does not exist"),
    (["--source-dir", "SRC:empty"], "--source-dir {tmp}/src-empty: holds no video files"),
    (["--source-dir", "SRC:file"], "--source-dir {tmp}/src-file: is not a folder"),
    (["--source-dir", "SRC:loop"], "--source-dir {tmp}/src-loop: is a symlink loop"),
    (["--out", "{tmp}/a-file/out"], "--out {tmp}/a-file/out: cannot write in {tmp}/a-file"),
]


def materialise(flags: list[str], tmp: Path) -> list[str]:
    args = []
    for flag in flags:
        if flag == "BINARY":
            flag = str(binary_file(tmp))
        elif flag.startswith("SRC:"):
            flag = str(make_source(flag.removeprefix("SRC:"), tmp))
        args.append(flag.replace("{tmp}", str(tmp)))
    return args


def assert_no_run_left(out: Path) -> None:
    db = out / "ditto.db"
    assert not db.exists() or sqlite3.connect(db).execute("select count(*) from run").fetchone() == (0,)


@pytest.mark.parametrize(("flags", "says"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_is_refused_in_one_line_naming_it(flags: list[str], says: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("a file where --out wants a folder")
    args = materialise(flags, tmp_path)
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
