"""The cpu profile's algorithms do what their names say."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.bad_inputs import moving_frames
from models.cpu.metric_judge import MetricImageJudge, flicker_ratio
from models.cpu.propagation import ExamplePropagator
from models.cpu.rule_planner import RulePlanner
from models.cpu.styles import STYLES, StyleEditor, UnsupportedEditError, parse_style
from models.cpu.temporal_filter import FlowTemporalFilter
from models.protocols import JudgeRequest, PlanRequest
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


def test_every_vocabulary_phrasing_parses_to_its_style() -> None:
    vocab, _ = PromptBook().load_data("edit_vocabulary.yaml")
    for edit in vocab["edits"]:
        for phrasing in edit["instructions"]:
            assert parse_style(phrasing) == edit["style"], phrasing


def test_unsupported_instruction_is_refused_by_name(frames: np.ndarray) -> None:
    with pytest.raises(UnsupportedEditError, match="replace the car"):
        StyleEditor().edit(frames[0], "replace the car with a horse", seed=0)


def test_rule_planner_never_repeats_an_instruction_for_a_clip() -> None:
    vocab, _ = PromptBook().load_data("edit_vocabulary.yaml")
    total = sum(len(e["instructions"]) for e in vocab["edits"])
    seen = []
    for slot in range(total):
        answer = json.loads(
            RulePlanner().plan(PlanRequest("A clip.", "", "", vocab, seen, clip_seed=3, slot=slot)).text
        )
        seen.append(answer["instruction"])
    assert len(set(seen)) == total
    with pytest.raises(ValueError, match="already used"):
        RulePlanner().plan(PlanRequest("A clip.", "", "", vocab, seen, clip_seed=3, slot=0))


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
    assert flicker_ratio(frames, smoothed) < 0.7 * flicker_ratio(frames, flicker)
    assert flicker_ratio(frames, frames) < flicker_ratio(frames, flicker)


def test_judges_score_no_edit_as_weak_and_a_real_edit_as_strong(frames: np.ndarray) -> None:
    judge = MetricImageJudge()
    same = json.loads(judge.judge(JudgeRequest(frames[0], frames[0], "", "")))["scores"]
    sepia = json.loads(judge.judge(JudgeRequest(frames[0], STYLES["sepia"].apply(frames[0]), "", "")))["scores"]
    noise = np.random.default_rng(0).integers(0, 255, frames[0].shape, dtype=np.uint8)
    scrambled = json.loads(judge.judge(JudgeRequest(frames[0], noise, "", "")))["scores"]
    assert same["edit_strength"] == 0 and sepia["edit_strength"] > 5
    assert sepia["structure_preservation"] > 8 and scrambled["structure_preservation"] < 2
