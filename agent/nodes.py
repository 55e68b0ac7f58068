"""One thin function per graph node: state -> tool input -> call -> partial update. A tool's failure is raised
(a ToolError) for graph.py to decide on; nodes route nothing and write no traces (the runner and call() do)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent import policy
from agent.context import RunContext
from agent.sources import clip_name
from agent.state import EpisodeState
from store.categories import set_planned_category
from store.dataset import AcceptedSample, commit_sample, discard_episode
from store.traces import clip_outputs
from tools.base import ToolError
from tools.caption_clip import CaptionClipInput
from tools.edit_keyframe import EditKeyframeInput
from tools.enhance_temporal import EnhanceTemporalInput
from tools.estimate_depth import EstimateDepthInput
from tools.frame_window import SourceWindow
from tools.ingest import ingest_input
from tools.judge import JudgeInput
from tools.plan_instruction import PlanInstructionInput, PlanInstructionOutput, same_instruction
from tools.propagate import PropagateInput
from tools.video_latents import HandedLatents


def ingest(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    if state.get("duplicate_of") or state.get("unscreened"):  # a clip not used: nothing to decode
        return {"attempt": 0, "tried": []}
    inp = ingest_input(state["clip_path"], runtime.context.config.source_dir)
    out = runtime.context.call("ingest", inp, state, "ingest")
    measures = out.model_dump(exclude={"clip", "keyframe", "keyframe_index", "fps"})
    return {
        "attempt": 0,
        "tried": [],
        "clip": out.clip,
        "keyframe": out.keyframe,
        "keyframe_index": out.keyframe_index,
        "fps": out.fps,
        "ingest": measures,
    }


def _plan(state: EpisodeState, runtime: Runtime[RunContext], node: str, feedback: str | None) -> dict[str, Any]:
    """Plan in the first category that fits the clip, in the order admission chose; a rewrite keeps its
    category. Each category tried is its own call site, so the trace shows why one did not fit."""
    ctx = runtime.context
    caption = (
        state.get("caption") or ctx.call("caption_clip", CaptionClipInput(clip=state["clip"]), state, node).caption
    )
    # No instruction twice on one clip: what its earlier episodes were given (admission), this episode's tries.
    avoid = (*state.get("clip_instructions", []), *state.get("tried", []))
    tried_categories = [state["edit"]["category"]] if "edit" in state else state["categories"]
    for k, category in enumerate(tried_categories):
        site = node if k == 0 else f"{node}:{category}"
        try:
            plan = _ask_planner(state, ctx, site, caption, category, avoid, feedback)
            # An episode in flight beside this one may have been given the same instruction meanwhile. What
            # they were given depends on timing, so it is asked about only on a repeat, at a call site of its
            # own: the first call's input stays the same on a resume or a new run, and is reused from the cache.
            others = clip_outputs(ctx.engine, ctx.run_id, state["clip_path"], "plan_instruction", state["episode_id"])
            taken = [o["instruction"] for o in others]
            made = {o.get("effect") for o in others} - {None}  # the same edit in other words is a repeat too
            if plan.effect in made or any(same_instruction(plan.instruction, t) for t in taken):
                plan = _ask_planner(state, ctx, f"{site}:repeat", caption, category, (*avoid, *taken), feedback)
            break
        except ToolError as err:
            if err.kind != "category_unfit" or k == len(tried_categories) - 1:
                raise
    set_planned_category(ctx.engine, state["episode_id"], plan.category)
    return {"caption": caption, "edit": plan.model_dump(), "tried": [*state.get("tried", []), plan.instruction]}


def _ask_planner(
    state: EpisodeState,
    ctx: RunContext,
    node: str,
    caption: str,
    category: str,
    avoid: tuple[str, ...],
    feedback: str | None,
) -> PlanInstructionOutput:
    inp = PlanInstructionInput(
        caption=caption,
        clip=state["clip"],
        category=category,
        category_description=ctx.config.categories[category].description,
        clip_seed=state["clip_seed"],
        slot=state["category_rounds"].get(category, 0) * ctx.config.policy.max_attempts + state.get("attempt", 0),
        avoid=tuple(dict.fromkeys(avoid)),
        feedback=feedback,
        previous_instruction=state.get("edit", {}).get("instruction"),
    )
    return ctx.call("plan_instruction", inp, state, node)


def plan_instruction(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    return _plan(state, runtime, "plan_instruction", feedback=None)


def rewrite_instruction(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    feedback, why = state.get("rewrite_feedback"), f"{state.get('retry_cause')}; a new instruction"
    state = {**state, "attempt": state.get("attempt", 0) + 1, "failure": None}  # type: ignore[typeddict-item]
    # A new instruction makes a new key frame: its video starts at the category's full control strength.
    plan = _plan(state, runtime, "rewrite_instruction", feedback)
    return {**plan, "attempt": state["attempt"], "failure": None, "control_level": 0, "retry_reason": why}


def lower_memory(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    # Only the step that ran out of memory runs cheaper next time; the others' results stay cached.
    failure = state["failure"]
    assert failure is not None
    levels = dict(state.get("memory_levels", {}))
    levels[failure["node"]] = levels.get(failure["node"], 0) + 1
    why = f"{state.get('retry_cause')}; {failure['node']} again at memory level {levels[failure['node']]}"
    return {"attempt": state.get("attempt", 0) + 1, "memory_levels": levels, "failure": None, "retry_reason": why}


def memory_level(state: EpisodeState, node: str) -> int:
    return state.get("memory_levels", {}).get(node, 0)


def lower_control(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    # The video judge named a shape criterion: the source's depth fought the edit. The key frame stays (its
    # edit, verdict and depth come back from the cache); the video is made again with the depth weighing less.
    level = state.get("control_level", 0) + 1
    again = f"the same key frame, its video made again with the control lowered to level {level}"
    why = f"{state.get('retry_cause')}; {again}"
    return {"attempt": state.get("attempt", 0) + 1, "control_level": level, "failure": None, "retry_reason": why}


def control_strength(state: EpisodeState, ctx: RunContext) -> float | None:
    """The weight of the propagator's control video for this attempt: the category's, lowered per retry.
    None without a control video (a profile with no depth backend)."""
    if not state.get("depth"):
        return None
    category = ctx.config.categories[state["edit"]["category"]]
    return policy.control_strength(category.control_strength, state.get("control_level", 0), ctx.config.policy)


def reseed(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    # A fixed stride keeps reseeded attempts apart from the seeds of the clip's other episodes.
    why = f"{state.get('retry_cause')}; the same instruction with a new seed"
    return {"attempt": state.get("attempt", 0) + 1, "seed": state["seed"] + 7919, "failure": None, "retry_reason": why}


def edit_keyframe(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    out = runtime.context.call(
        "edit_keyframe",
        EditKeyframeInput(
            keyframe=state["keyframe"],
            instruction=state["edit"]["instruction"],
            seed=state["seed"],
            memory_level=memory_level(state, "edit_keyframe"),
        ),
        state,
        "edit_keyframe",
    )
    return {"edited_keyframe": out.edited_keyframe}


def _judge(
    state: EpisodeState, runtime: Runtime[RunContext], node: str, stage: str, source: str, edited: str
) -> dict[str, Any]:
    """Both judges: score the edit against the source and append the verdict (stage, attempt, scores)."""
    edit = state["edit"]
    verdict = runtime.context.call(
        node,
        JudgeInput(
            source=source,
            edited=edited,
            instruction=edit["instruction"],
            target_description=edit["target_description"],
            category=edit["category"],
        ),
        state,
        node,
    )
    return {"verdicts": [{"stage": stage, "attempt": state.get("attempt", 0), **verdict.model_dump()}]}


def judge_keyframe(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    return _judge(state, runtime, "judge_keyframe", "keyframe", state["keyframe"], state["edited_keyframe"])


def estimate_depth(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    if not runtime.context.has_tool("estimate_depth"):
        return {"depth": None, "depth_video": None}  # this profile's propagator needs no depth video
    out = runtime.context.call("estimate_depth", EstimateDepthInput(clip=state["clip"]), state, "estimate_depth")
    return {"depth": out.depth, "depth_video": out.depth_video}


def propagate(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    out = runtime.context.call(
        "propagate",
        PropagateInput(
            clip=state["clip"],
            edited_keyframe=state["edited_keyframe"],
            keyframe_index=state["keyframe_index"],
            depth=state.get("depth"),
            prompt=state["edit"]["target_description"],
            seed=state["seed"],
            memory_level=memory_level(state, "propagate"),
            control_strength=control_strength(state, runtime.context),
            category=state["edit"]["category"],
            depth_video=state.get("depth_video"),
        ),
        state,
        "propagate",
    )
    latents = out.latents.model_dump() if out.latents else None
    return {"edited_video": out.edited_video, "edited_latents": latents, "made_for": out.made_for.model_dump()}


def made_for(state: EpisodeState) -> SourceWindow:
    """The source frames the edited video was made for: as the video steps said, or, for an episode checkpointed
    before they said it, the whole clip."""
    if "made_for" in state:
        return SourceWindow(**state["made_for"])
    frames = state["ingest"]["num_frames"]
    return SourceWindow(
        clip=state["clip"],
        depth_video=state.get("depth_video"),
        keyframe_index=state["keyframe_index"],
        start=0,
        frames=frames,
        of=frames,
    )


def enhance_temporal(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    window = made_for(state)
    out = runtime.context.call(
        "enhance_temporal",
        EnhanceTemporalInput(
            video=state["edited_video"],
            clip=window.clip,
            seed=state["seed"],
            memory_level=memory_level(state, "enhance_temporal"),
            keyframe_index=window.keyframe_index,
            depth_video=window.depth_video,
            latents=HandedLatents(**state["edited_latents"]) if state.get("edited_latents") else None,
        ),
        state,
        "enhance_temporal",
    )
    return {"enhanced_video": out.enhanced_video, "made_for": out.made_for.inside(window).model_dump()}


def judge_video(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    return _judge(state, runtime, "judge_video", "video", made_for(state).clip, state["enhanced_video"])


def degraded(state: EpisodeState) -> dict[str, Any] | None:
    """What a sample's making lowered to fit in memory, and the frames it holds; None when nothing was lowered."""
    levels = {node: level for node, level in sorted(state.get("memory_levels", {}).items()) if level}
    window = made_for(state)
    if not levels and window.frames == window.of:
        return None
    return {"memory_levels": levels, "frames": window.frames, "source_frames": window.of, "start": window.start}


