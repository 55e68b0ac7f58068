"""Metric judges for the cpu profile. Scores are 0-10 like a VLM judge's, with reasons that state the
measured number, so thresholds in config mean the same thing for every judge.

- structure_preservation: correlation of the source's and the edit's gradient-magnitude maps;
- edit_strength: mean colour change in CIELAB (did the edit really happen?);
- temporal_consistency: the edit's flow-warped frame-to-frame error against the source's own;
- edit_propagation: the edit holds in every frame: the weakest frame's colour change against the strongest's,
  times one minus the spread of the frames' structure correlations (a style that fades back into the
  source after the key frame changes colour a little but structure a lot);
- region_stability: a local edit's region stays where it belongs. Text lives on the screen: in every frame
  the edited band must cover what it covers in frame 0 (intersection over union) and show the same letters
  (correlation of its gradient map with frame 0's), so a subtitle that drifts, bends or smears scores low.
  Any other local edit lives in the scene: its region must move with the source's optical flow (overlap with
  the previous frame's region moved along it). A global edit has no region to hold and scores 10.

A local edit (models.protocols.LOCAL_CATEGORIES) is held to another standard: its strength is the colour
change where the frame changed, and its structure score falls as the changed area spreads past
LOCAL_MAX_AREA of the frame (the rest of the frame must be left alone). A text edit's temporal consistency
is measured outside its band, which holds still on the screen while the scene's flow moves under it.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from models.cpu.flow import clip_flows, warp
from models.cpu.overlay import edit_region
from models.protocols import LOCAL_CATEGORIES, SCREEN_CATEGORIES, JudgeRequest, ModelReply

STRONG_EDIT_LAB = 18.0  # mean CIELAB change at which an edit counts as fully visible (score 10)
FLICKER_RATIO_ZERO = 3.0  # warped error this many times the source's own scores 0
CHANGED_LAB = 12.0  # a pixel whose CIELAB change passes this was edited (compression noise stays below)
LOCAL_MAX_AREA = 0.3  # a local edit may change this much of the frame; at twice this it scores 0
# region_stability: a text band's overlap / letters' correlation with frame 0 from 0 to 10 over this range (a
# subtitle burned in holds 0.95 or more; one carried along the scene's flow fell below 0.4), and a scene edit's
# overlap with its flow-moved previous region over the other (recolours that follow their object: 0.8-0.9).
STEADY_TEXT = (0.5, 0.95)
STEADY_SCENE = (0.4, 0.8)


def gradient_map(rgb: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
    return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


def structure_correlation(source: np.ndarray, edited: np.ndarray) -> float:
    a, b = gradient_map(source).ravel(), gradient_map(edited).ravel()
    if a.std() < 1e-6 or b.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def lab_change_map(source: np.ndarray, edited: np.ndarray) -> np.ndarray:
    a = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    b = cv2.cvtColor(edited, cv2.COLOR_RGB2LAB).astype(np.float32)
    return np.abs(a - b).mean(axis=-1)


def lab_change(source: np.ndarray, edited: np.ndarray, local: bool = False) -> float:
    """Mean CIELAB change: over the frame, or for a local edit over the pixels it changed."""
    change = lab_change_map(source, edited)
    if not local:
        return float(change.mean())
    changed = change > CHANGED_LAB
    return float(change[changed].mean()) if changed.any() else 0.0


def changed_area(source: np.ndarray, edited: np.ndarray) -> float:
    return float((lab_change_map(source, edited) > CHANGED_LAB).mean())


def flicker_ratio(
    source: np.ndarray, edited: np.ndarray, flows: list[np.ndarray], keep: np.ndarray | None = None
) -> float:
    """Mean over t of |warp(E[t-1]) - E[t]| / |warp(S[t-1]) - S[t]|, with the source's flows (clip_flows), over
    the pixels in `keep` (bool [H,W]; all when None)."""
    ratios = []
    for t, flow in enumerate(flows, start=1):
        e_src = np.abs(warp(source[t - 1], flow).astype(np.float32) - source[t]).mean(axis=-1)
        e_edit = np.abs(warp(edited[t - 1], flow).astype(np.float32) - edited[t]).mean(axis=-1)
        if keep is not None:
            e_src, e_edit = e_src[keep], e_edit[keep]
        ratios.append(float(e_edit.mean()) / max(float(e_src.mean()) if e_src.size else 0.0, 1.0))
    return float(np.mean(ratios)) if ratios else 1.0


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (1 when both are empty)."""
    union = int((a | b).sum())
    return float((a & b).sum()) / union if union else 1.0


def _ramp(x: float, span: tuple[float, float]) -> float:
    return _score((x - span[0]) / (span[1] - span[0]))


def text_stability(edited: np.ndarray, regions: list[np.ndarray]) -> tuple[float, str]:
    """A screen-space edit: each frame's band against frame 0's, by place (overlap) and by letters (gradient
    correlation inside frame 0's band)."""
    first, letters = regions[0], gradient_map(edited[0])[regions[0]]
    worst = (1.0, 1.0, 0)
    for t in range(1, len(edited)):
        place = overlap(regions[t], first)
        same = gradient_map(edited[t])[first]
        corr = float(np.corrcoef(same, letters)[0, 1]) if letters.std() > 1e-6 and same.std() > 1e-6 else 0.0
        if min(place, corr) < min(worst[:2]):
            worst = (place, corr, t)
    place, corr, t = worst
    score = _ramp(min(place, corr), STEADY_TEXT)
    verb = "holds its place" if score >= 8 else "drifts, warps or smears" if score < 5 else "wavers"
    reason = (
        f"the edited band {verb} on screen: at its worst (frame {t}) it overlaps frame 0's by {place:.2f} and its "
        f"letters correlate {corr:.2f} with frame 0's"
    )
    return score, reason


