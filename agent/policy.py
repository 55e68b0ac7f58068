"""Every decision the agent makes, as pure functions of plain values. The judges score; these decide."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, NonNegativeFloat, model_validator

from agent.faults import FAULTS

Retry = Literal["rewrite_instruction", "reseed", "lower_memory", "lower_control", "discard"]
Score = Annotated[float, Field(ge=0, le=10)]  # a judge's threshold, on the judges' 0-10 scale


class CategoryPass(BaseModel, extra="forbid"):
    """One category's judge thresholds, over the policy's own, criterion by criterion."""

    keyframe_pass: dict[str, Score] | None = None
    video_pass: dict[str, Score] | None = None


class PolicyConfig(BaseModel, extra="forbid"):
    min_frames: int = Field(17, ge=1)  # shorter clips carry too little motion to teach temporal editing
    min_motion: float = Field(0.0008, ge=0)  # fraction of the diagonal per frame; below it a clip is a still photo
    # Histogram distance above which consecutive frames are a scene cut: cuts in the sample clips score 0.51-0.85,
    # motion within a shot up to 0.24 (0.55 let most of bikes.mp4's cuts through).
    max_cut_score: float = Field(0.4, ge=0, le=1)
    # A screen with no image structure teaches nothing: a blank frame has almost no contrast, random noise
    # almost no correlation between neighbouring pixels (real footage: 0.8-1.0), a flashing screen jumps
    # in brightness from frame to frame.
    min_contrast: float = Field(4.0, ge=0, le=255)  # luma standard deviation
    min_neighbour_correlation: float = Field(0.5, ge=-1, le=1)
    max_flash_rate: float = Field(0.2, ge=0, le=1)
    # Two clips are the same footage when most sampled frames of the shorter have a frame of the other
    # within a few bits of their 64-bit difference hash (re-encoding and a slight crop move a few bits).
    duplicate_max_bits: int = Field(10, ge=0, le=64)
    duplicate_min_match: float = Field(0.6, gt=0, le=1)
    # Episodes admitted this recently count toward the category mix as if accepted, whatever they become, so
    # the mix (and every instruction) is the same at any concurrency up to this; a higher concurrency widens it.
    quota_window: int = Field(16, ge=1)
    max_attempts: int = Field(3, ge=1)  # instructions or seeds tried per episode before it is discarded
    # Attempts an episode gets when judges reject it (each retry a rewrite or a new seed); None: max_attempts.
    # Below max_attempts, retries after faults (out of memory, timeouts) stay while rejected edits stop
    # sooner: bench/policy.py finds a rewrite cheaper than a fresh clip only when rewrites pass often.
    judge_attempts: int | None = Field(None, ge=1)
    # The cpu profile's metric judges (models/cpu/metric_judge.py; other profiles set their rubric's criteria).
    # edit_strength 5: a mean CIELAB change of 9, the least of the good edits of bench.judges' labelled set (a
    # colour grade of half that was "barely visible", issue 27); coverage 8: 82% of what the instruction's own
    # edit changes; motion_continuity 8: no frame may repeat the one before it while the source moves.
    keyframe_pass: dict[str, Score] = {"structure_preservation": 4.0, "edit_strength": 5.0, "coverage": 8.0}
    video_pass: dict[str, Score] = {
        "structure_preservation": 4.0,
        "edit_strength": 5.0,
        "coverage": 8.0,
        "motion_continuity": 8.0,
        "temporal_consistency": 5.0,
        "edit_propagation": 8.0,
        # a subtitle must hold its place and letters (overlap and correlation with frame 0 at least 0.815), a
        # recoloured object move with the scene (overlap with its flow-moved region at least 0.68)
        "region_stability": 7.0,
    }
    # Per edit category, thresholds over keyframe_pass and video_pass for that category's edits, criterion by
    # criterion (0 passes any score); a category not named here is held to the tables above. `judges calibrate
    # --write` fits them to labelled cases.
    category_pass: dict[str, CategoryPass] = {}
    # Criteria a new seed can fix; the rest need a different instruction. The cpu backends are
    # deterministic, so there a new seed fixes nothing.
    reseed_on: list[str] = []
    reseed_on_errors: list[str] = ["timeout", "tool_failed"]
    max_memory_level: int = Field(2, ge=0)  # a step out of memory is retried at up to this many ever cheaper settings
    # Calls of one backend in a row that find it unreachable (refused, timed out, 429/5xx after the backend's
    # own retries) before the run calls it an outage and stops, resumably: no episode is discarded for it.
    outage_after: int = Field(3, ge=1)
    # Video criteria whose failure means the propagator's control (the source's depth) fought an edit that
    # changed shape: the retry propagates the same key frame again at a lower control strength instead of
    # rewriting the instruction, up to control_retries times an instruction, each time times control_step. Empty:
    # never (the cpu propagator has no control input, and its metric judges score no shape criterion).
    lower_control_on: list[str] = []
    control_step: float = Field(0.5, gt=0, lt=1)
    control_retries: int = Field(1, ge=0)
    rewrite_on_errors: list[str] = ["unsupported_edit", "llm_schema"]
    prior_episode_device_seconds: float = Field(0.0, ge=0)  # projected cost before any episode has finished
    # Device-seconds per call of a video stage (propagate, enhance_temporal, judge_video) before the run has
    # measured one: the key-frame gate's saving is projected with these (store/costs.py).
    prior_stage_device_seconds: dict[str, NonNegativeFloat] = {}


class TrainingConfig(BaseModel, extra="forbid"):
    @model_validator(mode="before")
    @classmethod
    def eval_samples_is_gone(cls, data: Any) -> Any:
        """A run stored before issue 30 set eval_samples (a fixed size of the evaluation set); the set now
        grows to steer_min_samples per category. Said, then dropped, so such a run resumes."""
        if isinstance(data, dict) and "eval_samples" in data:
            logging.getLogger(__name__).warning(
                "training.eval_samples is no longer read: the held-out set grows until every category has "
                "training.steer_min_samples judged samples (docs/training.md)"
            )
            data = {k: v for k, v in data.items() if k != "eval_samples"}
        return data

    every: int | None = Field(None, ge=1)  # a round per N newly accepted samples (--train-every); None: by hand
    steps: int = Field(200, ge=1)  # training steps per round
    # Every 5th source clip (in order of its first accepted sample) is held out: none of its samples is trained on.
    heldout_every: int = Field(5, ge=2)
    # Held-out samples judged per category before the evaluation set stops growing and the mix is steered: one
    # noisy edit should not move the mix, and an early round with one sample should not fix the set for good.
    steer_min_samples: int = Field(2, ge=1)
    # How far one round moves the category shares toward Editto's weakest categories (1: all the way): half
    # keeps one noisy evaluation from swinging the mix.
    share_rate: float = Field(0.5, ge=0, le=1)


def prefilter_failure(ingest: dict[str, Any], cfg: PolicyConfig) -> tuple[str, str] | None:
    """(reason, the measure that decided it) for a clip the pre-filter refuses, else None."""
    checks = (  # in order: the first that fails names the clip's fault
        ("too_short", "num_frames", ingest["num_frames"] < cfg.min_frames, f"< {cfg.min_frames}"),
        ("flashing", "flash_rate", ingest.get("flash_rate", 0) > cfg.max_flash_rate, f"> {cfg.max_flash_rate}"),
        ("blank_screen", "contrast", ingest.get("contrast", 255) < cfg.min_contrast, f"< {cfg.min_contrast}"),
        (
            "noise",
            "neighbour_correlation",
            ingest.get("neighbour_correlation", 1) < cfg.min_neighbour_correlation,
            f"< {cfg.min_neighbour_correlation}",
        ),
        ("scene_cut", "cut_score", ingest["cut_score"] > cfg.max_cut_score, f"> {cfg.max_cut_score}"),
        ("too_static", "motion", ingest["motion"] < cfg.min_motion, f"< {cfg.min_motion}"),
    )
    for reason, measure, failed, limit in checks:
        if failed:
            return reason, f"{measure}={ingest.get(measure):.4g} {limit}"
    return None


Stage = Literal["keyframe", "video"]


def pass_thresholds(cfg: PolicyConfig, stage: Stage, category: str | None) -> dict[str, float]:
    """The thresholds an edit of `category` must meet at a judge `stage`: the policy's, with the category's own
    over them, criterion by criterion (a threshold of 0 passes any score)."""
    own = cfg.category_pass.get(category or "")
    base = cfg.keyframe_pass if stage == "keyframe" else cfg.video_pass
    return {**base, **(getattr(own, f"{stage}_pass", None) or {})}


def failing_criteria(scores: dict[str, float], thresholds: dict[str, float]) -> list[str]:
    """Criteria below their threshold; a criterion the judge did not score fails too."""
    return [name for name, floor in thresholds.items() if scores.get(name, -1.0) < floor]


def retry_or_discard(failing: list[str], attempt: int, cfg: PolicyConfig) -> Retry:
    attempts = cfg.max_attempts if cfg.judge_attempts is None else min(cfg.judge_attempts, cfg.max_attempts)
    if attempt + 1 >= attempts:
        return "discard"
    if failing and all(name in cfg.reseed_on for name in failing):
        return "reseed"
    return "rewrite_instruction"


def after_video_rejection(
    failing: list[str], attempt: int, cfg: PolicyConfig, control_strength: float | None, control_level: int
) -> Retry:
    """A rejected video: when the judge names a shape criterion and the control can still be lowered, lower it
    (the key frame is kept); otherwise as any rejection."""
    lowerable = bool(control_strength) and control_level < cfg.control_retries and attempt + 1 < cfg.max_attempts
    if lowerable and any(name in cfg.lower_control_on for name in failing):
        return "lower_control"
    return retry_or_discard(failing, attempt, cfg)


def control_strength(category_strength: float, control_level: int, cfg: PolicyConfig) -> float:
    """The strength of the propagator's control at this episode's level: the category's, lowered per retry."""
    return round(category_strength * cfg.control_step**control_level, 6)


