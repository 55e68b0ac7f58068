"""Shared fixtures: offline hubs, small cpu configs, sample and broken clips."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("OPENAI_BASE_URL", None)

from agent.config import RunConfig, deep_merge, load_config  # noqa: E402
from agent.runner import sample_clips  # noqa: E402

# Small enough that an episode takes well under a second on one core.
SMALL: dict[str, Any] = {
    "tools": {"ingest": {"num_frames": 17, "fps": 12, "max_side": 128}},
    "policy": {"min_frames": 9},
    "episodes_per_clip": 2,
    "concurrency": 2,
    "budget_gpu_days": 1.0,
}


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
    import cv2

    base = cv2.GaussianBlur(base, (0, 0), 3)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    return np.stack([base[:, 2 * t : 2 * t + w] for t in range(n)])


@pytest.fixture
def bad_clips_dir(tmp_path: Path, clips: list[Path]) -> Path:
    """A source folder with one good clip and every kind of broken one."""
    d = tmp_path / "sources with spaces ü"
    d.mkdir()
    shutil.copy(clips[0], d / "good clip.mp4")
    data = clips[0].read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 20])
    (d / "not_a_video.mp4").write_text("this is a text file, not a video\n")
    with av.open(str(d / "zero_frames.mp4"), "w") as out:  # a valid header and no frame at all
        stream = out.add_stream("mpeg4", rate=12)
        stream.width, stream.height = 64, 64
        out.start_encoding()
    write_test_video(d / "one_frame.mp4", moving_frames(1))
    write_test_video(d / "huge.mp4", moving_frames(3, h=800, w=1280))
    noise = np.random.default_rng(0).integers(0, 255, (20, 9, 17, 3), dtype=np.uint8)
    write_test_video(d / "odd 17x9.mkv", noise, codec="ffv1")
    write_test_video(d / "one_pixel.mkv", noise[:, :1, :1], codec="ffv1")
    with av.open(str(d / "audio_only.mp4"), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return d


@pytest.fixture(scope="session", autouse=True)
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny checkpoints are built once per test session, in a temporary folder."""
    path = tmp_path_factory.mktemp("tiny-models")
    os.environ["DITTO_TINY_DIR"] = str(path)
    return path
