"""The episode graph: one source clip becomes one kept or discarded sample. The whole flow is here: each step,
where it goes when it succeeds, and what is decided, once and with its reason, where it fails or a judge
rejects its work. Nodes (agent/nodes.py) only do the step; the decisions are policy's (agent/policy.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from agent import nodes, policy
from agent.context import RunContext
from agent.state import EpisodeInput, EpisodeOutput, EpisodeState
from tools.base import ToolError

# After a step that succeeded: the next node, and what to record with it (a discard's reason and detail).
Decision = tuple[str, dict[str, Any]]
Decide = Callable[[EpisodeState, dict[str, Any], Runtime[RunContext]], Decision]
RECOVERIES = get_args(policy.Retry)


def build_graph(checkpointer=None) -> CompiledStateGraph:  # type: ignore[no-untyped-def]
    g = StateGraph(EpisodeState, context_schema=RunContext, input_schema=EpisodeInput, output_schema=EpisodeOutput)
    add_step(g, nodes.ingest, after_ingest, ("plan_instruction", "discard"), recovers=False)
    add_step(g, nodes.plan_instruction, "edit_keyframe", recovers=False)
    add_step(g, nodes.rewrite_instruction, "edit_keyframe", recovers=False)
    add_step(g, nodes.edit_keyframe, "judge_keyframe")
    # The key-frame gate: no video costs before it.
    add_step(g, nodes.judge_keyframe, after_keyframe_verdict, ("estimate_depth", *RECOVERIES))
    add_step(g, nodes.estimate_depth, "propagate")
    add_step(g, nodes.propagate, "enhance_temporal")
    add_step(g, nodes.enhance_temporal, "judge_video")
    add_step(g, nodes.judge_video, after_video_verdict, ("commit", *RECOVERIES))
    for retry in (nodes.reseed, nodes.lower_memory, nodes.lower_control):
        g.add_node(retry.__name__, retry)
        g.add_edge(retry.__name__, "edit_keyframe")  # lower_control: the key frame's edit and verdict are cached
    g.add_node("commit", nodes.commit)
    g.add_node("discard", nodes.discard)
    g.add_edge(START, "ingest")
    g.add_edge("commit", END)
    g.add_edge("discard", END)
    return g.compile(checkpointer=checkpointer)


def add_step(
    g: StateGraph,
    node: Callable[[EpisodeState, Runtime[RunContext]], dict[str, Any]],
    then: str | Decide,
    decides: tuple[str, ...] = (),
    recovers: bool = True,
) -> None:
    """A step of the method, routed by its outcome: on success to `then`, the next node, or where the decision on
    the step's result goes (one of `decides`); when its tool fails, to the retry policy.after_failure picks for
    the failure, or (`recovers=False`: nothing to retry before there is an instruction) to discard."""
    name = node.__name__

    def run(state: EpisodeState, runtime: Runtime[RunContext]) -> Command:
        try:
            update = node(state, runtime)
        except ToolError as err:
            failure = {"node": name, "kind": err.kind, "field": err.field, "detail": err.detail}
            cfg, attempt = runtime.context.config.policy, state.get("attempt", 0)
            goto = (
                policy.after_failure(err.kind, attempt, cfg, nodes.memory_level(state, name)) if recovers else "discard"
            )
            if goto == "discard":
                why = {"reason": f"{err.kind}@{name}", "detail": err.detail}
            else:
                why = policy.retry_after_failure(failure)
            return Command(goto=goto, update={"failure": failure, **why})
        goto, why = (then, {}) if isinstance(then, str) else then(state, update, runtime)
        return Command(goto=goto, update={**update, **why})

    successes = (then,) if isinstance(then, str) else decides
    g.add_node(name, run, destinations=tuple(dict.fromkeys((*successes, *(RECOVERIES if recovers else ("discard",))))))


def after_ingest(state: EpisodeState, update: dict[str, Any], runtime: Runtime[RunContext]) -> Decision:
    if duplicate := state.get("duplicate_of"):
        return "discard", {
            "reason": f"duplicate_of:{Path(duplicate).name}",
            "detail": f"the same footage as {duplicate}",
        }
    if unscreened := state.get("unscreened"):  # a duplicate it may be: not used rather than unchecked
        return "discard", {"reason": "unscreened", "detail": unscreened}
    if refused := policy.prefilter_failure(update["ingest"], runtime.context.config.policy):
        return "discard", {"reason": refused[0], "detail": f"{refused[1]}; ingest measures: {update['ingest']}"}
    return "plan_instruction", {}


def after_keyframe_verdict(state: EpisodeState, update: dict[str, Any], runtime: Runtime[RunContext]) -> Decision:
    cfg = runtime.context.config.policy
    verdict = update["verdicts"][-1]
    thresholds = policy.pass_thresholds(cfg, "keyframe", state["edit"]["category"])
    if not (failing := policy.failing_criteria(verdict["scores"], thresholds)):
        return "estimate_depth", {}
    return rejected(policy.retry_or_discard(failing, state.get("attempt", 0), cfg), verdict, failing, thresholds)


def after_video_verdict(state: EpisodeState, update: dict[str, Any], runtime: Runtime[RunContext]) -> Decision:
    cfg = runtime.context.config.policy
    verdict = update["verdicts"][-1]
    thresholds = policy.pass_thresholds(cfg, "video", state["edit"]["category"])
    if not (failing := policy.failing_criteria(verdict["scores"], thresholds)):
        return "commit", {}
    strength, level = nodes.control_strength(state, runtime.context), state.get("control_level", 0)
    goto = policy.after_video_rejection(failing, state.get("attempt", 0), cfg, strength, level)
    return rejected(goto, verdict, failing, thresholds)


def rejected(goto: str, verdict: dict[str, Any], failing: list[str], thresholds: dict[str, float]) -> Decision:
    """A judge's rejection: the retry with its cause, or a discard with its reason."""
    if goto != "discard":
        return goto, policy.retry_after_rejection(verdict, failing, thresholds)
    reason, detail = policy.rejection(verdict, failing)
    return "discard", {"reason": reason, "detail": detail}
