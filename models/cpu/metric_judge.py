"""Metric judges for the cpu profile. Scores are 0-10 like a VLM judge's, with reasons that state the
measured number, so thresholds in config mean the same thing for every judge.

- structure_preservation: correlation of the source's and the edit's gradient-magnitude maps, at the scale
  (full size or coarser) where the edit keeps them best;
- edit_strength: mean colour change in CIELAB (did the edit really happen?);
- temporal_consistency: the edit's flow-warped frame-to-frame error against the source's own, and the frames'
  brightness against the source's from frame to frame (a flicker of the whole frame);
- edit_propagation (video): the edit holds in every frame: the coverage of the least covered frame (a style
  that fades back into the source after the key frame, an edit made on the first frames only);
- coverage: the edit does what the instruction asks, all of it and in full. The judge reads the instruction as
  the cpu editor does and makes that edit of the source frame itself (the reference); of the pixels the
  reference visibly changes (the whole named object, the subtitle's strip, most of the frame for a style), the
  share the edit changed the same way by at least half as much. A third of the object, an edit too weak to see,
  another object or another edit altogether score low; an instruction the cpu editor cannot read scores 0
  (what the judge cannot check it does not pass);
- motion_continuity (video): the edited video moves where the source moves: a frame that repeats the one
  before it while the source moves on (a stutter, a frame stretched over two) counts against it;
- region_stability: a local edit's region stays where it belongs. Text lives on the screen: in every frame
  the edited band must cover what it covers in frame 0 (intersection over union) and show the same letters
  (correlation of its gradient map with frame 0's), so a subtitle that drifts, bends or smears scores low.
  Any other local edit lives in the scene: its region must move with the source's optical flow (overlap with
  the previous frame's region moved along it). A global edit has no region to hold and scores 10.

A local edit (models.protocols.LOCAL_CATEGORIES) is held to another standard: its strength is the colour
change over what the instruction names (what the reference changes; the changed pixels where there is no
reference), and its structure score falls as the changed area spreads past
LOCAL_MAX_AREA of the frame (the rest of the frame must be left alone). A text edit's temporal consistency
is measured outside its band, which holds still on the screen while the scene's flow moves under it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import cv2
import numpy as np

from models.cpu.flow import clip_flows, warp
from models.cpu.overlay import edit_region
from models.cpu.styles import PlannedEdit, parse_edit
from models.protocols import LOCAL_CATEGORIES, SCREEN_CATEGORIES, JudgeRequest, ModelReply

STRUCTURE_WIDTHS = (160, 96)  # the coarser scales structure_preservation also looks at, in pixels of width
STRONG_EDIT_LAB = 18.0  # mean CIELAB change at which an edit counts as fully visible (score 10)
FLICKER_RATIO_ZERO = 3.0  # warped error this many times the source's own scores 0
CHANGED_LAB = 12.0  # a pixel whose CIELAB change passes this was edited (compression noise stays below)
LOCAL_MAX_AREA = 0.3  # a local edit may change this much of the frame; at twice this it scores 0
# region_stability: a text band's overlap / letters' correlation with frame 0 from 0 to 10 over this range (a
# subtitle burned in holds 0.95 or more; one carried along the scene's flow fell below 0.4), and a scene edit's
# overlap with its flow-moved previous region over the other (recolours that follow their object: 0.8-0.9).
STEADY_TEXT = (0.5, 0.95)
STEADY_SCENE = (0.4, 0.8)
# coverage: 0 at COVERED[0] of what the instruction's own edit visibly changes (a CIELAB change above VISIBLE_LAB),
# 10 at COVERED[1]; a pixel counts when the edit changed it the same way by at least REACHED of the reference.
COVERED = (0.5, 0.9)
VISIBLE_LAB = 8.0
REACHED = 0.5
REFERENCE_SEED = 0  # weather particles of the reference land elsewhere than the edit's: a few pixels, uncounted
# motion_continuity: a frame step of the edit that changes less than REPEATED of the source's own change (where
# the source changes by more than STILL levels) repeats its frame; at STUTTER_ZERO of the steps it scores 0.
REPEATED, STILL, STUTTER_ZERO = 0.05, 1.5, 0.2
# temporal_consistency: the edit's brightness against the source's swinging back and forth by FLICKER_ZERO from
# frame to frame (brightness_flicker, about a seventh) scores 0; none scores 10.
FLICKER_ZERO = 0.15


def gradient_map(rgb: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
    return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


def structure_correlation(source: np.ndarray, edited: np.ndarray) -> float:
    """The correlation of the two frames' gradient maps at the scale where the edit keeps the source's structure
    best: full size, or shrunk to STRUCTURE_WIDTHS. A style that replaces fine texture (pixel art, oil paint)
    keeps the layout at a coarser scale; a melted or blurred frame keeps it at none."""
    best = 0.0
    for width in (source.shape[1], *STRUCTURE_WIDTHS):
        if width > source.shape[1]:
            continue
        size = (width, max(8, round(source.shape[0] * width / source.shape[1])))
        a = gradient_map(cv2.resize(source, size, interpolation=cv2.INTER_AREA)).ravel()
        b = gradient_map(cv2.resize(edited, size, interpolation=cv2.INTER_AREA)).ravel()
        if a.std() > 1e-6 and b.std() > 1e-6:
            best = max(best, float(np.corrcoef(a, b)[0, 1]))
    return best


def lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)


def lab_change_map(source: np.ndarray, edited: np.ndarray) -> np.ndarray:
    return np.abs(lab(source) - lab(edited)).mean(axis=-1)


def lab_change(source: np.ndarray, edited: np.ndarray, named: np.ndarray | None = None) -> float:
    """Mean CIELAB change: over the frame, or over the pixels a local edit names (bool [H,W])."""
    change = lab_change_map(source, edited)
    if named is None:
        return float(change.mean())
    return float(change[named].mean()) if named.any() else 0.0


@dataclass(frozen=True)
class Reference:
    """What the instruction's own edit (the cpu editor's operator) changes in one source frame."""

    change: np.ndarray  # float32 [H,W,3]: CIELAB change, smoothed over a pixel or two
    visible: np.ndarray  # bool [H,W]: where it changes the frame visibly: what the instruction names


def reference_edit(source: np.ndarray, planned: PlannedEdit | None) -> Reference | None:
    """The instruction's edit of this frame, as the cpu editor makes it; None where it has nothing to apply to
    (no object of the named colour in this frame: it left the view) or no edit is read from the instruction."""
    if planned is None:
        return None
    try:
        edited = planned.apply(source, REFERENCE_SEED)
    except ValueError:
        return None
    change = smoothed(lab(edited) - lab(source))
    return Reference(change, np.linalg.norm(change, axis=-1) > VISIBLE_LAB)


def smoothed(change: np.ndarray) -> np.ndarray:
    """A change map blurred by a pixel or two: an edge a propagated style draws a pixel off still matches."""
    return cv2.GaussianBlur(change, (0, 0), max(1.0, change.shape[1] / 160))


def named_pixels(
    source: np.ndarray, edited: np.ndarray, ref: Reference | None, category: str | None
) -> np.ndarray | None:
    """The pixels of one frame a local edit should change (bool [H,W]): what the instruction's own edit visibly
    changes, or the changed pixels when the judge has no reference; None for a global edit (the whole frame)."""
    if category not in LOCAL_CATEGORIES:
        return None
    return ref.visible if ref is not None else lab_change_map(source, edited) > CHANGED_LAB


def coverage(
    source: np.ndarray, edited: np.ndarray, ref: Reference | None, planned: PlannedEdit | None
) -> tuple[float | None, str]:
    """(share, why): of the pixels the instruction's own edit visibly changes, the share the edit changed the same
    way by at least half as much. None where the reference has nothing to change in this frame."""
    if planned is None:
        return 0.0, "the instruction names no edit the cpu judge knows (it checks the cpu editor's edits)"
    if ref is None or not ref.visible.any():
        return None, f"no {planned.args[0]} object in the source" if planned.kind == "recolour" else "nothing to edit"
    change = smoothed(lab(edited) - lab(source))
    reached = (change * ref.change).sum(axis=-1) / np.maximum((ref.change**2).sum(axis=-1), 1e-6)
    share = float((reached[ref.visible] >= REACHED).mean())
    return share, f"{share:.0%} of what the instruction's edit ({planned.effect}) changes is changed alike"


def coverage_score(shares: list[tuple[float | None, str]]) -> tuple[float, str]:
    """The coverage criterion over one or more frames: the mean share of the frames where the named thing is."""
    seen = [(share, why) for share, why in shares if share is not None]
    if not seen:
        return 0.0, shares[0][1]
    mean = float(np.mean([share for share, _ in seen]))
    worst = min(seen, key=lambda sw: sw[0])[1]
    frames = f" over {len(seen)} frames; least: {worst}" if len(shares) > 1 else f": {worst}"
    return _ramp(mean, COVERED), f"covers {mean:.0%} of what the instruction names{frames}"


def repeated_steps(source: np.ndarray, edited: np.ndarray) -> tuple[float, int]:
    """(share, count) of the frame steps where the source moves on and the edit repeats its frame."""
    src = np.abs(np.diff(source.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    edit = np.abs(np.diff(edited.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    moving = src > STILL
    repeats = int((moving & (edit < REPEATED * src)).sum())
    return repeats / max(int(moving.sum()), 1), repeats


def brightness_flicker(source: np.ndarray, edited: np.ndarray) -> float:
    """How far the edit's brightness, relative to the source's, swings back and forth between frames: the root
    mean of the products of successive opposite swings (of the log ratio). A flicker swings every frame; a change
    that follows the scene (a dark edit of a scene that brightens) goes one way and counts for nothing."""
    ratio = np.log(
        (edited.reshape(len(edited), -1).mean(axis=1) + 1) / (source.reshape(len(source), -1).mean(axis=1) + 1)
    )
    swings = np.diff(ratio)
    return float(np.sqrt(np.maximum(0.0, -swings[:-1] * swings[1:]).mean())) if len(swings) > 1 else 0.0


def changed_area(source: np.ndarray, edited: np.ndarray) -> float:
    return float((lab_change_map(source, edited) > CHANGED_LAB).mean())


def flicker_ratio(
    source: np.ndarray, edited: np.ndarray, flows: list[np.ndarray], keep: np.ndarray | None = None
) -> float:
    """Mean over t of |warp(E[t-1]) - E[t]| / |warp(S[t-1]) - S[t]|, with the source's flows (clip_flows), over
    the pixels in `keep` (bool [H,W]; all when None or empty)."""
    keep = keep if keep is not None and keep.any() else None
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
    if not first.any():
        return 0.0, "frame 0 shows no edited band to hold"
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


@dataclass(frozen=True)
class FrameScores:
    """One frame's measures: its criteria (and reasons), and what the video judge aggregates over frames."""

    scores: dict[str, float]
    reasons: dict[str, str]
    covered: tuple[float | None, str]  # coverage's share of this frame (None: the named object is not in it)
    change: float | None  # CIELAB change over what the edit names; None where that is not in the frame
    reference: bool  # whether the judge read an edit from the instruction


