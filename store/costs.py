"""What the key-frame gate saved a run: for every attempt the key-frame judge stopped before any video stage
ran, the projected cost of the video stages it did not run (propagate, enhance_temporal, judge_video).

A stage's projected cost per call is the mean charge of its calls in this run, or, before any was measured,
the run's configured prior (policy.prior_stage_device_seconds). Depth is left out: it is computed once per
clip and reused from the cache, so a gated attempt rarely saves it. Only finished episodes count."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.tables import Episode, Run, ToolCall

GATE = "judge_keyframe"
VIDEO_STAGES = ("propagate", "enhance_temporal", "judge_video")
PAST_THE_GATE = ("estimate_depth", *VIDEO_STAGES)  # any of these at an attempt means the gate let it through


@dataclass
class GateSaving:
    run_id: str
    profile: str = ""  # the run's profile: on cpu and tiny, device-seconds are CPU seconds
    gated_attempts: int = 0  # key-frame verdicts that stopped an attempt before any video stage
    gated_episodes: int = 0  # finished episodes with at least one such attempt
    discarded_at_gate: int = 0  # episodes whose last word was the key-frame judge's
    per_call: dict[str, float] = field(default_factory=dict)  # projected device-seconds per call, per stage
    measured: dict[str, bool] = field(default_factory=dict)  # True: mean of this run's charges; False: prior
    saved_device_seconds: float = 0.0
    spent_device_seconds: float = 0.0

    @property
    def saved_fraction(self) -> float:
        """Saved / (spent + saved): the share of the no-gate cost the gate avoided."""
        total = self.spent_device_seconds + self.saved_device_seconds
        return self.saved_device_seconds / total if total else 0.0


def stage_priors(run: Run | None) -> dict[str, float]:
    """policy.prior_stage_device_seconds from the run's stored config (empty for runs made before it)."""
    if run is None:
        return {}
    return dict(json.loads(run.config_json).get("policy", {}).get("prior_stage_device_seconds", {}))


def gate_saving(engine: Engine, run_id: str) -> GateSaving:
    finished = (Episode.run_id == run_id) & (Episode.status != "running")
    with Session(engine) as s:
        run = s.get(Run, run_id)
        calls = s.exec(
            select(ToolCall.episode_id, ToolCall.attempt, ToolCall.tool, ToolCall.output_json.is_not(None))  # type: ignore[union-attr]
            .join(Episode, col(Episode.id) == ToolCall.episode_id)
            .where(finished, col(ToolCall.tool).in_((GATE, *PAST_THE_GATE)))
        ).all()
        mean = dict(
            s.exec(
                select(ToolCall.tool, func.avg(ToolCall.device_seconds))
                .where(ToolCall.run_id == run_id, col(ToolCall.tool).in_(VIDEO_STAGES))
                .where(col(ToolCall.reused_call_id).is_(None))  # the calls that ran
                .group_by(ToolCall.tool)
            ).all()
        )
        spent = s.exec(
            select(func.coalesce(func.sum(ToolCall.device_seconds), 0.0)).where(ToolCall.run_id == run_id)
        ).one()
        discarded_at_gate = s.exec(
            select(func.count())
            .select_from(Episode)
            .where(finished, Episode.status == "discarded", col(Episode.reason).startswith("keyframe_judge:"))
        ).one()
    judged = {(e, a) for e, a, tool, answered in calls if tool == GATE and answered}
    went_on = {(e, a) for e, a, tool, _ in calls if tool in PAST_THE_GATE}
    gated = judged - went_on
    priors = stage_priors(run)
    per_call = {stage: float(mean.get(stage, priors.get(stage, 0.0))) for stage in VIDEO_STAGES}
    return GateSaving(
        run_id=run_id,
        profile=run.profile if run else "",
        gated_attempts=len(gated),
        gated_episodes=len({e for e, _ in gated}),
        discarded_at_gate=int(discarded_at_gate),
        per_call=per_call,
        measured={stage: stage in mean for stage in VIDEO_STAGES},
        saved_device_seconds=len(gated) * sum(per_call.values()),
        spent_device_seconds=float(spent),
    )
