"""Kill -9 the factory at random moments, resume it each time, and compare with an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMALL

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("DITTO_TEST_KILLS", "6"))


def start(out: Path, config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "--out",
            str(out),
            "--config",
            str(config),
            "--seed",
            "5",
            "--concurrency",
            "2",
            "--budget-gpu-days",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def outcome(out: Path) -> dict[str, object]:
    db = sqlite3.connect(out / "ditto.db")
    return {
        "episodes": sorted(db.execute("select substr(id, instr(id, ':')), status, reason from episode")),
        "samples": sorted(r[0] for r in db.execute("select substr(episode_id, instr(episode_id, ':')) from sample")),
    }


def test_sigkill_resume_loses_nothing_duplicates_nothing_and_charges_once(tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    settings = {k: v for k, v in SMALL.items() if k not in ("budget_gpu_days", "concurrency")}
    config.write_text(yaml.safe_dump({**settings, "episodes_per_clip": 6}))  # long enough to be killed often
    straight = start(tmp_path / "straight", config)
    assert straight.wait(timeout=300) == 0, straight.stderr.read().decode()  # type: ignore[union-attr]

    out = tmp_path / "killed"
    rng = random.Random(1)
    kills = 0
    for _ in range(KILLS * 4):
        proc = start(out, config)
        time.sleep(rng.uniform(1.0, 3.0))  # start-up takes ~1 s: most kills land in the work
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode()  # type: ignore[union-attr]
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        if kills >= KILLS:
            break
    final = start(out, config)
    assert final.wait(timeout=300) == 0, final.stderr.read().decode()  # type: ignore[union-attr]
    assert kills >= min(KILLS, 3)

    assert outcome(out) == outcome(tmp_path / "straight")
    db = sqlite3.connect(out / "ditto.db")
    assert db.execute("select count(*) from run").fetchone()[0] == 1
    # One charge per executed call, none for cache reuses; the unique constraints make doubles impossible,
    # and this checks the ledger agrees with the calls.
    assert (
        db.execute("select count(*) from charge").fetchone()[0]
        == db.execute("select count(*) from toolcall where reused_call_id is null").fetchone()[0]
    )
    assert (
        db.execute(
            "select count(*) from (select tool_call_id from charge group by tool_call_id having count(*) > 1)"
        ).fetchone()[0]
        == 0
    )
    for ref, relpath in db.execute("select id, relpath from artifact"):
        path = out / "artifacts" / relpath
        if path.exists():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.split(".")[0]
    samples = [r[0] for r in db.execute("select id from sample")]
    folders = sorted(p.name for p in (out / "dataset").iterdir() if p.is_dir())
    assert folders == sorted(samples)
    metadata = (out / "dataset" / "metadata.csv").read_text().splitlines()
    assert len(metadata) == len(samples) + 1
