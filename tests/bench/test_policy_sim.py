"""The policy simulator drives the real run loop and policy: a threshold changed in the policy changes what
the simulated run does and costs."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, col, select

from bench.policy import GATE_OFF, keyframe_policy
from bench.sim import PassRates
from bench.simulate import sim_factory, simulate, stage_costs
from store.tables import NodeEvent, ToolCall

pytestmark = pytest.mark.slow
EPISODES = 24


def propagations(policy: dict) -> tuple[int, float]:  # type: ignore[type-arg]
    outcome = simulate(EPISODES, PassRates(), stage_costs(), {"judge_attempts": 1, **policy})
    assert outcome.episodes == EPISODES
    return outcome.calls.get("propagate", 0), outcome.device_seconds


def test_a_stricter_key_frame_threshold_sends_fewer_edits_on_to_video() -> None:
    without_gate, _ = propagations(GATE_OFF)
    default, default_cost = propagations(keyframe_policy(7.0))
    strict, strict_cost = propagations(keyframe_policy(9.5))
    assert without_gate == EPISODES  # no gate: every key frame is propagated
    assert without_gate > default > strict  # the same episodes, cut ever more at the gate
    assert strict_cost < default_cost


def test_rewrites_after_a_rejection_are_charged_as_new_work() -> None:
    once = simulate(EPISODES, PassRates(), stage_costs(), {"judge_attempts": 1})
    retried = simulate(EPISODES, PassRates(), stage_costs(), {"judge_attempts": 3})
    assert retried.calls["edit_keyframe"] > once.calls["edit_keyframe"] == EPISODES
    assert retried.accepted > once.accepted
    assert retried.calls["enhance_temporal"] == retried.calls["propagate"]  # no retry reused a video


def test_a_video_rejected_on_shape_is_propagated_again_without_a_new_key_frame() -> None:
    rates = PassRates(shape_conflict=0.5, control_fix=1.0)  # half the good key frames conflict; weaker depth fixes all
    lowered = simulate(EPISODES, rates, stage_costs(), {"judge_attempts": 1})  # the full profile: lower_control_on
    discarded = simulate(EPISODES, rates, stage_costs(), {"judge_attempts": 1, "lower_control_on": []})
    assert lowered.calls["edit_keyframe"] == discarded.calls["edit_keyframe"] == EPISODES  # no new key frame
    assert lowered.calls["propagate"] > discarded.calls["propagate"]
    assert lowered.accepted > discarded.accepted


def test_the_trace_shows_the_lower_control_step_and_the_halved_strength() -> None:
    with sim_factory(EPISODES, PassRates(shape_conflict=0.5, control_fix=1.0), {"judge_attempts": 1}) as factory:
        factory.execute()
        with Session(factory.engine) as s:
            lowered = {e.episode_id for e in s.exec(select(NodeEvent).where(NodeEvent.node == "lower_control"))}
            calls = s.exec(select(ToolCall).where(ToolCall.tool == "propagate", col(ToolCall.reused_call_id).is_(None)))
            strengths = [(c.episode_id, c.attempt, json.loads(c.input_json)["control_strength"]) for c in calls]
    assert lowered
    for episode, attempt, strength in strengths:  # the cpu categories' strength is 1, halved once after a shape failure
        assert strength == (0.5 if episode in lowered and attempt == 1 else 1.0), (episode, attempt, strength)
