"""The episode plan is a stream in a fixed order: a resumed run finds the same episodes, ids and seeds."""

from __future__ import annotations

import itertools
from pathlib import Path

from agent.plan import plan_episodes
from agent.sources import VIDEO_SUFFIXES, iter_clips


def make_tree(root: Path) -> None:
    for name in ("b/x.mp4", "a-b/y.MOV", "a/b/z.mkv", "a/c.webm", "a.mp4", "notes.txt", "a/b/deep/w.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_clips_come_in_sorted_path_order(tmp_path: Path) -> None:
    make_tree(tmp_path)
    expected = sorted(p for p in tmp_path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir())
    assert list(iter_clips(tmp_path)) == expected


def test_plan_is_round_robin_and_numbered_in_order(tmp_path: Path) -> None:
    make_tree(tmp_path)
    clips = list(iter_clips(tmp_path))
    plan = list(plan_episodes(tmp_path, 2))
    assert [p.index for p in plan] == list(range(2 * len(clips)))
    assert [(p.variant, p.clip) for p in plan] == [(v, c) for v in range(2) for c in clips]


def test_plan_is_read_as_it_goes(tmp_path: Path) -> None:
    """The first episode comes before the folder is read to its end: a file added to a later folder after
    the first episode was taken is still planned (a list made up front would not hold it)."""
    make_tree(tmp_path)
    plan = plan_episodes(tmp_path, 1)
    first = next(plan)
    (tmp_path / "b" / "y_late.mp4").write_bytes(b"")
    rest = list(itertools.islice(plan, 100))
    assert first.clip == tmp_path / "a" / "b" / "deep" / "w.mp4"
    assert rest[-1].clip == tmp_path / "b" / "y_late.mp4"
