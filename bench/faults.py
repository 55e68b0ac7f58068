"""Fault figures for README's reliability section: kill -9 a cpu run at random moments, resume it each
time, and compare it with an uninterrupted run of the same seed; feed a run every kind of broken clip.

    python -m bench.faults --kills 20
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SMALL_RUN = {
    "tools": {"ingest": {"num_frames": 17, "fps": 12, "max_side": 128}},
    "policy": {"min_frames": 9},
    "episodes_per_clip": 6,
}


def start(out: Path, config: Path, *extra: str) -> subprocess.Popen[bytes]:
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
            *extra,
        ],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes]) -> None:
    if proc.wait(timeout=600) != 0:
        raise RuntimeError(f"run failed: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]


def run_with_kills(out: Path, config: Path, kills: int, seed: int = 1, *extra: str) -> int:
    """Kill at random moments until `kills` kills landed (or the run finished), then let it finish."""
    rng, landed = random.Random(seed), 0
    while landed < kills:
        proc = start(out, config, *extra)
        time.sleep(rng.uniform(1.0, 3.0))  # start-up takes ~1 s: most kills land in the work
        if proc.poll() is not None:
            finish(proc)
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        landed += 1
    finish(start(out, config, *extra))
    return landed


@dataclass
class Comparison:
    samples_lost: int
    duplicates: int
    double_charges: int
    bad_artifacts: int
    decisions_differ: int


def open_db(out: Path, db_url: str | None = None):  # type: ignore[no-untyped-def]
    """A DB-API connection to a run's store: SQLite in `out`, or the PostgreSQL at `db_url`."""
    if db_url is None:
        return sqlite3.connect(out / "ditto.db")
    import psycopg

    return psycopg.connect(db_url.replace("+psycopg", ""))


def decisions(out: Path, db_url: str | None = None) -> dict[str, tuple[str, str | None]]:
    db = open_db(out, db_url)
    return {i.split(":")[-1]: (s, r) for i, s, r in db.execute("select id, status, reason from episode")}


def compare(out: Path, reference: Path, db_url: str | None = None) -> Comparison:
    db = open_db(out, db_url)
    samples = [r[0] for r in db.execute("select id from sample")]
    expected = {k for k, (s, _) in decisions(reference).items() if s == "accepted"}
    got = {s.split("-")[-1] for s in samples}
    folders = [p for p in (out / "dataset").iterdir() if p.is_dir()]
    executed = db.execute("select count(*) from toolcall where reused_call_id is null").fetchone()[0]
    charges = db.execute("select count(*) from charge").fetchone()[0]
    bad = sum(
        1
        for ref, rel in db.execute("select id, relpath from artifact")
        if (out / "artifacts" / rel).exists()
        and hashlib.sha256((out / "artifacts" / rel).read_bytes()).hexdigest() != ref.split(".")[0]
    )
    mine, theirs = decisions(out, db_url), decisions(reference)
    return Comparison(
        samples_lost=len(expected - got),
        duplicates=len(samples) - len(set(samples)) + max(0, len(folders) - len(samples)),
        double_charges=abs(charges - executed),
        bad_artifacts=bad,
        decisions_differ=sum(mine.get(k) != v for k, v in theirs.items()),
    )


def try_bad_inputs(folder: Path, config: Path) -> dict[str, int]:
    """A run over a folder of broken clips: it must finish, refusing each by name at ingest."""
    from agent.runner import sample_clips
    from bench.bad_inputs import REFUSED, write_bad_clips

    source = write_bad_clips(folder / "bad sources", sample_clips()[0])
    out = folder / "bad"
    proc = start(out, config, "--source-dir", str(source))
    crashed = int(proc.wait(timeout=600) != 0)
    rows = sqlite3.connect(out / "ditto.db").execute("select clip_path, reason, detail from episode").fetchall()
    named = {Path(p).name for p, reason, detail in rows if reason == "bad_input@ingest" and Path(p).name in detail}
    return {
        "bad inputs tried": len(list(source.iterdir())) - 1,
        "bad inputs refused by name": len(named & set(REFUSED)),
        "bad inputs that should be refused": len(REFUSED),
        "runs crashed by bad input": crashed,
    }


def write_config(folder: Path, name: str = "faults.yaml", **extra: object) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({**SMALL_RUN, **extra}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_config(folder)
        finish(start(folder / "straight", config))
        landed = run_with_kills(folder / "killed", config, args.kills)
        result = compare(folder / "killed", folder / "straight")
        ingest = {**SMALL_RUN["tools"]["ingest"], "max_source_pixels": 1280 * 720}  # type: ignore[index]
        bad = try_bad_inputs(folder, write_config(folder, "bad.yaml", tools={"ingest": ingest}))
    injected = landed + bad["bad inputs tried"]
    figures = {"faults injected (kills + bad inputs)": injected, "kills survived": landed, **bad, **vars(result)}
    width = max(map(len, figures))
    for name, value in figures.items():
        sys.stdout.write(f"{name.replace('_', ' '):<{width}}  {value}\n")


if __name__ == "__main__":
    main()
