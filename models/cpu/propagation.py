"""Example-based propagation for the cpu profile: learn the key frame's edit as a per-pixel function of
local colour and structure (an 'image analogy' fitted by ridge regression on the source/edited key-frame
pair), apply it to every frame, then stabilise along optical flow so that textures do not flicker.

The kind of edit (its category) decides how it is carried. A text edit (a subtitle, a caption, a sign on
the screen) lives on the screen: it is the overlay the key frame gained, burned into every source frame
where the key frame has it (overlay.py), and nothing else changes. Any other edit lives in the scene: what
the fit cannot explain (a recoloured object whose colour also occurs elsewhere, snowflakes) is carried as a
layer, the key frame's residual moved along the flow wherever it is consistent."""

from __future__ import annotations

import cv2
import numpy as np

from models.cpu.flow import backward_flow, consistency_mask, warp
from models.cpu.overlay import ScreenOverlay
from models.cpu.styles import CPU_CATEGORIES
from models.protocols import SCREEN_CATEGORIES

FIT_PIXELS = 40_000  # pixels sampled from the key frame for the fit; more adds time, not accuracy
RIDGE = 1e-2
RANDOM_FEATURES = 96  # random Fourier features let the linear fit learn thresholds (cartoon lines, posterising)
RFF_SCALE = 3.0
TRUST_FLOOR = 0.7  # an occlusion lowers trust in the carried residual; it never drops all of it


def pixel_features(rgb: np.ndarray) -> np.ndarray:
    """[H*W, F]: colour, its square terms, blurred colour, and luminance structure (gradient, Laplacian)."""
    x = rgb.astype(np.float32) / 255
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    sigma = max(1.0, rgb.shape[1] / 160)
    blur = cv2.GaussianBlur(x, (0, 0), sigma)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    grad = np.sqrt(gx**2 + gy**2)[..., None]
    lap = cv2.Laplacian(cv2.GaussianBlur(g, (0, 0), 1.0), cv2.CV_32F)[..., None]
    local_contrast = (g - cv2.GaussianBlur(g, (0, 0), sigma * 3))[..., None]
    feats = [
        np.ones_like(grad),
        x,
        x**2,
        x[..., [0]] * x[..., [1]],
        x[..., [1]] * x[..., [2]],
        x[..., [0]] * x[..., [2]],
        blur,
        grad,
        lap,
        local_contrast,
        grad * x.mean(-1, keepdims=True),
    ]
    return np.concatenate(feats, axis=-1).reshape(-1, sum(f.shape[-1] for f in feats))


class EditModel:
    """Ridge regression from pixel features (and random Fourier features of them) to edited colour."""

    def __init__(self, source: np.ndarray, edited: np.ndarray, seed: int) -> None:
        base = pixel_features(source)
        rng = np.random.default_rng(seed)
        self.projection = rng.normal(0, RFF_SCALE, (base.shape[1], RANDOM_FEATURES)).astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, RANDOM_FEATURES).astype(np.float32)
        idx = rng.choice(len(base), size=min(FIT_PIXELS, len(base)), replace=False)
        a = self._expand(base[idx])
        b = edited.reshape(-1, 3).astype(np.float32)[idx] / 255
        self.weights = np.linalg.solve(a.T @ a + RIDGE * np.eye(a.shape[1], dtype=np.float32), a.T @ b)

    def _expand(self, base: np.ndarray) -> np.ndarray:
        return np.concatenate([base, np.cos(base @ self.projection + self.phase)], axis=1)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        out = self._expand(pixel_features(frame)) @ self.weights
        return np.clip(out.reshape(frame.shape) * 255, 0, 255).astype(np.float32)


class ExamplePropagator:
    """VideoPropagator: reference = edited key frame, structure = the source frames themselves."""

    spec_id = "cpu-example-propagation-v3"
    categories = CPU_CATEGORIES

    def __init__(self, stabilise: float = 0.6) -> None:
        self.stabilise = stabilise  # weight of the flow-warped previous output where the flow is consistent

    def frames_made(self, frames: int) -> int:
        return frames  # any number: it carries the key frame's edit along the clip's own flow

    def propagate(
        self,
        source: np.ndarray,
        edited_keyframe: np.ndarray,
        keyframe_index: int,
        depth: np.ndarray | None,
        prompt: str,
        seed: int,
        memory_level: int = 0,  # nothing to save but frames, and the tool hands it fewer
        control_strength: float | None = None,  # structure comes from the source frames, not from a depth video
        category: str = "",
    ) -> np.ndarray:
        if category in SCREEN_CATEGORIES:
            overlay = ScreenOverlay.fit(source[keyframe_index], edited_keyframe)
            return np.stack([overlay.burn_in(frame) for frame in source]) if overlay else source.copy()
        model = EditModel(source[keyframe_index], edited_keyframe, seed)
        out = np.empty(source.shape, np.float32)
        residual = edited_keyframe.astype(np.float32) - model.apply(source[keyframe_index])
        h, w = source.shape[1:3]
        # Per frame: where each pixel was in the key frame (flows composed outward) and whether every step
        # of the way was trustworthy. The residual is pulled from the key frame in one step, never re-warped
        # frame after frame, so a subtitle or a recoloured edge stays sharp.
        # channels 0-1: offset to the key frame; channel 2: trust in the carried residual
        track = np.zeros((len(source), h, w, 3), np.float32)
        track[keyframe_index, ..., 2] = 1.0
        # Walk outward from the key frame, so each frame is stabilised against one already anchored to it.
        order = [keyframe_index, *range(keyframe_index + 1, len(source)), *range(keyframe_index - 1, -1, -1)]
        for t in order:
            edited = edited_keyframe.astype(np.float32)
            if t != keyframe_index:
                prev = t - 1 if t > keyframe_index else t + 1
                flow = backward_flow(source[prev], source[t])
                consistent = consistency_mask(source[prev], source[t], flow)
                track[t] = warp(track[prev], flow)
                track[t, ..., :2] += flow
                track[t, ..., 2] = np.maximum(track[t, ..., 2] * (consistent > 0.5), TRUST_FLOOR)
                edited = model.apply(source[t]) + warp(residual, track[t, ..., :2]) * track[t, ..., 2:]
                mask = self.stabilise * consistent[..., None]
                edited = mask * warp(out[prev], flow) + (1 - mask) * edited
            out[t] = edited
        return np.clip(out, 0, 255).astype(np.uint8)
