"""The cpu profile's algorithms do what their names say."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from bench.bad_inputs import moving_frames
from models.cpu.flow import clip_flows
from models.cpu.metric_judge import MetricImageJudge, MetricVideoJudge, flicker_ratio
from models.cpu.propagation import ExamplePropagator
from models.cpu.rule_planner import RulePlanner, fitting_options
from models.cpu.scene_edits import most_distinct_object, parse_recolour, parse_subtitle, parse_weather
from models.cpu.styles import CPU_CATEGORIES, STYLES, StyleEditor, UnsupportedEditError, parse_style
from models.cpu.temporal_filter import FlowTemporalFilter
from models.protocols import CategoryUnfitError, JudgeRequest, PlanRequest
from prompts.loader import PromptBook


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return moving_frames(12, 96, 128)


def test_at_least_eight_global_edits_each_change_the_frame(frames: np.ndarray) -> None:
    assert len(STYLES) >= 8
    for name, spec in STYLES.items():
        out = spec.apply(frames[0])
        assert out.shape == frames[0].shape and out.dtype == np.uint8, name
        assert np.abs(out.astype(int) - frames[0]).mean() > 3, name


CAPTION = "A clip. The most distinct object is green. The bottom of the frame is plain enough for a subtitle."


def test_every_cpu_vocabulary_phrasing_reaches_its_operator() -> None:
    vocab, _ = PromptBook().load_data("edit_vocabulary.yaml")
    for category in CPU_CATEGORIES:
        options = fitting_options(vocab, category, CAPTION)
        assert options, category
        for instruction, _ in options:
            parsed = {
                "global_style": parse_style(instruction),
                "global_freeform": parse_weather(instruction) or parse_style(instruction),
                "local_attribute": parse_recolour(instruction),
                "text": parse_subtitle(instruction),
            }[category]
            assert parsed, instruction
            assert parse_recolour(instruction) is None or category == "local_attribute", instruction
    assert all(parse_recolour(i)[0] == "green" for i, _ in fitting_options(vocab, "local_attribute", CAPTION))  # type: ignore[index]


def test_a_category_the_caption_does_not_support_is_unfit() -> None:
    vocab, _ = PromptBook().load_data("edit_vocabulary.yaml")
    plain = "A clip. No single object stands out by colour."
    with pytest.raises(CategoryUnfitError, match="no local_attribute edit"):
        RulePlanner().plan(PlanRequest(plain, "", "", vocab, [], clip_seed=1, slot=0, category="local_attribute"))
    answer = json.loads(RulePlanner().plan(PlanRequest(CAPTION, "", "", vocab, [], 1, 0, category="text")).text)
    assert answer["category"] == "text" and "bottom" in answer["instruction"]


def test_unsupported_instruction_is_refused_by_name(frames: np.ndarray) -> None:
    with pytest.raises(UnsupportedEditError, match="replace the car"):
        StyleEditor().edit(frames[0], "replace the car with a horse", seed=0)


def test_rule_planner_never_repeats_an_instruction_for_a_clip() -> None:
    vocab, _ = PromptBook().load_data("edit_vocabulary.yaml")
    total = len(fitting_options(vocab, "global_style", "A clip."))
    seen = []
    for slot in range(total):
        request = PlanRequest("A clip.", "", "", vocab, seen, clip_seed=3, slot=slot, category="global_style")
        answer = json.loads(RulePlanner().plan(request).text)
        assert answer["category"] == "global_style"
        seen.append(answer["instruction"])
    assert len(set(seen)) == total
    with pytest.raises(CategoryUnfitError, match="already used"):
        RulePlanner().plan(PlanRequest("A clip.", "", "", vocab, seen, clip_seed=3, slot=0, category="global_style"))


def object_scene(n: int = 12) -> np.ndarray:
    """A grey textured background with a red square moving right: one object to recolour."""
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur((rng.random((96, 160, 3)) * 120 + 60).astype(np.uint8), (0, 0), 2)
    base = cv2.cvtColor(cv2.cvtColor(base, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    frames = np.stack([base.copy() for _ in range(n)])
    for t in range(n):
        frames[t, 30:60, 20 + 2 * t : 50 + 2 * t] = (200, 30, 30)
    return frames


def test_recolour_changes_only_the_named_object_and_the_propagator_follows_it() -> None:
    frames = object_scene()
    edited = StyleEditor().edit(frames[0], "Make the red object blue.", seed=0)
    hue = cv2.cvtColor(edited, cv2.COLOR_RGB2HSV)[40:50, 30:40, 0]
    assert 100 <= np.median(hue) < 130  # blue
    outside = np.abs(edited.astype(int) - frames[0])[:, 70:].mean()
    assert outside < 1  # the rest of the frame is left alone
    video = ExamplePropagator().propagate(frames, edited, 0, None, "", seed=0)
    last = cv2.cvtColor(video[-1], cv2.COLOR_RGB2HSV)[40:50, 50:60, 0]  # where the square moved to
    assert 100 <= np.median(last) < 130
    with pytest.raises(UnsupportedEditError, match="no green object"):
        StyleEditor().edit(frames[0], "Make the green object blue.", seed=0)


def test_a_face_is_never_the_orange_object() -> None:
    """Skin is orange or red in hue: a cpu run painted a talking head's face blue as "the orange object".
    Faces of light and dark skin beside a small orange cone: the cone is the object; without it, none."""
    frame = cv2.cvtColor(object_scene(1)[0], cv2.COLOR_RGB2GRAY)
    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)  # the grey background alone
    frame[10:70, 10:50] = (220, 170, 140)
    frame[10:70, 60:100] = (140, 90, 60)
    assert most_distinct_object(frame) is None
    with pytest.raises(UnsupportedEditError, match="no orange object"):
        StyleEditor().edit(frame, "Make the orange object blue.", seed=0)
    frame[70:90, 120:140] = (255, 120, 0)
    colour, mask = most_distinct_object(frame)  # type: ignore[misc]
    assert colour == "orange" and mask[80, 130] and not mask[40:60].any()
    edited = StyleEditor().edit(frame, "Make the orange object blue.", seed=0)
    assert np.array_equal(edited[10:60, 10:100], frame[10:60, 10:100])  # the faces are untouched


SUBTITLE = "Add the subtitle “Hello” at the bottom of the video."


def test_a_subtitle_is_burned_in_where_the_key_frame_has_it_while_the_scene_moves(frames: np.ndarray) -> None:
    edited = StyleEditor().edit(frames[0], SUBTITLE, seed=0)
    changed = np.abs(edited.astype(int) - frames[0]).mean(axis=(1, 2))
    band = int(len(changed) * 0.8)
    assert changed[band:].mean() > 20 and changed[: band - 5].max() == 0
    video = ExamplePropagator().propagate(frames, edited, 0, None, "", seed=0, category="text")
    letters = edited[band:].min(axis=-1) > 200  # the white letters
    strip = ~letters & (edited[band:].mean(axis=-1) < frames[0, band:].mean(axis=-1) - 10)  # the dark strip
    assert letters.sum() > 20 and strip.sum() > 20 * letters.sum()
    for t in range(len(frames)):
        assert np.array_equal(video[t, band:][letters], edited[band:][letters]), t  # in place, as sharp as drawn
        assert np.array_equal(video[t, : band - 5], frames[t, : band - 5]), t  # the rest is the source's
        lit = strip & (frames[t, band:].mean(axis=-1) > 60)  # what shows through the strip is darkened, as drawn
        assert np.median(video[t, band:][lit].mean(axis=-1) / frames[t, band:][lit].mean(axis=-1)) < 0.45, t


def test_the_video_judge_rejects_a_subtitle_that_slides_with_the_scene_and_says_so(frames: np.ndarray) -> None:
    edited = StyleEditor().edit(frames[0], SUBTITLE, seed=0)
    steady = ExamplePropagator().propagate(frames, edited, 0, None, "", seed=0, category="text")
    layer = edited.astype(int) - frames[0]  # the subtitle and its strip, as the key frame gained them
    sliding = np.stack([np.clip(f + np.roll(layer, (-t, 2 * t), axis=(0, 1)), 0, 255) for t, f in enumerate(frames)])
    verdicts = {
        name: json.loads(
            MetricVideoJudge().judge(JudgeRequest(frames, video.astype(np.uint8), "", SUBTITLE, "text")).text
        )
        for name, video in (("steady", steady), ("sliding", sliding))
    }
    assert verdicts["steady"]["scores"]["region_stability"] >= 8
    assert "holds its place" in verdicts["steady"]["reasons"]["region_stability"]
    assert verdicts["sliding"]["scores"]["region_stability"] < 5
    assert "drifts, warps or smears" in verdicts["sliding"]["reasons"]["region_stability"]


def test_weather_edits_change_the_whole_frame(frames: np.ndarray) -> None:
    for instruction in ("Make it snow.", "Make it rain.", "Fill the scene with thick fog."):
        out = StyleEditor().edit(frames[0], instruction, seed=1)
        assert np.abs(out.astype(int) - frames[0]).mean() > 8, instruction


def test_a_local_edit_that_spills_over_the_frame_scores_low_on_preservation() -> None:
    frames = object_scene()
    recoloured = StyleEditor().edit(frames[0], "Make the red object blue.", seed=0)
    global_edit = STYLES["sepia"].apply(frames[0])
    local = json.loads(MetricImageJudge().judge(JudgeRequest(frames[0], recoloured, "", "", "local_attribute")).text)
    spilled = json.loads(MetricImageJudge().judge(JudgeRequest(frames[0], global_edit, "", "", "local_attribute")).text)
    as_global = json.loads(MetricImageJudge().judge(JudgeRequest(frames[0], recoloured, "", "", "global_style")).text)
    assert local["scores"]["edit_strength"] > 8 and local["scores"]["structure_preservation"] > 8
    assert spilled["scores"]["structure_preservation"] < 2  # the whole frame changed
    assert as_global["scores"]["edit_strength"] < local["scores"]["edit_strength"]  # small for a global edit


def test_propagation_carries_a_colour_edit_to_every_frame(frames: np.ndarray) -> None:
    truth = np.stack([STYLES["sepia"].apply(f) for f in frames])
    out = ExamplePropagator().propagate(frames, truth[0], 0, None, "", seed=0)
    assert out.shape == frames.shape
    assert np.abs(out.astype(float) - truth).mean() < 6  # close to editing each frame by hand
    assert np.abs(frames.astype(float) - truth).mean() > 20


def test_temporal_filter_reduces_flicker(frames: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    flicker = np.clip(frames + rng.normal(0, 25, (len(frames), 1, 1, 1)), 0, 255).astype(np.uint8)
    smoothed = FlowTemporalFilter(strength=1.0).enhance(flicker, frames, "", 0)
    flows = clip_flows(frames)
    assert flicker_ratio(frames, smoothed, flows) < 0.7 * flicker_ratio(frames, flicker, flows)
    assert flicker_ratio(frames, frames, flows) < flicker_ratio(frames, flicker, flows)


def test_judges_score_no_edit_as_weak_and_a_real_edit_as_strong(frames: np.ndarray) -> None:
    judge = MetricImageJudge()
    same = json.loads(judge.judge(JudgeRequest(frames[0], frames[0], "", "")).text)["scores"]
    sepia = json.loads(judge.judge(JudgeRequest(frames[0], STYLES["sepia"].apply(frames[0]), "", "")).text)["scores"]
    noise = np.random.default_rng(0).integers(0, 255, frames[0].shape, dtype=np.uint8)
    scrambled = json.loads(judge.judge(JudgeRequest(frames[0], noise, "", "")).text)["scores"]
    assert same["edit_strength"] == 0 and sepia["edit_strength"] > 5
    assert sepia["structure_preservation"] > 8 and scrambled["structure_preservation"] < 2