def image_scores(
    source: np.ndarray, edited: np.ndarray, planned: PlannedEdit | None, category: str | None
) -> FrameScores:
    if source.shape != edited.shape:
        raise ValueError(f"source {source.shape} and edit {edited.shape} differ in shape")
    local = category in LOCAL_CATEGORIES
    ref = reference_edit(source, planned)
    named = named_pixels(source, edited, ref, category)
    corr, delta = structure_correlation(source, edited), lab_change(source, edited, named)
    covered = coverage(source, edited, ref, planned)
    scores = {
        "structure_preservation": _score(corr),
        "edit_strength": _score(delta / STRONG_EDIT_LAB),
        "coverage": coverage_score([covered])[0],
    }
    reasons = {
        "structure_preservation": f"gradient-map correlation with the source is {corr:.3f}",
        "edit_strength": f"mean CIELAB change is {delta:.1f} (full marks at {STRONG_EDIT_LAB})",
        "coverage": coverage_score([covered])[1],
    }
    if local:
        area = changed_area(source, edited)
        spill = float(np.clip((area - LOCAL_MAX_AREA) / LOCAL_MAX_AREA, 0.0, 1.0))
        scores["structure_preservation"] = _score(corr * (1 - spill))
        reasons["structure_preservation"] += (
            f"; a local edit changed {area:.0%} of the frame (up to {LOCAL_MAX_AREA:.0%} leaves the rest alone)"
        )
        reasons["edit_strength"] = (
            f"mean CIELAB change over what the instruction names is {delta:.1f} (full marks at {STRONG_EDIT_LAB})"
        )
    present = named is None or bool(named.any())
    return FrameScores(scores, reasons, covered, delta if present else None, planned is not None)


