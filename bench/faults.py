"""Fault figures for docs/reliability.md: kill -9 a cpu run at random moments, resume it each
time, and compare it with an uninterrupted run of the same seed; feed a run every kind of broken or hostile
clip; start runs with every bad flag, each of which must be refused in one line leaving no run behind.

    python -m bench.faults --kills 20
    python -m bench.faults --quick --kills 1     # CI's size (tests/bench/test_faults.py)
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
    # Each call that ran is charged in its one row: a run killed and resumed charges as many as the undisturbed
    # one did, or some call ran (and was charged) twice.
    ran = "select count(*) from toolcall where reused_call_id is null"
    executed, executed_undisturbed = db.execute(ran).fetchone()[0], open_db(reference).execute(ran).fetchone()[0]
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
        double_charges=abs(executed - executed_undisturbed),
        bad_artifacts=bad,
        decisions_differ=sum(mine.get(k) != v for k, v in theirs.items()),
    )


def try_bad_inputs(folder: Path, config: Path) -> dict[str, int]:
    """A run over a folder of broken clips: it must finish, refusing each by name at ingest."""
    from agent.sources import sample_clips
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


def try_hostile_planner(folder: Path, config: Path) -> dict[str, int]:
    """A run whose LLM endpoint answers garbage, broken or hostile JSON (issue 13), then one instruction over
    and over: every episode must go on (re-asked, then the rule planner) and none of that text be kept."""
    from bench.bad_inputs import HOSTILE_INSTRUCTION, HOSTILE_TARGET
    from bench.fake_llm_server import Reply, ScriptedLLMServer, plan_json

    bad = [
        "Sure, here is a nice edit!",
        '{"instruction": "Make it a watercolour.", "category": "style"',
        '{"edit": "Make it a watercolour."}',
        plan_json("Make it a watercolour.", category="global"),
        plan_json(HOSTILE_INSTRUCTION).replace("A rabbit in a meadow, drawn in pencil.", HOSTILE_TARGET),
        plan_json("=HYPERLINK(A1) makes it night."),
    ]
    out = folder / "hostile planner"
    with ScriptedLLMServer([*map(Reply, bad), Reply(plan_json("Make it a watercolour."))]) as server:
        finish(start(out, config, "--llm-base-url", server.url, "--llm-model", "planner"))
    db = sqlite3.connect(out / "ditto.db")
    # A call without an output ended in an error (category_unfit, llm_schema): it planned nothing to count.
    outputs = [o for (o,) in db.execute("select output_json from toolcall where tool = 'plan_instruction'")]
    plans = [json.loads(o) for o in outputs if o is not None]
    prompts = "".join(p for (p,) in db.execute("select prompts_json from toolcall where tool = 'plan_instruction'"))
    kept = [p.read_text() for p in (out / "dataset").rglob("*") if p.suffix in (".csv", ".json")]
    return {
        "hostile planner answers served": len(bad),
        "planner calls": len(outputs),
        "planner answers re-asked": prompts.count("plan_instruction.reask.j2"),
        "planner fallbacks to the rule planner": sum(
            p["planner"] != "openai-chat:planner" for p in plans
        ),
        "episodes lost to the planner": db.execute(
            "select count(*) from episode where reason like '%@plan_instruction' or reason like '%@rewrite_instruction'"
        ).fetchone()[0],
        "hostile planner text kept": sum(any(f in t for f in ("{{", "$(", "etc/passwd", "HYPERLINK")) for t in kept),
    }


def try_bad_flags(folder: Path, every: int = 1) -> dict[str, int]:
    """Each bad flag of bench/bad_inputs.py (every `every`-th), and an --out the user cannot write (as root,
    without the capabilities that let root ignore file modes): one line saying what bench/bad_inputs.py says
    it must (the flag, or the config key, and what is wrong), a non-zero exit, no run."""
    from bench.bad_inputs import BAD_FLAGS, bad_flag_args

    locked = folder / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    as_plain_user = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    cases = [(as_plain_user, ["--out", str(locked / "out")], f"--out {locked / 'out'}: cannot write in {locked}")]
    for k, (flags, says) in enumerate(BAD_FLAGS[::every]):
        scratch = folder / f"flags-{k}"
        scratch.mkdir()
        args = ["--out", str(scratch / "out"), *bad_flag_args(flags, scratch)]
        cases.append(([], args, says.replace("{tmp}", str(scratch))))
    refused = left_behind = 0
    for prefix, args, says in cases:
        done = subprocess.run(
            [*prefix, sys.executable, str(ROOT / "main.py"), *args],
            cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "1000"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = (done.stdout + done.stderr).strip().splitlines()
        refused += done.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:") and says in lines[0]
        out = Path(args[1])
        left_behind += out.exists() and any(out.iterdir())
    return {
        "bad flags tried": len(cases),
        "bad flags refused in one line naming the flag": refused,
        "runs left behind by bad flags": left_behind,
    }


def write_config(folder: Path, name: str = "faults.yaml", **extra: object) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump({**SMALL_RUN, **extra}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="CI's size: 2 episodes a clip (not 6), every 8th bad flag")
    args = parser.parse_args()
    size = {"episodes_per_clip": 2} if args.quick else {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_config(folder, **size)
        finish(start(folder / "straight", config))
        landed = run_with_kills(folder / "killed", config, args.kills)
        result = compare(folder / "killed", folder / "straight")
        ingest = {**SMALL_RUN["tools"]["ingest"], "max_source_pixels": 1280 * 720}  # type: ignore[index]
        bad = try_bad_inputs(folder, write_config(folder, "bad.yaml", tools={"ingest": ingest}, **size))
        planner = try_hostile_planner(folder, config)
        flags = try_bad_flags(folder, every=8 if args.quick else 1)
    injected = landed + bad["bad inputs tried"] + flags["bad flags tried"]
    figures = {
        "faults injected (kills + bad inputs + bad flags)": injected,
        "kills survived": landed,
        **bad,
        **flags,
        **vars(result),
        **planner,
    }
    width = max(map(len, figures))
    for name, value in figures.items():
        sys.stdout.write(f"{name.replace('_', ' '):<{width}}  {value}\n")


if __name__ == "__main__":
    main()
