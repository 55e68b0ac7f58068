"""bench.same_outputs at a small size, as a change that must not change behaviour is checked with it: two cpu
runs of one seed are the same, decision by decision, call key by call key and file by file; a run of another
seed is not, and the script says where."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.runner import Factory

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def compare(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bench.same_outputs", str(a), str(b)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_two_runs_of_one_seed_are_the_same_and_a_run_of_another_is_not(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    for name, seed in (("a", 0), ("b", 0), ("other", 1)):
        config = small_config(out=tmp_path / name, seed=seed, episodes_per_clip=1, concurrency=1, max_samples=2)
        Factory(config).execute()
    same = compare(tmp_path / "a", tmp_path / "b")
    assert same.returncode == 0 and same.stdout.rstrip().endswith("same"), same.stdout + same.stderr
    other = compare(tmp_path / "a", tmp_path / "other")
    assert other.returncode == 1 and "differences" in other.stdout.splitlines()[-1], other.stdout + other.stderr
    assert any(line.startswith(("episode ", "call ")) for line in other.stdout.splitlines())
