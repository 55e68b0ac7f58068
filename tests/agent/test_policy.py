from __future__ import annotations

from types import SimpleNamespace

import pytest

from agent import policy
from agent.config import ConfigError, load_config
from agent.graph import after_keyframe_verdict
from agent.policy import (
    PolicyConfig,
    TrainingConfig,
    admit,
    after_failure,
    after_video_rejection,
    control_strength,
    failing_criteria,
    held_out,
    pass_thresholds,
    prefilter_failure,
    rejection,
    retry_or_discard,
    should_train,
)

CFG = PolicyConfig(
    min_frames=9,
    min_motion=0.001,
    max_cut_score=0.5,
    max_attempts=3,
    reseed_on=["temporal_consistency", "visual_quality"],
)


@pytest.mark.parametrize(
    ("measures", "expected"),
    [
        ({"num_frames": 17, "cut_score": 0.1, "motion": 0.01}, None),
        ({"num_frames": 5, "cut_score": 0.1, "motion": 0.01}, "too_short"),
        ({"num_frames": 17, "cut_score": 0.9, "motion": 0.01}, "scene_cut"),
        ({"num_frames": 17, "cut_score": 0.1, "motion": 0.0001}, "too_static"),
    ],
)
def test_prefilter(measures: dict, expected: str | None) -> None:
    refused = prefilter_failure(measures, CFG)
    assert (refused[0] if refused else None) == expected


def test_unscored_criterion_fails() -> None:
    assert failing_criteria({"a": 9.0}, {"a": 5.0, "b": 1.0}) == ["b"]


@pytest.mark.parametrize(
    ("failing", "attempt", "expected"),
    [
        (["edit_strength"], 0, "rewrite_instruction"),
        (["temporal_consistency"], 0, "reseed"),
        (["temporal_consistency", "edit_strength"], 1, "rewrite_instruction"),
        (["temporal_consistency"], 2, "discard"),  # the third attempt was the last
    ],
)
def test_retry_or_discard(failing: list[str], attempt: int, expected: str) -> None:
    assert retry_or_discard(failing, attempt, CFG) == expected


@pytest.mark.parametrize(
    ("failing", "strength", "level", "attempt", "expected"),
    [
        (["shape_fidelity"], 1.0, 0, 0, "lower_control"),
        (["shape_fidelity", "instruction_fidelity"], 0.6, 0, 0, "lower_control"),  # the depth may undo the edit
        (["shape_fidelity"], 0.5, 1, 1, "discard"),  # lowered once already: control_retries is 1
        (["shape_fidelity"], 0.0, 0, 0, "discard"),  # no control left to lower
        (["shape_fidelity"], None, 0, 0, "discard"),  # no control video at all
        (["safety"], 1.0, 0, 0, "discard"),  # not the control's fault: judge_attempts is 1
        (["shape_fidelity"], 1.0, 0, 2, "discard"),  # the last attempt was spent
    ],
)
def test_a_video_rejected_on_shape_is_made_again_with_weaker_control(
    failing: list[str], strength: float | None, level: int, attempt: int, expected: str
) -> None:
    cfg = CFG.model_copy(update={"judge_attempts": 1, "lower_control_on": ["shape_fidelity"]})
    assert after_video_rejection(failing, attempt, cfg, strength, level) == expected
    unset = CFG.model_copy(update={"judge_attempts": 1})  # the default: never (the cpu profile has no control)
    assert after_video_rejection(failing, attempt, unset, strength, level) == "discard"


def test_the_control_strength_is_the_categorys_lowered_by_a_step_per_retry() -> None:
    assert [control_strength(0.6, level, CFG) for level in range(3)] == [0.6, 0.3, 0.15]
    assert control_strength(1.0, 1, CFG.model_copy(update={"control_step": 0.8})) == 0.8


def test_judge_attempts_stop_rejected_edits_but_not_retries_after_faults() -> None:
    cfg = CFG.model_copy(update={"judge_attempts": 1})
    assert retry_or_discard(["edit_strength"], 0, cfg) == "discard"
    assert retry_or_discard(["temporal_consistency"], 0, cfg) == "discard"
    assert after_failure("oom", 0, cfg) == "lower_memory"
    assert after_failure("timeout", 1, cfg) == "reseed"


