"""A second process on a run is refused in one line naming the holder; a lock left by a killed process never
blocks the resume."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session

from bench.fake_llm_server import Reply, ScriptedLLMServer, plan_json
from store.engine import open_engine
from store.run_lock import RunLock, RunLocked
from store.tables import Run
from tests.e2e.test_interrupt import ROOT, start_run, wait_for


@pytest.mark.slow
def test_a_second_process_is_refused_and_a_killed_holder_does_not_block_the_resume(tmp_path: Path) -> None:
    with ScriptedLLMServer([Reply(plan_json(), delay_s=300)]) as server:
        first = start_run(tmp_path, server.url)
        try:
            wait_for(lambda: len(server.requests) > 0, 120)  # the first process is inside its run
            second = subprocess.run(
                [sys.executable, "main.py", "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True
            )
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            first.kill()
    lines = (second.stdout + second.stderr).strip().splitlines()
    assert second.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: run run-") and f"is being run by pid {first.pid} on " in lines[0]
    db = sqlite3.connect(tmp_path / "out" / "ditto.db")
    assert db.execute("select count(*) from run").fetchone() == (1,)
    # The holder was killed: its lock went with it, and the same run continues (the endpoint is gone now,
    # so the resume stops at the check of the planner's URL, past the lock).
    again = subprocess.run(
        [sys.executable, "main.py", "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True
    )
    assert "is being run by" not in again.stdout + again.stderr
    assert "--llm-base-url (backends.planner.base_url)" in again.stdout + again.stderr


def test_the_same_run_in_a_shared_postgresql_is_held_by_one_process(postgres_url: str, tmp_path: Path) -> None:
    engine = open_engine(postgres_url)
    with Session(engine) as s:
        s.add(Run(id="r", profile="cpu", budget_device_seconds=1, seed=0, config_json="{}"))
        s.commit()
    holder = RunLock(engine, "r", tmp_path / "a")
    holder.acquire()
    holder.record_holder()
    other = RunLock(open_engine(postgres_url), "r", tmp_path / "b")  # another machine: its own folder
    with pytest.raises(RunLocked, match=r"run r is being run by pid \d+ on .+ since 20\d\d-"):
        other.acquire()
    RunLock(engine, "another run", tmp_path / "a").acquire()  # a lock is per run
    holder.release()
    other.acquire()
    other.release()


def test_a_lock_file_is_per_run_and_names_its_holder(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'ditto.db'}")
    holder = RunLock(engine, "r", tmp_path / "locks")
    holder.acquire()
    with pytest.raises(RunLocked, match=r"run r is being run by pid \d+ on .+ since 20\d\d-.*lock file"):
        RunLock(engine, "r", tmp_path / "locks").acquire()
    RunLock(engine, "s", tmp_path / "locks").acquire()
    holder.release()
    RunLock(engine, "r", tmp_path / "locks").acquire()
