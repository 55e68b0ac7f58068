"""The policy simulator drives the real run loop and policy: a threshold changed in the policy changes what
the simulated run does and costs."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, col, select

from bench.policy import GATE_OFF, keyframe_policy
from bench.sim import PassRates
from bench.simulate import sim_factory, simulate, stage_costs
from store.report_data import report_data
from store.tables import NodeEvent, ToolCall
from store.traces import latest_run

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


def test_the_report_gives_each_retry_the_reason_the_policy_retried_for() -> None:
    # The report said 'control lowered' beside every rewrite too (a rewrite resets control_level, and the report
    # read the key as the reason): each retry's reason is now the one its node recorded.
    rates = PassRates(shape_conflict=0.5, control_fix=0.0)
    with sim_factory(EPISODES, rates, {"judge_attempts": 3}) as factory:
        factory.execute()
        run = latest_run(factory.engine)
        assert run is not None
        retries = [
            a["next"] for e in report_data(factory.engine, run.id).episodes for a in e["attempts"] if "next" in a
        ]
    by_node = {
        node: [r["why"] for r in retries if r["node"] == node] for node in ("lower_control", "rewrite_instruction")
    }
    assert by_node["lower_control"] and by_node["rewrite_instruction"], retries
    for why in by_node["lower_control"]:
        assert why.startswith("video judge: ") and "< " in why and why.endswith("control lowered to level 1"), why
    for why in by_node["rewrite_instruction"]:
        assert "judge: " in why and "control" not in why and why.endswith("; a new instruction"), why