@pytest.mark.parametrize(
    ("kind", "attempt", "memory_level", "expected"),
    [
        ("oom", 0, 0, "lower_memory"),
        ("oom", 1, 1, "lower_memory"),
        ("oom", 1, 2, "discard"),  # as cheap as configured allows: give up
        ("timeout", 0, 0, "reseed"),
        ("unsupported_edit", 1, 0, "rewrite_instruction"),
        ("bad_input", 0, 0, "discard"),
        ("oom", 2, 0, "discard"),  # out of attempts
    ],
)
def test_after_failure(kind: str, attempt: int, memory_level: int, expected: str) -> None:
    assert after_failure(kind, attempt, CFG, memory_level) == expected


@pytest.mark.parametrize(
    ("spent", "projected", "in_flight", "budget", "expected"),
    [
        (0, 0, 0, 10, True),
        (8, 1, 1, 10, True),
        (8, 1, 2, 10, False),
        (10, 0, 0, 10, False),
        (9, 2, 0, 10, False),
    ],
)
def test_admit(spent: float, projected: float, in_flight: int, budget: float, expected: bool) -> None:
    assert admit(spent, projected, in_flight, budget) is expected


def test_a_rejection_names_the_failing_criteria_and_the_judges_words() -> None:
    scores = {
        "structure_preservation": 9,
        "edit_strength": 1,
        "coverage": 9,
        "motion_continuity": 10,
        "temporal_consistency": 9,
        "edit_propagation": 9,
        "region_stability": 10,
    }
    verdict = {"stage": "video", "scores": scores, "reasons": {"edit_strength": "mean CIELAB change is 1.0"}}
    reason, detail = rejection(verdict, failing_criteria(scores, PolicyConfig().video_pass))
    assert reason == "video_judge:edit_strength" and "CIELAB change is 1.0" in detail


def test_training_starts_every_n_newly_accepted_samples() -> None:
    cfg = TrainingConfig(every=3, heldout_every=2)
    due = [should_train(accepted, 0, cfg) for accepted in range(6)]
    assert due == [False, False, False, True, True, True]
    assert not should_train(5, 3, cfg) and should_train(6, 3, cfg)  # counted from the last round
    assert should_train(9, 3, cfg)  # several finished at once: one round, over all of them
    assert not should_train(10, 0, TrainingConfig(every=None))  # off unless asked
    # the first sample is held out: with one accepted sample there is nothing to train on yet
    assert not should_train(1, 0, TrainingConfig(every=1)) and should_train(2, 0, TrainingConfig(every=1))


def test_held_out_samples_stay_held_out_as_data_grows() -> None:
    cfg = TrainingConfig(heldout_every=4)
    assert [k for k in range(10) if held_out(k, cfg)] == [0, 4, 8]


def test_training_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="training.every"):
        load_config("cpu", None, {"training": {"every": 0}})
    with pytest.raises(ConfigError, match="training.heldout_every"):
        load_config("cpu", None, {"training": {"heldout_every": 1}})
    with pytest.raises(ConfigError, match="backends.editto"):
        load_config("cpu", None, {"training": {"every": 2}, "backends": {"editto": None}})


@pytest.mark.parametrize(
    ("drop", "steered_by"),
    [(0.0, "with reference"), (0.49, "with reference"), (0.5, "instruction alone"), (1.0, "instruction alone")],
)
def test_the_evaluation_that_steers_is_the_one_the_curriculum_feeds_most(drop: float, steered_by: str) -> None:
    assert policy.steering_evaluation(drop) == steered_by


HELD_OUT = [("s1", "style"), ("s2", "text"), ("s3", "style"), ("s4", "style"), ("s5", "text"), ("s6", "off")]


