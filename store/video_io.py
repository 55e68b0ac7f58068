"""Video files in and out with PyAV: decode a user's clip to a fixed frame rate and size, encode frames."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


class VideoDecodeError(ValueError):
    """A clip that cannot be used; the message names the file and says why."""


@dataclass(frozen=True)
class DecodedClip:
    frames: np.ndarray  # uint8 [T, H, W, 3], RGB
    fps: float
    source_fps: float
    source_size: tuple[int, int]  # (width, height)
    source_duration_s: float


def even_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Scale so the long side is at most max_side, keeping both sides even (yuv420p needs that)."""
    scale = min(1.0, max_side / max(width, height))
    w, h = max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)
    return w, h


def decode_clip(path: Path, fps: float, num_frames: int, max_side: int, max_source_pixels: int) -> DecodedClip:
    """Frames at `fps` from the start of the clip (at most num_frames), resized to max_side.

    Frames are picked by presentation time, so variable-frame-rate clips resample correctly.
    """
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoDecodeError(f"{path}: not a readable video ({err})") from err
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"{path}: has no video stream (audio only, empty, or not a video)")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_source_pixels:
            raise VideoDecodeError(
                f"{path}: {width}x{height} is larger than ingest.max_source_pixels={max_source_pixels}; "
                "downscale it first or raise the limit"
            )
        if width < 2 or height < 2:
            raise VideoDecodeError(f"{path}: frame size {width}x{height} is too small to use")
        stream.thread_type = "AUTO"
        source_fps = float(stream.average_rate) if stream.average_rate else 0.0
        out_w, out_h = even_size(width, height, max_side)
        frames: list[np.ndarray] = []
        next_t, last_t = 0.0, 0.0
        held: list[av.VideoFrame | np.ndarray] = []  # the frame on screen until the next one: [av frame, rgb?]

        def rgb_of_held() -> np.ndarray:
            if len(held) == 1:  # converted once, when first shown
                rgb = held[0].to_ndarray(format="rgb24")  # type: ignore[union-attr]
                if rgb.shape[1] != out_w or rgb.shape[0] != out_h:
                    rgb = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA)
                held.append(rgb)
            return held[1]  # type: ignore[return-value]

        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                last_t = frame.time
                held = held or [frame]  # instants before the first frame show the first frame
                # Every output instant before this frame's time shows the frame held until now, so a
                # variable-frame-rate clip resamples by what was on screen at each instant.
                while next_t < frame.time - 1e-6 and len(frames) < num_frames:
                    frames.append(rgb_of_held())
                    next_t = len(frames) / fps
                if len(frames) >= num_frames:
                    break
                held = [frame]
            while held and next_t <= last_t + 1e-6 and len(frames) < num_frames:  # the last frame's own instant
                frames.append(rgb_of_held())
                next_t = len(frames) / fps
        except (av.error.FFmpegError, ValueError) as err:
            if not frames:
                raise VideoDecodeError(f"{path}: decoding failed before the first frame ({err})") from err
        if not frames:
            raise VideoDecodeError(f"{path}: contains no decodable video frames")
        return DecodedClip(
            frames=np.stack(frames),
            fps=fps,
            source_fps=source_fps,
            source_size=(width, height),
            source_duration_s=last_t,
        )


def encode_video(frames: np.ndarray, fps: float, path: Path, crf: int = 12) -> None:
    """H.264 in mp4, yuv420p so every player opens it; crf 12 keeps the metrics' inputs near lossless."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T,H,W,3], got {frames.dtype} {frames.shape}")
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = frames[:, : h - h % 2, : w - w % 2]
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # No macroblock tree: with it, x264 encoded the same frames to other bytes from one process to the next
        # (it read memory the process had used before), so a clip's content-addressed name, and every cache
        # key after it, changed between two runs of one seed. Without it: about the same size and error.
        stream.options = {"crf": str(crf), "preset": "fast", "x264-params": "mbtree=0"}
        for rgb in frames:
            # OpenCV's BT.601 conversion, not PyAV's: through swscale the same frames encoded to other bytes
            # about once in 300 calls (an ingest's clip, content-addressed, then had another name).
            yuv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)
            for packet in stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_video(path: Path) -> tuple[np.ndarray, float]:
    """All frames of a video we wrote ourselves, and its frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return np.stack(frames), float(stream.average_rate or 0)
