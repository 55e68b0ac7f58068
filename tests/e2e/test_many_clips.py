"""A source folder of 100,000 clips (hard links to one sample clip, 100 folders of 1,000) starts its first
episode at once, on a new run and on a resume: nothing lists the whole folder before it."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.checks import check_run_inputs
from agent.runner import Factory
from agent.sources import sample_clips

pytestmark = pytest.mark.slow
FOLDERS, PER_FOLDER, LINKS_PER_FILE = 100, 1000, 50_000
FIRST_EPISODE_WITHIN_S = 30.0  # generous for a shared 2-core machine; by hand: bench figures in bench/RESULTS.md


@pytest.fixture(scope="module")
def hundred_thousand_clips() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="many-clips-"))
    source = root / "source"
    for f in range(FOLDERS):
        folder = source / f"{f:03d}"
        folder.mkdir(parents=True)
        sample = root / f"sample{f * PER_FOLDER // LINKS_PER_FILE}.mp4"  # a file takes 65,000 links on ext4
        if not sample.exists():
            shutil.copy(sample_clips()[0], sample)
        for c in range(PER_FOLDER):
            os.link(sample, folder / f"{c:04d}.mp4")
    yield source
    shutil.rmtree(root)


def until_the_first_episode(factory: Factory, started: float, listed: list[str]) -> tuple[float, int]:
    """Runs until an episode is in flight, then stops as Ctrl-C does: (seconds since `started`, folders
    listed by then)."""
    seen: list[tuple[float, int]] = []

    def on_progress(totals: object, in_flight: int) -> None:
        if in_flight and not seen:
            seen.append((time.perf_counter() - started, len(listed)))
            raise KeyboardInterrupt  # the run's own Ctrl-C path: the episode stays checkpointed

    assert factory.execute(on_progress).status == "interrupted"
    return seen[0]


def test_a_hundred_thousand_clips_start_their_first_episode_at_once_and_on_resume(
    hundred_thousand_clips: Path,
    small_config,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed: list[str] = []
    scandir = os.scandir

    def counted_scandir(path):  # type: ignore[no-untyped-def]
        listed.append(str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counted_scandir)
    cfg = small_config(source_dir=hundred_thousand_clips, concurrency=1)
    figures = []
    run_id = None
    for _ in ("start", "resume"):
        listed.clear()
        started = time.perf_counter()
        check_run_inputs(cfg)
        factory = Factory(cfg, run_id)
        figures.append(until_the_first_episode(factory, started, listed))
        run_id = factory.run.id
    for seconds, folders in figures:
        assert folders < 10, figures  # of 101: every check, the plan and the screening read as they go
        assert seconds < FIRST_EPISODE_WITHIN_S, figures
