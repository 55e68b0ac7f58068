"""Faults injected into a cpu run: tools that raise, hang, run out of memory or answer in the wrong shape;
an unreadable clip; a database locked by another writer; a full disk. Each is recorded where it happened
and the run goes on, or stops cleanly and resumes with nothing lost."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from agent.faults import RunError
from agent.runner import Factory
from models.cpu.propagation import ExamplePropagator
from models.cpu.styles import StyleEditor
from models.protocols import OutOfDeviceMemory
from store.engine import open_engine
from store.report_data import report_data
from store.video_io import read_video
from tests.conftest import SMALL

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
REAL_PROPAGATE = ExamplePropagator.propagate


@pytest.fixture
def one_clip(tmp_path: Path, clips: list[Path]) -> Path:
    d = tmp_path / "clips"
    d.mkdir()
    shutil.copy(clips[0], d / clips[0].name)  # bigbuckbunny: accepted when nothing goes wrong
    return d


def calls(out: Path, tool: str) -> list[tuple[int, str | None, str | None, str]]:
    db = sqlite3.connect(out / "ditto.db")
    return db.execute(
        "select attempt, error_kind, coalesce(error_field || ': ', '') || error_detail, input_json from toolcall "
        "where tool=? order by id",
        (tool,),
    ).fetchall()


def episodes(out: Path) -> list[tuple[str, str | None]]:
    return sqlite3.connect(out / "ditto.db").execute("select status, reason from episode order by id").fetchall()


def run_one(small_config, one_clip: Path, **overrides) -> Path:  # type: ignore[no-untyped-def]
    cfg = small_config(source_dir=one_clip, episodes_per_clip=1, concurrency=1, **overrides)
    Factory(cfg).execute()
    return cfg.out


def test_out_of_memory_retries_the_step_at_a_lower_memory_level(small_config, one_clip, monkeypatch) -> None:
    def propagate(self, *args, memory_level: int = 0, **kw):  # type: ignore[no-untyped-def]
        if memory_level == 0:
            raise OutOfDeviceMemory("CUDA out of memory. Tried to allocate 20.00 GiB")
        return REAL_PROPAGATE(self, *args, memory_level=memory_level, **kw)

    monkeypatch.setattr(ExamplePropagator, "propagate", propagate)
    out = run_one(small_config, one_clip)
    tried = calls(out, "propagate")
    assert [(a, e) for a, e, _, _ in tried] == [(0, "oom"), (1, None)]
    assert "propagate ran out of memory: OutOfDeviceMemory: CUDA out of memory" in tried[0][2]
    assert [json.loads(i)["memory_level"] for *_, i in tried] == [0, 1]
    edits = calls(out, "edit_keyframe")
    assert [json.loads(i)["memory_level"] for *_, i in edits] == [0, 0]  # only the failing step runs cheaper
    assert episodes(out) == [("accepted", None)]
    # Half the frames, the source's first 8 at its rate: the sample holds them in both clips and says so.
    (folder,) = (out / "dataset").glob("*/record.json")
    record = json.loads(folder.read_text())
    assert record["degraded"] == {"memory_levels": {"propagate": 1}, "frames": 8, "source_frames": 17, "start": 0}
    source, fps = read_video(folder.parent / "source.mp4")
    edited, edited_fps = read_video(folder.parent / "edited.mp4")
    assert len(source) == len(edited) == 8 and fps == edited_fps == 12
    (episode,) = report_data(open_engine(f"sqlite:///{out / 'ditto.db'}"), record["run_id"]).episodes
    assert episode["refs"]["source"] == record["artifacts"]["source"]  # the report plays those 8 frames beside it


def test_out_of_memory_at_every_level_discards_the_episode(small_config, one_clip, monkeypatch) -> None:
    def propagate(self, *args, **kw):  # type: ignore[no-untyped-def]
        raise MemoryError("cannot allocate")

    monkeypatch.setattr(ExamplePropagator, "propagate", propagate)
    out = run_one(small_config, one_clip)
    assert [json.loads(i)["memory_level"] for *_, i in calls(out, "propagate")] == [0, 1, 2]
    assert episodes(out) == [("discarded", "oom@propagate")]


def test_a_hung_tool_times_out_keeps_its_device_until_it_ends_and_the_retry_is_not_charged_the_wait(
    small_config, one_clip, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    hung = threading.Event()

    def propagate(self, *args, **kw):  # type: ignore[no-untyped-def]
        if not hung.is_set():
            hung.set()
            # Past the 2 s limit: the caller gives up on it, and it ends 3.5 s later, a margin that leaves the next
            # call (queued up to ~1 s after the timeout on a loaded machine; 0.8 s seen) a clear wait.
            time.sleep(5.5)
        return REAL_PROPAGATE(self, *args, **kw)

    monkeypatch.setattr(ExamplePropagator, "propagate", propagate)
    started = time.monotonic()
    out = run_one(small_config, one_clip, backends={"propagator": {"timeout_s": 2}})
    assert time.monotonic() - started < 30
    tried = calls(out, "propagate")
    assert tried[0][1] == "timeout" and "propagate ran past its 2 s limit" in tried[0][2]
    assert tried[1][:2] == (1, None)  # reseeded, and the second try finished
    assert episodes(out) == [("accepted", None)]
    # The next call on the CPU (the reseeded attempt's key-frame edit) waited for the abandoned call to end, and
    # was charged only its own work.
    db = sqlite3.connect(out / "ditto.db")
    after = db.execute(
        "select queued_s, device_seconds from toolcall where id > (select min(id) from toolcall where "
        "error_kind = 'timeout') order by queued_s desc"
    ).fetchall()
    assert after[0][0] > 1.0 and after[0][1] < 1.0, after


def test_a_tool_that_never_comes_back_stops_the_run_resumably(small_config, one_clip, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()

    def propagate(self, *args, **kw):  # type: ignore[no-untyped-def]
        release.wait(60)
        return REAL_PROPAGATE(self, *args, **kw)

    monkeypatch.setattr(ExamplePropagator, "propagate", propagate)
    cfg = small_config(
        source_dir=one_clip, episodes_per_clip=1, concurrency=1, backends={"propagator": {"timeout_s": 1}}
    )
    try:
        with pytest.raises(RunError, match="stopped the run: .* still held by a propagate call abandoned"):
            Factory(cfg).execute()
    finally:
        release.set()  # let the abandoned call end with the test, not inside OpenCV as the interpreter exits
        for thread in threading.enumerate():
            if thread.name == "tool-propagate":
                thread.join(30)
    assert episodes(cfg.out) == [("running", None)]  # checkpointed, not discarded
    assert sqlite3.connect(cfg.out / "ditto.db").execute("select status from run").fetchone() == ("interrupted",)


def test_a_raising_tool_is_recorded_with_its_input_and_the_run_goes_on(small_config, clips, monkeypatch) -> None:
    def propagate(self, source, *args, **kw):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"boom on a clip of {len(source)} frames")

    monkeypatch.setattr(ExamplePropagator, "propagate", propagate)
    cfg = small_config()
    Factory(cfg).execute()
    tried = calls(cfg.out, "propagate")
    assert tried and all(e == "tool_failed" and "propagate raised RuntimeError: boom" in d for _, e, d, _ in tried)
    assert all("edited_keyframe" in json.loads(i) for *_, i in tried)  # the input is on the record
    reasons = {r for s, r in episodes(cfg.out) if s == "discarded"}
    assert "tool_failed@propagate" in reasons and len(episodes(cfg.out)) == 6  # every episode ran


def test_wrong_shapes_are_caught_by_the_tool_and_named(small_config, one_clip, monkeypatch) -> None:
    monkeypatch.setattr(ExamplePropagator, "propagate", lambda self, source, *a, **k: source[::2])
    out = run_one(small_config, one_clip)
    (_, kind, detail, _), *_ = calls(out, "propagate")
    assert kind == "tool_failed" and "edited_video" in detail and "the propagator returned (9," in detail
    assert episodes(out) == [("discarded", "tool_failed@propagate")]

    monkeypatch.setattr(StyleEditor, "edit", lambda self, image, *a, **k: np.zeros((4, 4, 3), np.uint8))
    out = run_one(small_config, one_clip, out=out.parent / "out2")
    (_, kind, detail, _), *_ = calls(out, "edit_keyframe")
    assert kind == "tool_failed" and "edited_keyframe" in detail and "(4, 4, 3)" in detail


def test_unreadable_clip_is_rejected_by_name(tmp_path: Path, clips: list[Path]) -> None:
    """Tests run as root, which reads anything: the run goes without the capabilities that let root ignore
    file modes (setpriv), so that chmod 000 bites."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(clips[0], src / "readable.mp4")
    shutil.copy(clips[0], src / "locked.mp4")
    (src / "locked.mp4").chmod(0)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"episodes_per_clip": 1, "tools": {"ingest": {"num_frames": 17}}}))
    as_plain_user = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    result = subprocess.run(
        [*as_plain_user, sys.executable, "main.py", "--source-dir", str(src), "--out", str(tmp_path / "out")]
        + ["--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = dict(
        sqlite3.connect(tmp_path / "out" / "ditto.db").execute(
            "select clip_path, coalesce(reason, '') || ' ' || coalesce(detail, '') from episode"
        )
    )
    locked = rows[str(src / "locked.mp4")]
    assert locked.startswith("bad_input@ingest") and "locked.mp4" in locked and "Permission denied" in locked
    assert not rows[str(src / "readable.mp4")].startswith("bad_input")


def uninterrupted_accepts(small_config) -> int:  # type: ignore[no-untyped-def]
    cfg = small_config(out=Path(tempfile.mkdtemp(prefix="ditto-reference-")) / "out")
    return Factory(cfg).execute().totals.accepted


def assert_store_is_whole(out: Path) -> None:
    """No corrupt record: SQLite agrees, every sample has its files, every call that ran is charged to its run."""
    db = sqlite3.connect(out / "ditto.db")
    assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    for (folder,) in db.execute("select dataset_dir from sample"):
        assert {"source.mp4", "edited.mp4", "record.json"} <= {p.name for p in (out / "dataset" / folder).iterdir()}
    unpaired = db.execute("select count(*) from toolcall where reused_call_id is null and run_id is null").fetchone()[0]
    assert unpaired == 0
    assert db.execute("select count(*) from episode where status = 'running'").fetchone()[0] == 0


def test_a_briefly_locked_database_is_waited_for(small_config, one_clip) -> None:
    cfg = small_config(source_dir=one_clip, episodes_per_clip=2)
    factory = Factory(cfg)
    other = sqlite3.connect(cfg.out / "ditto.db", timeout=30, check_same_thread=False)
    other.execute("begin exclusive")  # another writer holds the database for two seconds
    releaser = threading.Timer(2.0, other.commit)
    releaser.start()
    started = time.monotonic()
    result = factory.execute()
    assert time.monotonic() - started >= 2.0 and result.status == "finished" and result.totals.running == 0
    assert_store_is_whole(cfg.out)


def test_a_database_locked_past_the_timeout_stops_the_run_cleanly_and_it_resumes(
    small_config, tmp_path: Path, monkeypatch
) -> None:
    from typer.testing import CliRunner

    import store.engine
    from main import app

    expected = uninterrupted_accepts(small_config)
    monkeypatch.setattr(store.engine, "SQLITE_BUSY_TIMEOUT_S", 0.3)
    out, config = tmp_path / "out", tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    args = ["--out", str(out), "--config", str(config)]
    locked, release = threading.Event(), threading.Event()

    def lock_after_first_sample() -> None:
        deadline = time.monotonic() + 120  # a run that never accepts fails the test below instead of hanging it
        while time.monotonic() < deadline:
            try:
                if sqlite3.connect(out / "ditto.db").execute("select count(*) from sample").fetchone()[0]:
                    break
            except sqlite3.OperationalError:  # not created yet
                pass
            time.sleep(0.05)
        else:
            return  # never locked: `locked` stays unset and the assertion names it
        other = sqlite3.connect(out / "ditto.db")
        other.execute("begin exclusive")
        locked.set()
        release.wait(60)
        other.rollback()

    holder = threading.Thread(target=lock_after_first_sample)
    holder.start()
    first = CliRunner().invoke(app, args)
    release.set()
    holder.join()
    assert locked.is_set() and first.exit_code == 1, first.output
    assert "database is locked" in first.output and "resume with" in first.output
    monkeypatch.undo()  # the other writer is gone: the usual busy timeout again
    again = CliRunner().invoke(app, args, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert sqlite3.connect(out / "ditto.db").execute("select count(*) from sample").fetchone()[0] == expected
    assert_store_is_whole(out)


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_stops_the_run_cleanly_and_it_resumes_once_there_is_room(small_config, small_disk: Path) -> None:
    from typer.testing import CliRunner

    from main import app

    expected = uninterrupted_accepts(small_config)
    config = small_disk.parent / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    args = ["--out", str(small_disk / "out"), "--config", str(config)]
    full = CliRunner().invoke(app, args)
    assert full.exit_code == 1, full.output
    assert "No space left on device" in full.output or "disk is full" in full.output, full.output
    assert "resume with" in full.output
    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    again = CliRunner().invoke(app, args, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    out = small_disk / "out"
    assert sqlite3.connect(out / "ditto.db").execute("select count(*) from sample").fetchone()[0] == expected
    assert_store_is_whole(out)
