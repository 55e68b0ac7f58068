"""Small conversions between our uint8 [T,H,W,3] clips and what the model libraries take. Imports no torch:
the endpoint backends use it on the cpu profile's import path."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch


def torch_dtype(name: str) -> torch.dtype:
    import torch

    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ValueError(f"dtype {name!r} is not one of {', '.join(dtypes)}")
    return dtypes[name]


def resample(frames: np.ndarray, count: int) -> np.ndarray:
    """`count` frames spread evenly over the clip (nearest neighbour in time)."""
    idx = np.linspace(0, len(frames) - 1, num=count).round().astype(int)
    return frames[idx]


def resize(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


def consecutive(frames: np.ndarray, count: int) -> np.ndarray:
    """The first `count` frames as they are (motion at the clip's own speed), or, from a shorter clip, the
    longest 4k+1 run it has: what DiffSynth-Studio's LoadVideo feeds Wan (diffsynth/core/data/operators.py)."""
    return frames[: count if len(frames) >= count else (len(frames) - 1) // 4 * 4 + 1]


def crop_resize(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scaled to cover width x height, then centre-cropped to it: no stretching, whatever the aspect ratio
    (DiffSynth-Studio's ImageCropAndResize)."""
    h, w = frames.shape[1:3]
    if (h, w) == (height, width):
        return frames
    scale = max(width / w, height / h)
    covering = resize(frames, max(width, round(w * scale)), max(height, round(h * scale)))
    top, left = (covering.shape[1] - height) // 2, (covering.shape[2] - width) // 2
    return np.ascontiguousarray(covering[:, top : top + height, left : left + width])


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float [0,1] model output to uint8."""
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def to_pil(frames: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(f) for f in frames]


def wan_frame_count(frames: int) -> int:
    """Wan's VAE compresses time 4x: clips must be 4k+1 frames long."""
    return max(1, (frames - 1) // 4) * 4 + 1
