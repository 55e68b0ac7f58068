"""The cpu profile's temporal enhancer: a flow-guided temporal filter that averages each frame with its
motion-compensated neighbours where the source says the motion estimate holds, removing flicker."""

from __future__ import annotations

import numpy as np

from models.cpu.flow import backward_flow, consistency_mask, warp


class FlowTemporalFilter:
    spec_id = "cpu-flow-temporal-filter-v1"

    def __init__(self, strength: float = 0.5) -> None:
        self.strength = strength  # 0 leaves the video as it is; 1 averages fully with both neighbours

    def enhance(
        self, video: np.ndarray, source: np.ndarray, prompt: str, seed: int, memory_level: int = 0
    ) -> np.ndarray:  # memory_level: a CPU filter has nothing to save
        frames = video.astype(np.float32)
        out = frames.copy()
        for t in range(len(frames)):
            acc, weight = frames[t].copy(), np.ones(frames.shape[1:3] + (1,), np.float32)
            for n in (t - 1, t + 1):
                if 0 <= n < len(frames):
                    flow = backward_flow(source[n], source[t])
                    w = self.strength * consistency_mask(source[n], source[t], flow)[..., None]
                    acc += w * warp(frames[n], flow)
                    weight += w
            out[t] = acc / weight
        return np.clip(out, 0, 255).astype(np.uint8)
