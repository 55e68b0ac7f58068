"""The episode's state: plain facts only (ids, artifact refs, scores, short text), so that checkpoints
stay small and a resumed episode needs nothing but this."""

from __future__ import annotations

import operator
from typing import Annotated, Any, NotRequired, TypedDict


class EpisodeInput(TypedDict):
    episode_id: str
    clip_path: str
    clip_seed: int  # shared by every episode of the clip: one order of instructions per clip
    variant: int  # which episode of this clip (0, 1, ...)
    seed: int
    # Set when the episode is admitted (agent/quotas.py): the categories to plan, most wanted first, and
    # how many earlier episodes of the clip were admitted for each (their slot in its instruction order).
    categories: NotRequired[list[str]]
    category_rounds: NotRequired[dict[str, int]]
    clip_instructions: NotRequired[list[str]]  # planned for this clip by finished episodes: never repeated
    duplicate_of: NotRequired[str | None]  # an earlier clip with the same footage: this one is skipped
    unscreened: NotRequired[str | None]  # why the clip could not be screened for duplicates: it is not used


class Failure(TypedDict):
    node: str
    kind: str
    field: str | None
    detail: str


class EpisodeState(EpisodeInput, total=False):
    attempt: int
    memory_levels: dict[str, int]  # node -> level its tool runs at: 0 as configured, +1 per out-of-memory error
    retry_cause: str  # what made the policy decide the latest retry (the decision records it: agent/graph.py)
    rewrite_feedback: str  # with it, what the planner is told if that retry rewrites the instruction
    retry_reason: str  # the cause and what the retry changes, as the retry node recorded it (the report shows it)
    control_level: int  # times the propagator's control strength was lowered (policy.after_video_rejection)
    clip: str
    keyframe: str
    keyframe_index: int
    fps: float
    ingest: dict[str, Any]  # the measures the pre-filter reads
    caption: str
    edit: dict[str, str]  # instruction, category, target_description
    tried: list[str]  # instructions tried in this episode
    edited_keyframe: str
    depth: str | None
    depth_video: str | None
    edited_video: str
    # The latents the edited video was decoded from (tools.video_latents.HandedLatents), for the enhancer; None
    # from a propagator without them.
    edited_latents: dict[str, Any] | None
    enhanced_video: str
    # The source frames the edited video was made for, frame for frame (tools.frame_window.SourceWindow): the
    # clip, or the shorter window of it a backend made (fewer frames at a lower memory level, never stretched).
    made_for: dict[str, Any]
    verdicts: Annotated[list[dict[str, Any]], operator.add]  # every judge verdict, in order
    failure: Failure | None
    decision: str  # accepted | discarded
    reason: str
    detail: str
    sample_id: str | None


class EpisodeOutput(TypedDict, total=False):
    episode_id: str
    decision: str
    reason: str
    sample_id: str | None