def edit_propagation(frames: list[FrameScores], picks: np.ndarray) -> tuple[float, str]:
    """The edit holds in every frame: the least covered frame's coverage (coverage itself is their mean). Without a
    reference (an instruction the judge cannot read), the weakest frame's change against the strongest's."""
    shares = [(f.covered[0], int(t)) for f, t in zip(frames, picks, strict=True) if f.covered[0] is not None]
    if shares and frames[0].reference:
        least, t = min(shares)
        return _ramp(least, COVERED), f"the least covered frame, {t}, has {least:.0%} of the instruction's edit"
    changes = [f.change for f in frames if f.change is not None] or [0.0]
    held = min(changes) / max(max(changes), 1e-6)
    return _score(held), f"the weakest frame changed {min(changes):.1f} CIELAB units, the strongest {max(changes):.1f}"


class MetricImageJudge:
    spec_id = "cpu-metric-image-judge-v3"  # v3: coverage; a local edit's strength over what it names
    criteria = ("structure_preservation", "edit_strength", "coverage")
    reads_prompts = False  # it measures the edit: no rubric is rendered for it, and none is in its calls' keys
    frames_shown = 0  # it measures every pixel; it shows no model anything

    def judge(self, request: JudgeRequest) -> ModelReply:
        measured = image_scores(request.source, request.edited, parse_edit(request.instruction), request.category)
        return ModelReply(json.dumps({"scores": measured.scores, "reasons": measured.reasons}))


