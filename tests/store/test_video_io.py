"""Decoding users' clips: variable frame rates resample by what was on screen; 8K decodes to the working
size, and anything larger is refused by name."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from bench.bad_inputs import write_test_video
from store.video_io import VideoDecodeError, decode_clip, encode_video


def write_vfr_video(path: Path, times_ms: list[int]) -> Path:
    """Frame k is a flat grey of brightness 20*k, shown from times_ms[k]: a variable frame rate."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1000)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        for k, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 20 * k, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def test_variable_frame_rate_resamples_by_presentation_time(tmp_path: Path) -> None:
    times = [0, 40, 50, 300, 310, 600]
    clip = decode_clip(
        write_vfr_video(tmp_path / "vfr.mp4", times), fps=10, num_frames=7, max_side=64, max_source_pixels=10**8
    )
    shown = [int(round(f.mean() / 20)) for f in clip.frames]
    # at 0.0 s frame 0; 0.1 and 0.2 s frame 2 (shown from 0.05 s); 0.3 to 0.5 s frame 4; 0.6 s frame 5
    assert shown == [0, 2, 2, 3, 4, 4, 5]
    assert clip.source_duration_s == pytest.approx(0.6)


@pytest.mark.slow
def test_8k_frames_decode_to_the_working_size_and_larger_ones_are_refused(tmp_path: Path) -> None:
    gradient = np.linspace(0, 255, 7680, dtype=np.uint8)[None, :, None].repeat(4320, 0).repeat(3, 2)
    path = write_test_video(tmp_path / "eight k.mp4", np.stack([gradient, gradient[:, ::-1]]), fps=2)
    clip = decode_clip(path, fps=2, num_frames=2, max_side=320, max_source_pixels=7680 * 4320)
    assert clip.frames.shape == (2, 180, 320, 3) and clip.source_size == (7680, 4320)
    assert clip.frames[0, :, :20].mean() < 30 and clip.frames[1, :, :20].mean() > 225  # the content survives
    with pytest.raises(VideoDecodeError, match=r"eight k\.mp4: 7680x4320 is larger than ingest.max_source_pixels"):
        decode_clip(path, fps=2, num_frames=2, max_side=320, max_source_pixels=3840 * 2160)


def test_the_same_frames_encode_to_the_same_bytes_whatever_the_process_holds(tmp_path: Path, clips: list[Path]) -> None:
    """An artifact is named by its bytes, and later calls' cache keys by those names: x264's macroblock tree
    encoded these frames to 7 different files in 8 tries, each after the process had allocated more memory."""
    frames = decode_clip(clips[0], 12.0, 25, 320, 10**9).frames  # bigbuckbunny at the cpu profile's size
    names, held = set(), []
    for k in range(5):
        held.append(np.random.default_rng(k).bytes(2_000_000 * (k + 1)))
        encode_video(frames, 12.0, tmp_path / "clip.mp4")
        names.add(hashlib.sha256((tmp_path / "clip.mp4").read_bytes()).hexdigest())
    assert len(names) == 1
