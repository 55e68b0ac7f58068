"""A screen-space overlay (a subtitle, a caption, a sign on the screen) taken from an edited key frame and
burned into every frame at the same place, as a video editor burns in a title: it belongs to the screen,
not to the scene, so it must not move with the scene's motion.

The overlay is read as a translucent layer: inside its region each frame is scaled by one gain (a darkening
strip), and the marks the gain does not explain (the letters) are drawn as the key frame has them."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CHANGED = 8.0  # mean |edited - source| over the channels above which a key-frame pixel was edited
MARK_MISS = (10.0, 40.0)  # how far from gain * source a pixel is for it to start / be fully a mark
LIT = 40.0  # a gain is measured on pixels at least this bright (a dark pixel hardly changes under a strip)
CODEC_SIGMA = 1.5  # blur under which a video codec's noise between two frames falls below CHANGED
SPECK = np.ones((3, 3), np.uint8)  # a change smaller than this is noise


def filled(mask: np.ndarray) -> np.ndarray:
    """`mask` with every hole inside it filled (the background is what the frame's border reaches)."""
    h, w = mask.shape
    outside = np.pad(mask, 1).astype(np.uint8)
    flood = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(outside, flood, (0, 0), 1)
    return (mask > 0) | (outside[1:-1, 1:-1] == 0)


def changed_pixels(source: np.ndarray, edited: np.ndarray, blur: float = 0.0) -> np.ndarray:
    src, edit = source.astype(np.float32), edited.astype(np.float32)
    if blur:
        src, edit = cv2.GaussianBlur(src, (0, 0), blur), cv2.GaussianBlur(edit, (0, 0), blur)
    return np.abs(edit - src).mean(axis=-1) > CHANGED


def edit_region(source: np.ndarray, edited: np.ndarray) -> np.ndarray:
    """Where an edit is in one frame (bool [H,W]): the changed pixels, gaps closed and holes filled, so that a
    translucent strip over dark content counts whole. A lossy codec's noise is no edit: a pixel counts only
    where the frames, blurred, differ over an area too."""
    area = cv2.morphologyEx(changed_pixels(source, edited, CODEC_SIGMA).astype(np.uint8), cv2.MORPH_OPEN, SPECK)
    changed = (changed_pixels(source, edited) & (area > 0)).astype(np.uint8)
    size = max(3, source.shape[1] // 40) | 1
    return filled(cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((size, size), np.uint8)))


@dataclass(frozen=True)
class ScreenOverlay:
    region: np.ndarray  # bool [H,W]: where the overlay is
    gain: float  # what the overlay does to what shows through it (0.35: a dark translucent strip)
    opacity: np.ndarray  # float32 [H,W,1]: 1 where the key frame's pixel is drawn as it is (a letter)
    marks: np.ndarray  # float32 [H,W,3]: the key frame's edited pixels

    @classmethod
    def fit(cls, source: np.ndarray, edited: np.ndarray) -> ScreenOverlay | None:
        """The overlay the edit added to the key frame, or None when the edit changed nothing."""
        region = edit_region(source, edited)
        if not region.any():
            return None
        src, edit = source.astype(np.float32), edited.astype(np.float32)
        lit = region & (src.mean(axis=-1) >= LIT)
        ratios = edit.mean(axis=-1)[lit] / src.mean(axis=-1)[lit] if lit.any() else np.ones(1, np.float32)
        gain = float(np.median(ratios))  # the letters are a minority of the region: the median is the strip's
        miss = np.abs(edit - gain * src).mean(axis=-1, keepdims=True)
        opacity = np.clip((miss - MARK_MISS[0]) / (MARK_MISS[1] - MARK_MISS[0]), 0.0, 1.0) * region[..., None]
        return cls(region, gain, opacity.astype(np.float32), edit)

    def burn_in(self, frame: np.ndarray) -> np.ndarray:
        """A source frame with the overlay on it: what shows through scaled by the gain, the marks drawn over."""
        through = self.gain * frame.astype(np.float32)
        inside = self.opacity * self.marks + (1 - self.opacity) * through
        return np.clip(np.where(self.region[..., None], inside, frame), 0, 255).astype(np.uint8)
