"""Measures of a source clip that tell real footage from a screen with no image structure (random noise,
a blank or flashing screen), and a perceptual fingerprint that finds the same footage re-encoded,
slightly cropped or trimmed."""

from __future__ import annotations

import cv2
import numpy as np

DHASH_SIZE = 8  # 8x8 = 64-bit difference hash per frame
FLAT_THUMBNAIL_STD = 2.0  # luma spread of the thumbnail below which a frame has no structure to hash


def _luma(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]).astype(np.float32)


def contrast(frames: np.ndarray) -> float:
    """Median over frames of the luma's standard deviation (0-255): near 0 on a blank screen."""
    return float(np.median(_luma(frames).reshape(len(frames), -1).std(axis=1)))


def neighbour_correlation(frames: np.ndarray) -> float:
    """Median over frames of the correlation of each pixel with its right and lower neighbours. Real
    images are smooth almost everywhere (0.8-1.0); random noise is not (near 0, higher after a codec's
    smoothing)."""
    values = []
    for g in _luma(frames):
        pairs = [(g[:, :-1], g[:, 1:]), (g[:-1], g[1:])]
        corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in pairs if a.std() > 1e-3 and b.std() > 1e-3]
        values.append(float(np.mean(corr)) if corr else 1.0)  # a flat frame is blank, not noise
    return float(np.median(values))


def flash_rate(frames: np.ndarray) -> float:
    """Fraction of frame steps whose mean luma jumps by more than a quarter of the range: a flashing screen."""
    means = _luma(frames).mean(axis=(1, 2))
    return float((np.abs(np.diff(means)) > 64).mean()) if len(means) > 1 else 0.0


def dhash(rgb: np.ndarray) -> int | None:
    """64-bit difference hash: is each pixel of a 9x8 thumbnail brighter than its right neighbour. None for
    a frame too flat for its bits to mean anything (every blank frame would match every other)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (DHASH_SIZE + 1, DHASH_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    if small.std() < FLAT_THUMBNAIL_STD:
        return None
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))