def scene_stability(flows: list[np.ndarray], regions: list[np.ndarray]) -> tuple[float, str]:
    """A scene-space local edit: each frame's region against the previous one's moved along the source's flow."""
    moved = [
        overlap(warp(regions[t - 1].astype(np.float32), flow) > 0.5, regions[t]) for t, flow in enumerate(flows, 1)
    ]
    mean = float(np.mean(moved)) if moved else 1.0
    reason = (
        f"the edited region moves with the scene: it overlaps the previous frame's, moved along the source's flow, "
        f"by {mean:.2f} on average (lowest {min(moved, default=1.0):.2f})"
    )
    return _ramp(mean, STEADY_SCENE), reason


def _score(x: float) -> float:
    return round(float(np.clip(x, 0.0, 1.0)) * 10, 2)


def image_scores(
    source: np.ndarray, edited: np.ndarray, local: bool = False
) -> tuple[dict[str, float], dict[str, str]]:
    if source.shape != edited.shape:
        raise ValueError(f"source {source.shape} and edit {edited.shape} differ in shape")
    corr, delta = structure_correlation(source, edited), lab_change(source, edited, local)
    scores = {"structure_preservation": _score(corr), "edit_strength": _score(delta / STRONG_EDIT_LAB)}
    reasons = {
        "structure_preservation": f"gradient-map correlation with the source is {corr:.3f}",
        "edit_strength": f"mean CIELAB change is {delta:.1f} (full marks at {STRONG_EDIT_LAB})",
    }
    if local:
        area = changed_area(source, edited)
        spill = float(np.clip((area - LOCAL_MAX_AREA) / LOCAL_MAX_AREA, 0.0, 1.0))
        scores["structure_preservation"] = _score(corr * (1 - spill))
        reasons["structure_preservation"] += (
            f"; a local edit changed {area:.0%} of the frame (up to {LOCAL_MAX_AREA:.0%} leaves the rest alone)"
        )
        reasons["edit_strength"] = (
            f"mean CIELAB change where the frame changed is {delta:.1f} (full marks at {STRONG_EDIT_LAB})"
        )
    return scores, reasons


def is_local(request: JudgeRequest) -> bool:
    return request.category in LOCAL_CATEGORIES


class MetricImageJudge:
    spec_id = "cpu-metric-image-judge-v2"
    criteria = ("structure_preservation", "edit_strength")
    frames_shown = 0  # it measures every pixel; it shows no model anything

    def judge(self, request: JudgeRequest) -> ModelReply:
        scores, reasons = image_scores(request.source, request.edited, is_local(request))
        return ModelReply(json.dumps({"scores": scores, "reasons": reasons}))


class MetricVideoJudge:
    spec_id = "cpu-metric-video-judge-v3"
    frames_shown = 0  # it measures every frame; it shows no model anything
    criteria = (
        "structure_preservation",
        "edit_strength",
        "temporal_consistency",
        "edit_propagation",
        "region_stability",
    )

    def judge(self, request: JudgeRequest) -> ModelReply:
        src, edit, local = request.source, request.edited, is_local(request)
        if src.shape != edit.shape:
            raise ValueError(f"source {src.shape} and edit {edit.shape} differ in shape")
        picks = np.linspace(0, len(src) - 1, num=min(len(src), 5)).round().astype(int)
        per_frame = [image_scores(src[t], edit[t], local)[0] for t in picks]
        scores = {k: round(float(np.mean([s[k] for s in per_frame])), 2) for k in per_frame[0]}
        flows = clip_flows(src)
        regions = [edit_region(s, e) for s, e in zip(src, edit, strict=True)] if local else []
        text = request.category in SCREEN_CATEGORIES
        ratio = flicker_ratio(src, edit, flows, ~np.logical_or.reduce(regions) if text else None)
        scores["temporal_consistency"] = _score(1 - (ratio - 1) / (FLICKER_RATIO_ZERO - 1))
        changes = [lab_change(src[t], edit[t], local) for t in picks]
        correlations = [structure_correlation(src[t], edit[t]) for t in picks]
        spread = max(correlations) - min(correlations)
        held = min(changes) / max(max(changes), 1e-6) * (1 - spread)
        scores["edit_propagation"] = _score(held)
        reasons = {
            "structure_preservation": f"mean over {len(picks)} frames of the gradient-map correlation score",
            "edit_strength": f"mean over {len(picks)} frames of the CIELAB-change score",
            "temporal_consistency": f"flow-warped frame error is {ratio:.2f}x the source's own "
            f"(0 at {FLICKER_RATIO_ZERO}x)",
            "edit_propagation": f"the weakest frame changed {min(changes):.1f} CIELAB units, the strongest "
            f"{max(changes):.1f}; structure correlations spread over {spread:.2f}",
            "region_stability": "a global edit has no region to hold",
        }
        scores["region_stability"] = 10.0
        if local:
            stability = text_stability(edit, regions) if text else scene_stability(flows, regions)
            scores["region_stability"], reasons["region_stability"] = stability
        if text:
            reasons["temporal_consistency"] += " (outside the text's band, which holds still on the screen)"
        return ModelReply(json.dumps({"scores": scores, "reasons": reasons}))
