"""Clean sources: the same footage re-encoded, slightly cropped or trimmed is skipped as a duplicate of the
first clip that showed it; random noise (64x48, variable frame rate), a blank and a flashing screen are
refused at ingest with the measure that decided it."""

from __future__ import annotations

import sqlite3
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from agent.config import deep_merge, load_config
from agent.runner import Factory
from bench.bad_inputs import write_test_video
from store.video_io import decode_clip
from tests.agent.test_sources import matching_fraction
from tests.conftest import SMALL

pytestmark = pytest.mark.slow


def frames_of(clip: Path, seconds: float) -> tuple[np.ndarray, float]:
    with av.open(str(clip)) as c:
        stream = c.streams.video[0]
        fps = float(stream.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream) if f.time is not None and f.time < seconds]
    return np.stack(frames), fps


def write_vfr(path: Path, frames: np.ndarray) -> None:
    """Frames shown for irregular times (1/30 s to 1/5 s): a variable frame rate."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        pts = 0
        for k, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 30)
            pts += 1 + (k * 7) % 6
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, clips: list[Path]) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    bunny, fps = frames_of(next(c for c in clips if c.name == "bigbuckbunny.mp4"), 4.0)
    phone, phone_fps = frames_of(next(c for c in clips if c.name == "carphone_pristine.mp4"), 6.0)
    write_test_video(folder / "a_bunny.mp4", bunny, fps=round(fps))
    write_test_video(folder / "b_bunny_reencoded.mkv", bunny, fps=round(fps), codec="ffv1")
    h, w = bunny.shape[1:3]
    dh, dw = h // 25 * 2 // 2, w // 25 * 2 // 2  # 4% off each side, scaled back to the same size
    cropped = np.stack([cv2.resize(f[dh : h - dh, dw : w - dw], (w, h)) for f in bunny])
    write_test_video(folder / "c_bunny_cropped.mp4", cropped, fps=round(fps))
    write_test_video(folder / "d_phone.mp4", phone, fps=round(phone_fps))
    write_test_video(folder / "e_phone_trimmed.mp4", phone[round(1.3 * phone_fps) :], fps=round(phone_fps))
    rng = np.random.default_rng(0)
    write_vfr(folder / "f_noise.mp4", rng.integers(0, 255, (60, 48, 64, 3), dtype=np.uint8))
    write_test_video(folder / "g_blank.mp4", np.full((40, 48, 64, 3), 30, np.uint8))
    flashing = np.stack([np.full((48, 64, 3), 240 if t % 2 else 10, np.uint8) for t in range(40)])
    write_test_video(folder / "h_flashing.mp4", flashing)
    return folder


def test_fingerprints_match_the_same_footage_and_nothing_else(sources: Path) -> None:
    from models.cpu.source_measures import dhash

    def prints(name: str) -> list[int]:
        return [h for f in decode_clip(sources / name, 4, 40, 64, 10**9).frames if (h := dhash(f)) is not None]

    original = prints("a_bunny.mp4")
    for copy in ("b_bunny_reencoded.mkv", "c_bunny_cropped.mp4"):
        assert matching_fraction(original, prints(copy), 10) >= 0.8, copy
    assert matching_fraction(prints("d_phone.mp4"), prints("e_phone_trimmed.mp4"), 10) >= 0.8
    assert matching_fraction(original, prints("d_phone.mp4"), 10) < 0.2


def test_duplicates_and_clips_without_structure_are_refused_by_name(sources: Path, tmp_path: Path) -> None:
    cfg = load_config(
        "cpu",
        None,
        deep_merge(SMALL, {"out": tmp_path / "out", "source_dir": sources, "episodes_per_clip": 1}),
    )
    Factory(cfg).execute()
    db = sqlite3.connect(tmp_path / "out" / "ditto.db")
    rows = {Path(p).name: (r, d) for p, r, d in db.execute("select clip_path, reason, detail from episode")}
    assert rows["b_bunny_reencoded.mkv"][0] == "duplicate_of:a_bunny.mp4"
    assert rows["c_bunny_cropped.mp4"][0] == "duplicate_of:a_bunny.mp4"
    assert rows["e_phone_trimmed.mp4"][0] == "duplicate_of:d_phone.mp4"
    assert rows["f_noise.mp4"][0] == "noise" and "neighbour_correlation=" in rows["f_noise.mp4"][1]
    assert rows["g_blank.mp4"][0] == "blank_screen" and "contrast=" in rows["g_blank.mp4"][1]
    assert rows["h_flashing.mp4"][0] == "flashing" and "flash_rate=" in rows["h_flashing.mp4"][1]
    assert rows["a_bunny.mp4"][0] != "duplicate_of:b_bunny_reencoded.mkv"  # the first clip is the original
    (fingerprints,) = db.execute("select count(*) from toolcall where tool='fingerprint_clip'").fetchone()
    Factory(cfg).execute()  # resumed: the same verdicts, no fingerprint computed twice
    (charged,) = db.execute(
        "select count(*) from toolcall where tool = 'fingerprint_clip' and reused_call_id is null"
    ).fetchone()
    assert charged == fingerprints == 8


def test_a_copy_that_cannot_make_a_sample_is_no_original(tmp_path: Path, clips: list[Path]) -> None:
    """The issue's case: an intact clip was discarded as duplicate_of a copy that was itself discarded."""
    folder = tmp_path / "sources"
    folder.mkdir()
    bunny, fps = frames_of(next(c for c in clips if c.name == "bigbuckbunny.mp4"), 4.0)
    write_test_video(folder / "a_bunny_short.mp4", bunny[: round(0.5 * fps)], fps=round(fps))  # too short
    write_test_video(folder / "b_bunny.mp4", bunny, fps=round(fps))
    write_test_video(folder / "c_bunny_reencoded.mkv", bunny, fps=round(fps), codec="ffv1")
    cfg = load_config(
        "cpu", None, deep_merge(SMALL, {"out": tmp_path / "out", "source_dir": folder, "episodes_per_clip": 1})
    )
    Factory(cfg).execute()
    db = sqlite3.connect(tmp_path / "out" / "ditto.db")
    rows = {Path(p).name: r for p, r in db.execute("select clip_path, reason from episode")}
    assert rows["a_bunny_short.mp4"] == "too_short"
    assert not (rows["b_bunny.mp4"] or "").startswith("duplicate_of")
    assert rows["c_bunny_reencoded.mkv"] == "duplicate_of:b_bunny.mp4"
    (ingests,) = db.execute("select count(*) from toolcall where tool = 'ingest' and reused_call_id is null").fetchone()
    assert ingests == 2  # the short copy's ingest, run for the screen, was reused by its episode
