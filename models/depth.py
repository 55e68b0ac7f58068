"""Depth Anything (V2) through transformers, frame by frame, normalised once over the whole clip so that
the control video does not flicker."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.device_memory import raises_out_of_device_memory
from models.frames import torch_dtype

NORMALISE_PERCENTILES = (2.0, 98.0)  # robust to a few wild pixels, unlike min/max


class DepthAnythingEstimator:
    def __init__(self, path: str, device: str = "cuda", dtype: str = "float16", batch_size: int = 8) -> None:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.device, self.batch_size = device, batch_size
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.model = AutoModelForDepthEstimation.from_pretrained(path, dtype=torch_dtype(dtype)).to(device).eval()
        self.spec_id = self.identity(path)

    @staticmethod
    def identity(path: str, **_: Any) -> str:
        return f"depth-anything:{path.rstrip('/').split('/')[-1]}"

    @raises_out_of_device_memory
    def estimate(self, frames: np.ndarray) -> np.ndarray:
        h, w = frames.shape[1:3]
        maps = []
        for start in range(0, len(frames), self.batch_size):
            batch = list(frames[start : start + self.batch_size])
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device, self.model.dtype)
            with torch.inference_mode():
                depth = self.model(**inputs).predicted_depth  # relative inverse depth: near is large
            depth = torch.nn.functional.interpolate(depth[:, None].float(), size=(h, w), mode="bicubic")
            maps.append(depth[:, 0].cpu().numpy())
        clip = np.concatenate(maps)
        lo, hi = np.percentile(clip, NORMALISE_PERCENTILES)
        if hi <= lo:  # a flat prediction carries no layout
            return np.zeros_like(clip, dtype=np.float32)
        return np.clip((clip - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