def after_failure(kind: str, attempt: int, cfg: PolicyConfig, memory_level: int = 0) -> Retry:
    """A tool's failure: retried as the config says for its kind, until the attempts are spent; a failure that is
    the episode's (agent/faults.py) is not retried."""
    if FAULTS[kind][0] != "tool" or attempt + 1 >= cfg.max_attempts:
        return "discard"
    if kind == "oom":
        return "lower_memory" if memory_level < cfg.max_memory_level else "discard"
    if kind in cfg.reseed_on_errors:
        return "reseed"
    if kind in cfg.rewrite_on_errors:
        return "rewrite_instruction"
    return "discard"


def rejection(verdict: dict[str, Any], failing: list[str]) -> tuple[str, str]:
    """(reason, detail) of an episode discarded on a judge's verdict: the failing criteria, and the judge's words."""
    detail = "; ".join(f"{n}={verdict['scores'].get(n)}: {verdict['reasons'].get(n, '')}" for n in failing)
    return f"{verdict['stage']}_judge:{','.join(failing)}", detail


def retry_after_failure(failure: dict[str, Any]) -> dict[str, str]:
    """What a retry of a failed step records: its cause, as the report shows it beside the next attempt, and what
    the planner is told if the retry rewrites the instruction."""
    return {
        "retry_cause": f"{failure['node']} failed ({failure['kind']}): {failure['detail']}",
        "rewrite_feedback": f"- the {failure['node']} step failed ({failure['kind']}): {failure['detail']}",
    }