class MetricVideoJudge:
    spec_id = "cpu-metric-video-judge-v4"  # v4: coverage, motion_continuity, brightness flicker
    frames_shown = 0  # it measures every frame; it shows no model anything
    reads_prompts = False  # it measures the edit: no rubric is rendered for it, and none is in its calls' keys
    criteria = (
        "structure_preservation",
        "edit_strength",
        "coverage",
        "temporal_consistency",
        "motion_continuity",
        "edit_propagation",
        "region_stability",
    )

    def __init__(self) -> None:
        # The source's optical flows, by the frames' hash: the edits of one clip (retries, a case folder's
        # cases) are judged against the same source, and its flows are a third of a judgement's time.
        self.flows: dict[str, list[np.ndarray]] = {}

    def source_flows(self, source: np.ndarray) -> list[np.ndarray]:
        key = hashlib.sha1(np.ascontiguousarray(source).data).hexdigest()
        if key not in self.flows:
            self.flows = {key: clip_flows(source)}  # one clip at a time: an episode's retries, a case folder's clip
        return self.flows[key]

    def judge(self, request: JudgeRequest) -> ModelReply:
        src, edit, local = request.source, request.edited, request.category in LOCAL_CATEGORIES
        if src.shape != edit.shape:
            raise ValueError(f"source {src.shape} and edit {edit.shape} differ in shape")
        picks = np.linspace(0, len(src) - 1, num=min(len(src), 5)).round().astype(int)
        planned = parse_edit(request.instruction)
        frames = [image_scores(src[t], edit[t], planned, request.category) for t in picks]
        scores = {k: round(float(np.mean([f.scores[k] for f in frames])), 2) for k in frames[0].scores}
        scores["coverage"], covered = coverage_score([f.covered for f in frames])
        flows = self.source_flows(src)
        regions = [edit_region(s, e) for s, e in zip(src, edit, strict=True)] if local else []
        text = request.category in SCREEN_CATEGORIES
        ratio = flicker_ratio(src, edit, flows, ~np.logical_or.reduce(regions) if text else None)
        jump = brightness_flicker(src, edit)
        scores["temporal_consistency"] = min(
            _score(1 - (ratio - 1) / (FLICKER_RATIO_ZERO - 1)), _score(1 - jump / FLICKER_ZERO)
        )
        repeated, repeats = repeated_steps(src, edit)
        scores["motion_continuity"] = _score(1 - repeated / STUTTER_ZERO)
        scores["edit_propagation"], propagation = edit_propagation(frames, picks)
        reasons = {
            "structure_preservation": f"mean over {len(picks)} frames of the gradient-map correlation score",
            "edit_strength": f"mean over {len(picks)} frames of the CIELAB-change score",
            "coverage": covered,
            "temporal_consistency": f"warped frame error {ratio:.2f}x the source's (0 at {FLICKER_RATIO_ZERO:g}x); "
            f"brightness against the source's swings {jump:.0%} frame to frame (0 at {FLICKER_ZERO:.0%})",
            "motion_continuity": f"{repeats} of {len(src) - 1} frame steps repeat a frame while the source moves "
            f"({repeated:.0%}; 0 at {STUTTER_ZERO:.0%})",
            "edit_propagation": propagation,
            "region_stability": "a global edit has no region to hold",
        }
        scores["region_stability"] = 10.0
        if local:
            stability = text_stability(edit, regions) if text else scene_stability(flows, regions)
            scores["region_stability"], reasons["region_stability"] = stability
        if text:
            reasons["temporal_consistency"] += " (error outside the text's band)"
        return ModelReply(json.dumps({"scores": scores, "reasons": reasons}))