def commit(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    ctx = runtime.context
    attempt = state.get("attempt", 0)
    window = made_for(state)
    artifacts = {
        "source": window.clip,
        "edited": state["enhanced_video"],
        "edited_keyframe": state["edited_keyframe"],
    }
    if window.depth_video:
        artifacts["depth"] = window.depth_video
    sample = AcceptedSample(
        episode_id=state["episode_id"],
        run_id=ctx.run_id,
        source_clip=clip_name(state["clip_path"], ctx.config.source_dir),
        edit=state["edit"],
        scores={v["stage"]: v["scores"] for v in state["verdicts"] if v["attempt"] == attempt},
        seeds={"clip_seed": state["clip_seed"], "seed": state["seed"], "attempt": attempt},
        caption=state.get("caption"),
        fps=state["fps"],
        artifacts=artifacts,
        control_strength=control_strength(state, ctx),
        degraded=degraded(state),
    )
    sample_id = commit_sample(ctx.engine, ctx.io, ctx.dataset_dir, sample)
    return {"decision": "accepted", "reason": "passed", "sample_id": sample_id}


def discard(state: EpisodeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Records the reason the decision to discard came with (graph.py). An episode an earlier version
    checkpointed on its way here, before reasons came with the decision, has none to give."""
    reason = state.get("reason") or "unknown"
    detail = state.get("detail") or "discarded by an earlier version, which recorded no reason with the decision"
    category = state.get("edit", {}).get("category")
    discard_episode(runtime.context.engine, state["episode_id"], reason, detail, category)
    return {"decision": "discarded", "reason": reason, "detail": detail, "sample_id": None}
