"""The cpu profile's temporal enhancer: a flow-guided temporal filter that averages each frame with its
motion-compensated neighbours where the motion estimate holds, removing flicker. It holds where the source's
flow explains the source, and where the edited video moves with it: what the edit holds still on the screen
while the scene moves under it (a subtitle) matches its neighbour better unmoved than moved, and is not
dragged along the scene's flow into a ghost of itself."""

from __future__ import annotations

import numpy as np

from models.cpu.flow import backward_flow, consistency_mask, warp

STILL_TOL = 20.0  # how much better a pixel must match its neighbour unmoved than moved to count as screen-static


def moves_with_scene(prev: np.ndarray, frame: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """1 where the edited video's pixel follows the flow at least as well as it stays put, falling to 0 where it
    stays put by STILL_TOL better. A flicker (a brightness jump) costs both matches alike and is still averaged."""
    moved = np.abs(warp(prev, flow).astype(np.float32) - frame).mean(axis=-1)
    still = np.abs(prev.astype(np.float32) - frame).mean(axis=-1)
    return np.clip(1.0 - (moved - still) / STILL_TOL, 0.0, 1.0)


class FlowTemporalFilter:
    spec_id = "cpu-flow-temporal-filter-v2"

    def __init__(self, strength: float = 0.5) -> None:
        self.strength = strength  # 0 leaves the video as it is; 1 averages fully with both neighbours

    def frames_made(self, frames: int) -> int:
        return frames  # any number: each frame is filtered with its two neighbours

    def enhance(
        self, video: np.ndarray, source: np.ndarray, prompt: str, seed: int, memory_level: int = 0
    ) -> np.ndarray:  # memory_level: nothing to save but frames, and the tool hands it fewer
        frames = video.astype(np.float32)
        out = frames.copy()
        for t in range(len(frames)):
            acc, weight = frames[t].copy(), np.ones(frames.shape[1:3] + (1,), np.float32)
            for n in (t - 1, t + 1):
                if 0 <= n < len(frames):
                    flow = backward_flow(source[n], source[t])
                    holds = consistency_mask(source[n], source[t], flow) * moves_with_scene(video[n], video[t], flow)
                    w = self.strength * holds[..., None]
                    acc += w * warp(frames[n], flow)
                    weight += w
            out[t] = acc / weight
        return np.clip(out, 0, 255).astype(np.uint8)
