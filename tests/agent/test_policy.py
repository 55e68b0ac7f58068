from __future__ import annotations

import pytest

from agent.policy import (
    PolicyConfig,
    admit,
    after_failure,
    discard_reason,
    failing_criteria,
    prefilter_reason,
    retry_or_discard,
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
    assert prefilter_reason(measures, CFG) == expected


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
    ("kind", "attempt", "expected"),
    [
        ("oom", 0, "reseed"),
        ("unsupported_edit", 1, "rewrite_instruction"),
        ("bad_input", 0, "discard"),
        ("oom", 2, "discard"),
    ],
)
def test_after_failure(kind: str, attempt: int, expected: str) -> None:
    assert after_failure(kind, attempt, CFG) == expected


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


def test_discard_reason_names_the_failing_criteria() -> None:
    state = {
        "verdicts": [
            {
                "stage": "video",
                "scores": {
                    "structure_preservation": 9,
                    "edit_strength": 1,
                    "temporal_consistency": 9,
                    "edit_propagation": 9,
                },
                "reasons": {"edit_strength": "mean CIELAB change is 1.0"},
            }
        ]
    }
    reason, detail = discard_reason(state, PolicyConfig())
    assert reason == "video_judge:edit_strength" and "CIELAB change is 1.0" in detail
    failure = {"failure": {"node": "propagate", "kind": "oom", "field": None, "detail": "CUDA out of memory"}}
    assert discard_reason(failure, PolicyConfig()) == ("oom@propagate", "CUDA out of memory")
