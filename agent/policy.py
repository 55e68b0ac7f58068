"""Every decision the agent makes, as pure functions of plain values. The judges score; these decide."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Retry = Literal["rewrite_instruction", "reseed", "lower_memory", "discard"]


class PolicyConfig(BaseModel, extra="forbid"):
    min_frames: int = 17  # shorter clips carry too little motion to teach temporal editing
    min_motion: float = 0.0008  # fraction of the diagonal per frame; below it a clip is a still photo
    max_cut_score: float = 0.55  # histogram distance above which consecutive frames are a scene cut
    max_attempts: int = 3  # instructions or seeds tried per episode before it is discarded
    keyframe_pass: dict[str, float] = {"structure_preservation": 4.0, "edit_strength": 2.5}
    video_pass: dict[str, float] = {
        "structure_preservation": 4.0,
        "edit_strength": 2.5,
        "temporal_consistency": 5.0,
        "edit_propagation": 8.0,
    }
    # Criteria a new seed can fix; the rest need a different instruction. The cpu backends are
    # deterministic, so there a new seed fixes nothing.
    reseed_on: list[str] = []
    reseed_on_errors: list[str] = ["timeout", "tool_failed"]
    max_memory_level: int = 2  # a step out of memory is retried at up to this many ever cheaper settings
    rewrite_on_errors: list[str] = ["unsupported_edit", "llm_schema"]
    prior_episode_device_seconds: float = 0.0  # projected cost before any episode has finished


class TrainingConfig(BaseModel, extra="forbid"):
    every: int | None = Field(None, ge=1)  # a round per N newly accepted samples (--train-every); None: by hand
    steps: int = Field(200, ge=1)  # training steps per round
    heldout_every: int = Field(5, ge=2)  # every 5th accepted sample (in order of acceptance) is never trained on
    eval_samples: int = Field(4, ge=0)  # held-out samples judged after each round (the earliest, so rounds compare)
    # How far one round moves the category shares toward Editto's weakest categories (1: all the way): half
    # keeps one noisy evaluation from swinging the mix.
    share_rate: float = Field(0.5, ge=0, le=1)


def prefilter_reason(ingest: dict[str, Any], cfg: PolicyConfig) -> str | None:
    if ingest["num_frames"] < cfg.min_frames:
        return "too_short"
    if ingest["cut_score"] > cfg.max_cut_score:
        return "scene_cut"
    if ingest["motion"] < cfg.min_motion:
        return "too_static"
    return None


def failing_criteria(scores: dict[str, float], thresholds: dict[str, float]) -> list[str]:
    """Criteria below their threshold; a criterion the judge did not score fails too."""
    return [name for name, floor in thresholds.items() if scores.get(name, -1.0) < floor]


def retry_or_discard(failing: list[str], attempt: int, cfg: PolicyConfig) -> Retry:
    if attempt + 1 >= cfg.max_attempts:
        return "discard"
    if failing and all(name in cfg.reseed_on for name in failing):
        return "reseed"
    return "rewrite_instruction"


def after_failure(kind: str, attempt: int, cfg: PolicyConfig, memory_level: int = 0) -> Retry:
    if attempt + 1 >= cfg.max_attempts:
        return "discard"
    if kind == "oom":
        return "lower_memory" if memory_level < cfg.max_memory_level else "discard"
    if kind in cfg.reseed_on_errors:
        return "reseed"
    if kind in cfg.rewrite_on_errors:
        return "rewrite_instruction"
    return "discard"


def discard_reason(state: dict[str, Any], cfg: PolicyConfig) -> tuple[str, str]:
    """(reason, detail) for a discarded episode, from the last thing that went wrong."""
    failure = state.get("failure")
    if failure:
        return f"{failure['kind']}@{failure['node']}", failure["detail"]
    if "ingest" in state and (reason := prefilter_reason(state["ingest"], cfg)):
        return reason, f"ingest measures: {state['ingest']}"
    if state.get("verdicts"):
        last = state["verdicts"][-1]
        thresholds = cfg.keyframe_pass if last["stage"] == "keyframe" else cfg.video_pass
        failing = failing_criteria(last["scores"], thresholds)
        reasons = "; ".join(f"{n}={last['scores'].get(n)}: {last['reasons'].get(n, '')}" for n in failing)
        return f"{last['stage']}_judge:{','.join(failing)}", reasons
    return "unknown", "discarded without a recorded cause"


def judge_feedback(verdict: dict[str, Any], thresholds: dict[str, float]) -> str:
    """What the planner is told when it must rewrite an instruction the judge rejected."""
    failing = failing_criteria(verdict["scores"], thresholds)
    return "\n".join(
        f"- {n}: scored {verdict['scores'].get(n)} (needs {thresholds[n]}); {verdict['reasons'].get(n, '')}"
        for n in failing
    )


def admit(spent_s: float, projected_episode_s: float, in_flight: int, budget_s: float) -> bool:
    """Start another episode only if the work in flight plus this one still fits the budget."""
    return spent_s + projected_episode_s * (in_flight + 1) <= budget_s and spent_s < budget_s


def held_out(position: int, cfg: TrainingConfig) -> bool:
    """Whether the sample accepted at `position` (0-based) is kept out of training, for evaluation. The
    first sample is, so evaluation has data from the first round; a held-out sample stays held out."""
    return position % cfg.heldout_every == 0


def should_train(accepted: int, accepted_at_last_round: int, cfg: TrainingConfig) -> bool:
    """A round of Editto training once `every` samples have been accepted since the last round was planned,
    if any of them may be trained on."""
    trainable = sum(not held_out(k, cfg) for k in range(accepted))
    return cfg.every is not None and trainable > 0 and accepted - accepted_at_last_round >= cfg.every
