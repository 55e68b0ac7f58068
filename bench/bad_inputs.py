"""Broken and awkward source clips, written on demand: the fault bench feeds them to a run, and the tests
reuse them."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import cv2
import numpy as np

# Files the run must refuse at ingest with an error naming them; the rest of write_bad_clips' files are
# awkward but usable (odd sizes decode to even ones; one frame is too short for the pre-filter).
REFUSED = ("truncated.mp4", "not_a_video.mp4", "zero_frames.mp4", "huge.mp4", "one_pixel.mkv", "audio_only.mp4")


def write_test_video(path: Path, frames: np.ndarray, fps: int = 12, codec: str = "libx264") -> Path:
    """H.264 by default; ffv1 (in .mkv) takes odd frame sizes, which yuv420p cannot."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p" if codec == "ffv1" else "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    return path


def moving_frames(n: int = 24, h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A textured scene panning right: real motion, no cuts."""
    rng = np.random.default_rng(seed)
    base = (rng.random((h, w * 2, 3)) * 255).astype(np.uint8)
    base = cv2.GaussianBlur(base, (0, 0), 3)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    return np.stack([base[:, 2 * t : 2 * t + w] for t in range(n)])


def write_bad_clips(folder: Path, good_clip: Path) -> Path:
    """One good clip (named with a space) and every kind of broken one. `huge.mp4` is 1280x800: refused
    when ingest.max_source_pixels is below that."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(good_clip, folder / "good clip.mp4")
    data = good_clip.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 20])
    (folder / "not_a_video.mp4").write_text("this is a text file, not a video\n")
    with av.open(str(folder / "zero_frames.mp4"), "w") as out:  # a valid header and no frame at all
        stream = out.add_stream("mpeg4", rate=12)
        stream.width, stream.height = 64, 64
        out.start_encoding()
    write_test_video(folder / "one_frame.mp4", moving_frames(1))
    write_test_video(folder / "huge.mp4", moving_frames(3, h=800, w=1280))
    noise = np.random.default_rng(0).integers(0, 255, (20, 9, 17, 3), dtype=np.uint8)
    write_test_video(folder / "odd 17x9.mkv", noise, codec="ffv1")
    write_test_video(folder / "one_pixel.mkv", noise[:, :1, :1], codec="ffv1")
    with av.open(str(folder / "audio_only.mp4"), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return folder
