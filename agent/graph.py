"""The episode graph: one source clip becomes one kept or discarded sample. The whole flow is here."""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from agent import nodes, policy
from agent.context import RunContext
from agent.state import EpisodeInput, EpisodeOutput, EpisodeState


def build_graph(checkpointer=None) -> CompiledStateGraph:  # type: ignore[no-untyped-def]
    g = StateGraph(EpisodeState, context_schema=RunContext, input_schema=EpisodeInput, output_schema=EpisodeOutput)
    for node in (
        nodes.ingest,
        nodes.plan_instruction,
        nodes.rewrite_instruction,
        nodes.reseed,
        nodes.lower_memory,
        nodes.lower_control,
        nodes.edit_keyframe,
        nodes.judge_keyframe,
        nodes.estimate_depth,
        nodes.propagate,
        nodes.enhance_temporal,
        nodes.judge_video,
        nodes.commit,
        nodes.discard,
    ):
        g.add_node(node.__name__, node)
    g.add_edge(START, "ingest")
    g.add_conditional_edges("ingest", after_ingest)
    g.add_conditional_edges("plan_instruction", after_plan)
    g.add_conditional_edges("rewrite_instruction", after_plan)
    g.add_edge("reseed", "edit_keyframe")
    g.add_edge("lower_memory", "edit_keyframe")
    g.add_edge("lower_control", "edit_keyframe")  # the key frame's edit and verdict come back from the cache
    g.add_conditional_edges("edit_keyframe", after_edit_keyframe)
    g.add_conditional_edges("judge_keyframe", after_judge_keyframe)  # the gate: no video costs before it
    g.add_conditional_edges("estimate_depth", after_estimate_depth)
    g.add_conditional_edges("propagate", after_propagate)
    g.add_conditional_edges("enhance_temporal", after_enhance_temporal)
    g.add_conditional_edges("judge_video", after_judge_video)
    g.add_edge("commit", END)
    g.add_edge("discard", END)
    return g.compile(checkpointer=checkpointer)


Recovery = Literal["rewrite_instruction", "reseed", "lower_memory", "lower_control", "discard"]


def _recover(state: EpisodeState, runtime: Runtime[RunContext]) -> Recovery:
    failure = state["failure"]
    assert failure is not None
    cfg = runtime.context.config.policy
    level = nodes.memory_level(state, failure["node"])
    return policy.after_failure(failure["kind"], state.get("attempt", 0), cfg, level)


def after_ingest(state: EpisodeState, runtime: Runtime[RunContext]) -> Literal["plan_instruction", "discard"]:
    if state.get("failure") or state.get("duplicate_of"):
        return "discard"
    if policy.prefilter_reason(state["ingest"], runtime.context.config.policy):
        return "discard"
    return "plan_instruction"


def after_plan(state: EpisodeState, runtime: Runtime[RunContext]) -> Literal["edit_keyframe", "discard"]:
    return "discard" if state.get("failure") else "edit_keyframe"


def after_edit_keyframe(state: EpisodeState, runtime: Runtime[RunContext]) -> Literal["judge_keyframe"] | Recovery:
    return _recover(state, runtime) if state.get("failure") else "judge_keyframe"


def after_judge_keyframe(state: EpisodeState, runtime: Runtime[RunContext]) -> Literal["estimate_depth"] | Recovery:
    if state.get("failure"):
        return _recover(state, runtime)
    cfg = runtime.context.config.policy
    thresholds = policy.pass_thresholds(cfg, "keyframe", state["edit"]["category"])
    failing = policy.failing_criteria(state["verdicts"][-1]["scores"], thresholds)
    return policy.retry_or_discard(failing, state.get("attempt", 0), cfg) if failing else "estimate_depth"


def after_estimate_depth(state: EpisodeState, runtime: Runtime[RunContext]) -> Literal["propagate"] | Recovery:
    return _recover(state, runtime) if state.get("failure") else "propagate"


def after_propagate(state: EpisodeState, runtime: Runtime[RunContext]) -> Literal["enhance_temporal"] | Recovery:
    return _recover(state, runtime) if state.get("failure") else "enhance_temporal"


def after_enhance_temporal(state: EpisodeState, runtime: Runtime[RunContext]) -> Literal["judge_video"] | Recovery:
    return _recover(state, runtime) if state.get("failure") else "judge_video"


def after_judge_video(state: EpisodeState, runtime: Runtime[RunContext]) -> Literal["commit"] | Recovery:
    if state.get("failure"):
        return _recover(state, runtime)
    cfg = runtime.context.config.policy
    thresholds = policy.pass_thresholds(cfg, "video", state["edit"]["category"])
    failing = policy.failing_criteria(state["verdicts"][-1]["scores"], thresholds)
    if not failing:
        return "commit"
    strength, level = nodes.control_strength(state, runtime.context), state.get("control_level", 0)
    return policy.after_video_rejection(failing, state.get("attempt", 0), cfg, strength, level)
