"""A throwaway PostgreSQL on 127.0.0.1 from Debian's binaries (initdb runs as the postgres user when we are
root, as it refuses root), for the tests and for bench/scale.py."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class NoPostgres(RuntimeError):
    """PostgreSQL's server binaries are not installed."""


def as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_server(max_connections: int = 200) -> Iterator[str]:
    """A server in a temporary folder, stopped and removed on exit: its URL without a database name."""
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb:
        raise NoPostgres("no PostgreSQL server here (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
    bin_dir, data = Path(initdb[-1]).parent, Path(tempfile.mkdtemp(prefix="ditto-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    data.chmod(0o700)
    port = free_port()
    quiet = {"check": True, "capture_output": True}
    init = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]
    subprocess.run(as_postgres(*init), **quiet)  # type: ignore[arg-type]
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c max_connections={max_connections}"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w"]
    subprocess.run(as_postgres(*pg_ctl, "-o", options, "start"), **quiet)  # type: ignore[arg-type]
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(as_postgres(*pg_ctl, "-m", "immediate", "stop"), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def new_database(server: str) -> str:
    """A fresh, empty database on the server: its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.replace("+psycopg", "") + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return f"{server}/{name}"
