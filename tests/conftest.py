"""Shared fixtures: offline hubs, small cpu configs, sample and broken clips."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("OPENAI_BASE_URL", None)

from agent.config import RunConfig, deep_merge, load_config  # noqa: E402
from agent.sources import sample_clips  # noqa: E402
from bench.bad_inputs import write_bad_clips  # noqa: E402
from bench.pg_server import free_port  # noqa: E402

# Small enough that an episode takes well under a second on one core.
SMALL: dict[str, Any] = {
    "tools": {"ingest": {"num_frames": 17, "fps": 12, "max_side": 128}},
    "policy": {"min_frames": 9},
    "episodes_per_clip": 2,
    "concurrency": 2,
    "budget_gpu_days": 1.0,
}


def run_main(*args: str, without: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`python main.py ARGS` at 80 columns, as a user's terminal runs it, in a Python where the modules
    `without` names cannot be imported (as on an install without the extra that brings them)."""
    blocked = "".join(f"sys.modules[{m!r}] = None; " for m in without)
    run = "sys.argv = ['main.py', *sys.argv[1:]]; runpy.run_path('main.py', run_name='__main__')"
    return subprocess.run(
        [sys.executable, "-c", f"import runpy, sys; {blocked}{run}", *args],
        cwd=Path(__file__).parents[1],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def small_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(**overrides: Any) -> RunConfig:
        return load_config("cpu", None, deep_merge(deep_merge(SMALL, {"out": tmp_path / "out"}), overrides))

    return make


@pytest.fixture(scope="session")
def clips() -> list[Path]:
    found = sample_clips()
    assert len(found) == 3, found
    return found


@pytest.fixture
def bad_clips_dir(tmp_path: Path, clips: list[Path]) -> Path:
    """A source folder with one good clip and every kind of broken one."""
    return write_bad_clips(tmp_path / "sources with spaces ü", clips[0])


@pytest.fixture(scope="session", autouse=True)
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny checkpoints are built once per test session, in a temporary folder."""
    path = tmp_path_factory.mktemp("tiny-models")
    os.environ["DITTO_TINY_DIR"] = str(path)
    return path


from tests.postgres import postgres_server, postgres_url  # noqa: E402, F401  (a throwaway PostgreSQL)


@pytest.fixture(scope="module")
def foreign_ray_cluster() -> Iterator[Path]:
    """A Ray cluster someone started on this machine with `ray start`, which Ray's own default (`ray.init()`
    with no address) would join. It lives in a temp dir of its own, and RAY_TMPDIR points Ray's default
    there for the module, so only this module's Ray calls see it; Ray processes started meanwhile (here
    and in subprocesses) see it too. Stopped by the PID of the `ray start` that runs it, never `ray stop`,
    which would stop every Ray on the machine."""
    import subprocess
    import sys
    import tempfile
    import time

    tmp = Path(tempfile.mkdtemp(prefix="rf-", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    port = free_port()
    env = {**os.environ, "RAY_TMPDIR": str(tmp), "RAY_AUTH_MODE": "disabled"}
    ray_cli = [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}", "--num-cpus=1"]
    flags = ["--include-dashboard=false", "--disable-usage-stats", "--block"]
    started = subprocess.Popen(
        ray_cli + flags, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    address_file = tmp / "ray" / "ray_current_cluster"
    deadline = time.monotonic() + 120
    while not address_file.is_file() and started.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    before = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(tmp)
    try:
        assert address_file.is_file(), "ray start --head did not start"
        yield tmp
    finally:
        if before is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = before
        started.terminate()  # `ray start --block` stops what it started on SIGTERM
        try:
            started.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(started.pid, 9)
        shutil.rmtree(tmp, ignore_errors=True)
