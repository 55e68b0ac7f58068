"""An HTML page of a run: totals, then every episode with its source and edited videos side by side,
the judges' scores and reasons, and the decision. Everything a model wrote is escaped."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Engine

from store.artifacts import ArtifactStore
from store.dataset import atomic_write_bytes
from store.traces import episode_trace, list_episodes, run_totals
from store.training import evaluations, training_runs

TEMPLATES = Path(__file__).parent / "templates"
LAST_OUTPUT = {
    "source": ("ingest", "clip"),
    "edited": ("enhance_temporal", "enhanced_video"),
    "keyframe": ("edit_keyframe", "edited_keyframe"),
}


def _episode_view(engine: Engine, episode_id: str, io: ArtifactStore, page_dir: Path) -> dict[str, Any]:
    trace = episode_trace(engine, episode_id)
    assert trace is not None
    e = trace.episode
    view: dict[str, Any] = {
        "id": e.id,
        "status": e.status,
        "reason": e.reason,
        "detail": e.detail,
        "clip": Path(e.clip_path).name,
        "verdicts": [],
        "instruction": None,
    }
    outputs = {c.tool: json.loads(c.output_json) for c in trace.calls if c.output_json}
    for name, (tool, field) in LAST_OUTPUT.items():
        view[name] = _artifact_link(io, outputs.get(tool, {}).get(field), page_dir)
    view["instruction"] = outputs.get("plan_instruction", {}).get("instruction")
    for event in trace.events:
        view["verdicts"] += json.loads(event.update_json).get("verdicts", []) if event.update_json != "null" else []
    return view


def _artifact_link(io: ArtifactStore, ref: str | None, page_dir: Path) -> str | None:
    return os.path.relpath(io.path(ref), page_dir) if ref else None


def _training_views(engine: Engine, io: ArtifactStore, run_id: str, page_dir: Path) -> list[dict[str, Any]]:
    """Each Editto round: its card, mean held-out scores, and every held-out edit with its verdict."""
    return [
        {
            "id": r.id,
            "status": r.status,
            "trigger": r.trigger,
            "trained_on": len(json.loads(r.train_samples_json)),
            "card": json.loads(r.card_json or "{}"),
            "scores": json.loads(r.eval_scores_json or "{}"),
            "checkpoint": r.checkpoint_dir,
            "error": r.error,
            "evaluations": [
                {
                    "sample_id": ev.sample_id,
                    "video": _artifact_link(io, ev.edited_video, page_dir),
                    "scores": json.loads(ev.scores_json or "{}"),
                    "error": ev.error,
                }
                for ev in evaluations(engine, r.id)
            ],
        }
        for r in training_runs(engine, run_id)
    ]


def write_report(engine: Engine, out: Path, run_id: str, path: Path, limit: int = 500) -> int:
    io = ArtifactStore(out, engine)
    episodes = [_episode_view(engine, e.id, io, path.parent) for e in list_episodes(engine, run_id, limit=limit)]
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        totals=run_totals(engine, run_id),
        episodes=episodes,
        rounds=_training_views(engine, io, run_id, path.parent),
    )
    atomic_write_bytes(path, html.encode())
    return len(episodes)