def retry_after_rejection(verdict: dict[str, Any], failing: list[str], thresholds: dict[str, float]) -> dict[str, str]:
    """The same for a judge's rejection: the criteria it failed, each with its score and bar (video judge:
    edit_propagation 3.3 < 8), and the judge's words on each for the planner."""
    scored = ", ".join(f"{n} {verdict['scores'].get(n, 'unscored')} < {thresholds[n]:g}" for n in failing)
    return {
        "retry_cause": f"{verdict['stage']} judge: {scored}",
        "rewrite_feedback": judge_feedback(verdict, failing, thresholds),
    }


def judge_feedback(verdict: dict[str, Any], failing: list[str], thresholds: dict[str, float]) -> str:
    """What the planner is told when it must rewrite an instruction the judge rejected."""
    return "\n".join(
        f"- {n}: scored {verdict['scores'].get(n)} (needs {thresholds[n]}); {verdict['reasons'].get(n, '')}"
        for n in failing
    )


def admit(spent_s: float, projected_episode_s: float, in_flight: int, budget_s: float) -> bool:
    """Start another episode only if the work in flight plus this one still fits the budget."""
    return spent_s + projected_episode_s * (in_flight + 1) <= budget_s and spent_s < budget_s


def held_out(position: int, cfg: TrainingConfig) -> bool:
    """Whether the source clip at `position` (0-based, in order of its first accepted sample) is kept out of
    training, for evaluation. The first clip is, so evaluation has data from the first round; a held-out
    clip stays held out."""
    return position % cfg.heldout_every == 0


def should_train(accepted: int, accepted_at_last_round: int, cfg: TrainingConfig) -> bool:
    """A round of Editto training once `every` samples have been accepted since the last round was planned,
    if any of them may be trained on."""
    trainable = sum(not held_out(k, cfg) for k in range(accepted))
    return cfg.every is not None and trainable > 0 and accepted - accepted_at_last_round >= cfg.every


SteeringEvaluation = Literal["with reference", "instruction alone"]


def steering_evaluation(drop_probability: float) -> SteeringEvaluation:
    """The held-out evaluation the category mix is steered by: the one that matches what the curriculum feeds
    most at the round's last step. While the edited reference frame is kept more often than dropped, Editto
    is learning to carry a given edit through the video; its instruction-alone edits are then mostly a task
    it has not been trained for, poor in every category, and steering on them chases noise."""
    return "with reference" if drop_probability < 0.5 else "instruction alone"


def grow_heldout_set(
    current: list[str], failed: set[str], heldout: list[tuple[str, str]], categories: list[str], minimum: int
) -> list[str]:
    """The next round's held-out set while it grows: the samples it has (so rounds stay comparable), and for
    each category of the mix with fewer than `minimum` that can still be judged (`failed` ones cannot), its
    next held-out samples in order of acceptance. `heldout`: (sample id, category) of every held-out sample."""
    chosen = list(current)
    category_of = dict(heldout)
    have = Counter(category_of.get(i) for i in chosen if i not in failed)
    for sample_id, category in heldout:
        if category in categories and sample_id not in chosen and have[category] < minimum:
            chosen.append(sample_id)
            have[category] += 1
    return chosen


def heldout_complete(judged: dict[str, int], categories: list[str], minimum: int) -> bool:
    """Whether every category of the mix has `minimum` judged held-out samples: the set is frozen then."""
    return all(judged.get(c, 0) >= minimum for c in categories)
