"""What the report shows, read from the record in a few bulk queries (a run of 10,000 episodes reads in
seconds): each episode with every attempt, its verdicts and why the next attempt happened, its cost and
videos; and the run's config, backends, templates, budget and training rounds."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.report_diversity import InstructionStats, by_category, by_clip
from store.tables import Episode, NodeEvent, Run, ToolCall, TrainingRun, device_unit
from store.traces import RunTotals, run_totals
from store.training import training_runs

RETRY_NODES = ("rewrite_instruction", "reseed", "lower_memory", "lower_control")
VIDEO_OUTPUTS = {  # what the report links, by the tool and output field that made it (the last call wins)
    "source": ("ingest", "clip"),
    "edited": ("enhance_temporal", "enhanced_video"),
    "keyframe": ("edit_keyframe", "edited_keyframe"),
}


def media_refs(outputs: dict[str, dict[str, Any]]) -> dict[str, str | None]:
    """The videos and key frame an episode's card shows. The source is the frames the edited video was made
    for (a shorter run of the clip after an out-of-memory retry), so the two play side by side frame for frame."""
    refs = {name: outputs.get(tool, {}).get(out) for name, (tool, out) in VIDEO_OUTPUTS.items()}
    made_for = outputs.get("enhance_temporal", {}).get("made_for") or {}
    return {**refs, "source": made_for.get("clip") or refs["source"]}


@dataclass
class ReportData:
    engine: Engine
    run: Run
    totals: RunTotals
    unit: str  # GPU, or CPU on the cpu and tiny profiles
    episodes: list[dict[str, Any]]  # run order
    backends: dict[str, str]  # tool -> backend
    templates: list[dict[str, str]]  # name, origin, sha256 of every template the run rendered
    rounds: list[TrainingRun] = field(default_factory=list)
    categories: list[InstructionStats] = field(default_factory=list)  # the instructions' variety per category
    clips: list[dict[str, Any]] = field(default_factory=list)  # each clip's instructions, least varied first


def recorded_before(node: str, update: dict[str, Any], attempt: dict[str, Any], feedback: dict[int, str]) -> str:
    """Why a retry ran, for a run recorded before the retry nodes said so themselves (retry_reason)."""
    if node == "lower_control":
        return f"the video judge named a shape criterion: control lowered to level {update['control_level']}"
    failure = attempt["failure"]
    return feedback.get(update["attempt"]) or (
        f"{failure['node']} failed ({failure['kind']}): {failure['detail']}" if failure else ""
    )


def attempts_of(updates: list[tuple[str, dict[str, Any]]], feedback: dict[int, str]) -> list[dict[str, Any]]:
    """Split an episode's node updates into attempts: what was tried, what the judges said, what failed,
    and which retry followed and why (the reason the retry node recorded: the policy's own)."""
    attempts: list[dict[str, Any]] = [{"attempt": 0, "instruction": None, "verdicts": [], "failure": None}]
    for node, update in updates:
        current = attempts[-1]
        if node in RETRY_NODES and update.get("attempt", current["attempt"]) > current["attempt"]:
            current["next"] = {
                "node": node,
                "why": update.get("retry_reason") or recorded_before(node, update, current, feedback),
            }
            attempts.append({"attempt": update["attempt"], "instruction": None, "verdicts": [], "failure": None})
            current = attempts[-1]
        if update.get("edit"):
            current["instruction"] = update["edit"].get("instruction")
        current["verdicts"] += update.get("verdicts", [])
        if update.get("failure"):
            current["failure"] = update["failure"]
    return attempts


def _calls_by_episode(s: Session, run_id: str) -> dict[str, list[Any]]:
    rows = s.exec(
        select(
            ToolCall.episode_id,
            ToolCall.node,
            ToolCall.tool,
            ToolCall.attempt,
            ToolCall.input_json,
            ToolCall.output_json,
            ToolCall.device_seconds,
            ToolCall.reused_call_id,
        )
        .join(Episode, col(Episode.id) == col(ToolCall.episode_id))
        .where(Episode.run_id == run_id)
        .order_by(col(ToolCall.id))
    )
    found: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        found[row.episode_id].append(row)
    return found


def _updates_by_episode(s: Session, run_id: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    rows = s.exec(
        select(NodeEvent.episode_id, NodeEvent.node, NodeEvent.update_json)
        .join(Episode, col(Episode.id) == col(NodeEvent.episode_id))
        .where(Episode.run_id == run_id)
        .order_by(col(NodeEvent.episode_id), col(NodeEvent.seq))
    )
    found: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for episode_id, node, update_json in rows:
        found[episode_id].append((node, json.loads(update_json) or {}))
    return found


def episode_view(e: Episode, calls: list[Any], updates: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    outputs = {c.tool: json.loads(c.output_json) for c in calls if c.output_json}
    feedback = {
        c.attempt: json.loads(c.input_json).get("feedback") or ""
        for c in calls
        if c.tool == "plan_instruction" and c.node == "rewrite_instruction"
    }
    attempts = attempts_of(updates, feedback)
    instruction = next((a["instruction"] for a in reversed(attempts) if a["instruction"]), None)
    return {
        "id": e.id,
        "index": e.index,
        "clip": e.clip_path.rsplit("/", 1)[-1],
        "status": e.status,
        "reason": e.reason,
        "detail": e.detail,
        "category": e.planned_category or e.category or outputs.get("plan_instruction", {}).get("category"),
        "instruction": instruction,
        "target_description": outputs.get("plan_instruction", {}).get("target_description"),
        "cost_s": round(sum(c.device_seconds for c in calls if c.reused_call_id is None), 3),
        "attempts": attempts,
        "finished_at": e.finished_at.isoformat() if e.finished_at else None,
        "refs": media_refs(outputs),
    }


def _templates(s: Session, run_id: str) -> list[dict[str, str]]:
    """Streamed: the prompts column holds rendered text, too much to load at once on a large run."""
    found: dict[tuple[str, str], str] = {}
    rows = s.exec(
        select(ToolCall.prompts_json)
        .join(Episode, col(Episode.id) == col(ToolCall.episode_id))
        .where(Episode.run_id == run_id, ToolCall.prompts_json != "[]")
        .execution_options(yield_per=500)
    )
    for prompts_json in rows:
        for p in json.loads(prompts_json):
            found[(p["name"], p["sha256"])] = p["origin"]
    return [{"name": n, "sha256": h, "origin": o} for (n, h), o in sorted(found.items())]


def report_data(engine: Engine, run_id: str) -> ReportData:
    with Session(engine) as s:
        run = s.get(Run, run_id)
        if run is None:
            raise ValueError(f"no run {run_id!r}")
        episodes = list(s.exec(select(Episode).where(Episode.run_id == run_id).order_by(col(Episode.index))).all())
        calls, updates = _calls_by_episode(s, run_id), _updates_by_episode(s, run_id)
        backends = dict(
            s.exec(
                select(ToolCall.tool, ToolCall.backend)
                .join(Episode, col(Episode.id) == col(ToolCall.episode_id))
                .where(Episode.run_id == run_id)
                .distinct()
            ).all()
        )
        templates = _templates(s, run_id)
    views = [episode_view(e, calls.get(e.id, []), updates.get(e.id, [])) for e in episodes]
    return ReportData(
        engine=engine,
        run=run,
        totals=run_totals(engine, run_id),
        unit=device_unit(run.profile),
        episodes=views,
        backends=backends,
        templates=templates,
        rounds=training_runs(engine, run_id),
        categories=by_category(views),
        clips=by_clip([(e.clip_path, view) for e, view in zip(episodes, views, strict=True)]),
    )
