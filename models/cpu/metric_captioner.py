"""A plain description of a clip from measurements (brightness, colour, motion, the most distinct coloured
object, a plain band for a subtitle), for the cpu profile, which has no vision-language model. The planner
reads from it whether a local edit or a subtitle fits the clip."""

from __future__ import annotations

import json

import cv2
import numpy as np

from models.cpu.flow import clip_flows, mean_motion
from models.cpu.scene_edits import colour_object, most_distinct_object, plain_band
from models.protocols import CaptionRequest, ModelReply

HUE_NAMES = (
    (15, "red"),
    (35, "orange"),
    (75, "yellow and green"),
    (95, "green"),
    (130, "cyan and blue"),
    (160, "purple"),
    (180, "red"),
)


def _hue_name(hue: float) -> str:
    return next(name for limit, name in HUE_NAMES if hue <= limit)


LASTING = 0.75  # an object to edit is in view in at least this share of the clip's sampled frames


def lasting_object(frames: np.ndarray) -> str | None:
    """The colour of the first frame's most distinct object, if that object stays in view: an edit of a sign the
    traffic hides after two frames would barely show in the video."""
    found = most_distinct_object(frames[0])
    if found is None:
        return None
    seen = sum(colour_object(f, found[0]) is not None for f in frames)
    return found[0] if seen >= LASTING * len(frames) else None


class MetricCaptioner:
    # v3: "an evenly lit", a wide or tall frame; v4: skin is no object; v5: an object is a whole object (grouped
    # stripes, not a field's patch) and stays in view
    spec_id = "cpu-metric-captioner-v5"
    reads_prompts = False  # it measures the frames: the prompt is not rendered for it
    frames_shown = 0  # it shows no model anything

    def caption(self, request: CaptionRequest) -> ModelReply:
        frames = request.frames
        hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in frames[:: max(1, len(frames) // 8)]])
        value, sat = hsv[..., 2].mean() / 255, hsv[..., 1].mean() / 255
        colourful = hsv[..., 1] > 60
        hue = float(np.median(hsv[..., 0][colourful])) if colourful.any() else 0.0
        step = max(1, len(frames) // 8)
        motion = mean_motion(clip_flows(frames[::step]), float(np.hypot(*frames.shape[1:3]))) / step
        light = "dark" if value < 0.3 else "bright" if value > 0.6 else "evenly lit"
        colour = "muted" if sat < 0.2 else f"colourful, mostly {_hue_name(hue)}"
        pace = "nearly still" if motion < 0.002 else "fast-moving" if motion > 0.01 else "gently moving"
        h, w = frames.shape[1:3]
        found = lasting_object(frames[:: max(1, len(frames) // 8)])
        obj = f" The most distinct object is {found}." if found else " No single object stands out by colour."
        band = plain_band(frames[0])
        text = f" The {band} of the frame is plain enough for a subtitle." if band else ""
        # "a landscape video" read as landscape scenery (an in-car talking head was one): say the frame's shape.
        frame = "wide" if w >= h else "tall"
        article = "An" if light[0] in "aeiou" else "A"
        caption = f"{article} {light}, {pace} scene in a {frame} frame, {colour} in tone.{obj}{text}"
        return ModelReply(json.dumps({"caption": caption}))
