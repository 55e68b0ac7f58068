"""Dense optical flow (Farneback) and the measures built on it: motion, cuts, warping."""

from __future__ import annotations

import functools

import cv2
import numpy as np

FLOW_MAX_SIDE = 256  # flow on a small copy: motion statistics and warps need shape, not detail


def gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def backward_flow(prev_rgb: np.ndarray, next_rgb: np.ndarray) -> np.ndarray:
    """For each pixel of next, where it was in prev (float32 [H,W,2]), at full size."""
    h, w = next_rgb.shape[:2]
    scale = min(1.0, FLOW_MAX_SIDE / max(h, w))
    size = (max(8, int(w * scale)), max(8, int(h * scale)))
    a = cv2.resize(gray(next_rgb), size, interpolation=cv2.INTER_AREA)
    b = cv2.resize(gray(prev_rgb), size, interpolation=cv2.INTER_AREA)
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    if size != (w, h):
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / scale
    return flow.astype(np.float32)


@functools.lru_cache(maxsize=8)
def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's own coordinates, built once per frame size (every warp of a clip needs them)."""
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid_x.flags.writeable = grid_y.flags.writeable = False
    return grid_x, grid_y


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Pull `image` (a frame at t-1) into frame t along a backward flow."""
    grid_x, grid_y = pixel_grid(*flow.shape[:2])
    return cv2.remap(
        image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def clip_flows(frames: np.ndarray) -> list[np.ndarray]:
    """Backward flows between consecutive frames: flows[t-1] maps frame t back to frame t-1."""
    return [backward_flow(frames[t - 1], frames[t]) for t in range(1, len(frames))]


def mean_motion(flows: list[np.ndarray], frame_diag: float) -> float:
    """Mean flow magnitude per frame, as a fraction of the frame diagonal (size-independent)."""
    if not flows:
        return 0.0
    return float(np.mean([np.linalg.norm(f, axis=-1).mean() for f in flows]) / frame_diag)


def cut_scores(frames: np.ndarray) -> np.ndarray:
    """Colour-histogram distance (Bhattacharyya, 0..1) between each frame and the next; cuts score high."""
    hists = []
    for rgb in frames:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        h = cv2.calcHist([hsv], [0, 1], None, [32, 32], [0, 180, 0, 256])
        hists.append(cv2.normalize(h, h).astype(np.float32))
    scores = [cv2.compareHist(hists[t - 1], hists[t], cv2.HISTCMP_BHATTACHARYYA) for t in range(1, len(hists))]
    return np.array(scores, dtype=np.float64)


def max_cut_score(frames: np.ndarray) -> float:
    """The largest of cut_scores: a clip with a cut scores high."""
    return float(cut_scores(frames).max(initial=0.0))


def first_shot_window(scores: np.ndarray, length: int, cut: float) -> int:
    """The first frame from which `length` frames follow one another with no step scoring above `cut` (a shot
    boundary); 0 when there is no such stretch."""
    bounds = np.flatnonzero(scores > cut)  # a cut between frame b and b + 1
    start = 0
    for b in bounds:
        if b + 1 - start >= length:
            break
        start = int(b) + 1
    return start if start + length <= len(scores) + 1 else 0


def consistency_mask(prev_rgb: np.ndarray, next_rgb: np.ndarray, flow: np.ndarray, tol: float = 20.0) -> np.ndarray:
    """1 where the warped previous source frame matches the next one (the flow is trustworthy), else 0..1."""
    err = np.abs(warp(prev_rgb, flow).astype(np.float32) - next_rgb.astype(np.float32)).mean(axis=-1)
    return np.clip(1.0 - err / tol, 0.0, 1.0)