@pytest.mark.parametrize(
    ("current", "failed", "grown"),
    [
        ([], set(), ["s1", "s2", "s3", "s5"]),  # the first two of each category of the mix, in order
        (["s3"], set(), ["s3", "s1", "s2", "s5"]),  # what the set has stays, first
        (["s1", "s3"], {"s1"}, ["s1", "s3", "s2", "s4", "s5"]),  # a failed one stays but does not count
        (["s1", "s2", "s3", "s5"], set(), ["s1", "s2", "s3", "s5"]),  # complete: nothing to add
    ],
)
def test_the_heldout_set_grows_to_the_minimum_of_each_category(
    current: list[str], failed: set[str], grown: list[str]
) -> None:
    assert policy.grow_heldout_set(current, failed, HELD_OUT, ["style", "text"], 2) == grown


@pytest.mark.parametrize(
    ("judged", "complete"),
    [({"style": 2, "text": 2}, True), ({"style": 3, "text": 1}, False), ({"style": 2}, False), ({}, False)],
)
def test_the_heldout_set_is_complete_when_every_category_has_its_minimum(
    judged: dict[str, int], complete: bool
) -> None:
    assert policy.heldout_complete(judged, ["style", "text"], 2) is complete


def test_a_run_stored_with_eval_samples_still_loads_and_says_it_is_not_read(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="agent.policy"):
        assert TrainingConfig.model_validate({"eval_samples": 4, "steps": 3}).steps == 3
    assert "eval_samples is no longer read" in caplog.text


def test_a_categorys_own_thresholds_go_over_the_policys_and_decide_its_episodes() -> None:
    cfg = PolicyConfig(
        keyframe_pass={"edit_strength": 2.5},
        video_pass={"edit_strength": 2.5, "coverage": 8},
        category_pass={"text": {"video_pass": {"coverage": 9.5, "edit_strength": 0}}},
    )
    assert pass_thresholds(cfg, "video", "text") == {"edit_strength": 0, "coverage": 9.5}  # 0: any strength passes
    assert pass_thresholds(cfg, "keyframe", "text") == {"edit_strength": 2.5}  # no key-frame table: the policy's
    assert pass_thresholds(cfg, "video", "global_style") == cfg.video_pass


def test_the_gate_decides_by_the_categorys_thresholds_and_the_discard_records_its_reason() -> None:
    cfg = PolicyConfig(
        max_attempts=1,  # the first rejection discards
        keyframe_pass={"edit_strength": 2.5},
        category_pass={"text": {"keyframe_pass": {"coverage": 9.5, "edit_strength": 0}}},
    )
    runtime = SimpleNamespace(context=SimpleNamespace(config=SimpleNamespace(policy=cfg)))
    verdict = {"stage": "keyframe", "scores": {"edit_strength": 1, "coverage": 9}, "reasons": {}}
    for category, reason in (("text", "keyframe_judge:coverage"), ("global_style", "keyframe_judge:edit_strength")):
        state = {"edit": {"category": category}, "attempt": 0}
        goto, why = after_keyframe_verdict(state, {"verdicts": [verdict]}, runtime)  # type: ignore[arg-type]
        assert (goto, why["reason"]) == ("discard", reason)
    # A retry carries its cause, and the planner's feedback, from the same decision.
    runtime.context.config.policy = cfg.model_copy(update={"max_attempts": 3})
    goto, why = after_keyframe_verdict({"edit": {"category": "text"}}, {"verdicts": [verdict]}, runtime)  # type: ignore[arg-type]
    assert goto == "rewrite_instruction" and why["retry_cause"] == "keyframe judge: coverage 9 < 9.5"
    assert why["rewrite_feedback"].startswith("- coverage: scored 9 (needs 9.5)")


def test_thresholds_for_a_category_the_taxonomy_lacks_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"policy.category_pass names weather_only, not a category"):
        load_config("cpu", None, {"policy": {"category_pass": {"weather_only": {"video_pass": {}}}}})
    with pytest.raises(ConfigError, match=r"policy.category_pass.text.video_threshold"):
        load_config("cpu", None, {"policy": {"category_pass": {"text": {"video_threshold": {}}}}})
