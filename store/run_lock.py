"""One process per run. Two processes on one run would both admit its next episodes; so a run is locked by the
process that runs it, with a lock its store already has: an fcntl lock on a file beside the SQLite database,
or a PostgreSQL advisory lock held by a connection of the run's own. Both are the operating system's or the
server's: a process killed with SIGKILL lets go of its lock, so a stale lock never blocks a resume."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from store.tables import Run


class RunLocked(RuntimeError):
    """Another process runs this run; the message names it (host, pid, since when)."""


def holder_now() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": datetime.now(UTC).isoformat(timespec="seconds")}


def describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


class RunLock:
    """Held from acquire() until release() or the process's end."""

    def __init__(self, engine: Engine, run_id: str, lock_dir: Path) -> None:
        self.engine, self.run_id, self.lock_dir = engine, run_id, lock_dir
        self._file: Any = None
        self._conn: Connection | None = None
        self.holder: dict[str, Any] = {}
        digest = hashlib.sha256(f"ditto-run:{run_id}".encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)  # the advisory lock's 64-bit key

    def acquire(self) -> None:
        """Raises RunLocked naming the holder when another process holds the run."""
        self.holder = holder_now()
        if self.engine.dialect.name == "postgresql":
            self._acquire_advisory(self.holder)
        else:
            self._acquire_file(self.holder)

    def _acquire_file(self, holder: dict[str, Any]) -> None:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        path = self.lock_dir / f"{self.run_id}.lock"
        handle = open(path, "a+")  # noqa: SIM115 -- held open for the run: the lock lives as long as it
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                held_by = json.loads(handle.read() or "null")
            except json.JSONDecodeError:
                held_by = None
            handle.close()
            raise RunLocked(f"run {self.run_id} is being run by {describe(held_by)} (lock file {path})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder))
        handle.flush()
        self._file = handle

    def _acquire_advisory(self, holder: dict[str, Any]) -> None:
        conn = self.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}).scalar()
        conn.commit()  # the lock is the session's: no transaction stays open while the run goes on
        if not got:
            conn.close()
            with Session(self.engine) as s:
                run = s.get(Run, self.run_id)
                held_by = json.loads(run.held_by) if run is not None and run.held_by else None
            raise RunLocked(f"run {self.run_id} is being run by {describe(held_by)} (a PostgreSQL advisory lock)")
        self._conn = conn

    def record_holder(self) -> None:
        """Write who holds the run onto its row (PostgreSQL's refusal reads it there); the row exists by now."""
        if self._conn is None:
            return
        with Session(self.engine) as s:
            run = s.get(Run, self.run_id)
            if run is not None:
                run.held_by = json.dumps(self.holder)
                s.add(run)
                s.commit()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file lets go of its lock
            self._file = None
        if self._conn is not None:
            # Unlocked at once (the server lets go of a closed session's locks only once it notices), then
            # closed for good: a connection handed back to the engine's pool would keep its session's locks.
            self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            self._conn.invalidate()
            self._conn = None
