"""The run report: a folder that opens from disk in a browser (no server, nothing fetched from the
network) and stays quick at 10,000 episodes. index.html holds the run's totals, plots, setup and training
rounds; the episode list is drawn by report.js from data/index.js (one small row per episode, for filters
and sorting) and data/detail-NNNNN.js (every attempt, loaded a page at a time); videos link into the
run's artifacts and load only when they scroll into view. Model-written text is escaped in the page and
set as text by the script."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Engine

from store.artifacts import ArtifactStore
from store.dataset import atomic_write_bytes
from store.report_data import ReportData, report_data
from store.tables import SECONDS_PER_DAY
from store.training import evaluations, heldout_set_line

TEMPLATES = Path(__file__).parent / "templates"
CHUNK = 200  # episodes per detail file: a page of the list needs one or two of them
SUMMARY_KEYS = ("id", "status", "category", "reason", "cost_s", "clip")


@dataclass(frozen=True)
class ReportIndex:
    path: Path
    episodes: int
    plots: int
    plots_note: str  # why there are none, when there are none


def script_json(data: Any) -> str:
    """JSON that is also safe inside any HTML context: no '<' survives, so no '</script>'."""
    return json.dumps(data, ensure_ascii=True, separators=(",", ":")).replace("<", "\\u003c")


def _media(io: ArtifactStore, refs: dict[str, str | None], folder: Path) -> dict[str, str | None]:
    return {k: os.path.relpath(io.path(ref), folder) if ref else None for k, ref in refs.items()}


def _training_views(engine: Engine, data: ReportData, io: ArtifactStore, folder: Path) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "status": r.status,
            "trigger": r.trigger,
            "trained_on": len(json.loads(r.train_samples_json)),
            "card": json.loads(r.card_json or "{}"),
            "scores": json.loads(r.eval_scores_json or "{}"),
            "counts": json.loads(r.eval_counts_json or "{}"),  # how many samples each mean rests on
            "heldout_loss": r.heldout_loss,
            "scores_with_reference": json.loads(r.eval_scores_with_reference_json or "{}"),
            "counts_with_reference": json.loads(r.eval_counts_with_reference_json or "{}"),
            "heldout_loss_with_reference": r.heldout_loss_with_reference,
            "heldout_set": heldout_set_line(r),
            "checkpoint": r.checkpoint_dir,
            "error": r.error,
            "evaluations": [
                {"sample_id": ev.sample_id}
                | _media(io, {"video": ev.edited_video, "video_with_reference": ev.edited_video_with_reference}, folder)
                for ev in evaluations(engine, r.id)
            ],
        }
        for r in data.rounds
    ]


def _write_data(data: ReportData, io: ArtifactStore, folder: Path) -> None:
    policy = json.loads(data.run.config_json).get("policy", {})
    summaries = []
    for k, e in enumerate(data.episodes):
        e["media"] = _media(io, e.pop("refs"), folder)
        summaries.append({key: e[key] for key in SUMMARY_KEYS} | {"attempts": len(e["attempts"]), "chunk": k // CHUNK})
    index = {
        "run": data.run.id,  # labels are kept per run
        "episodes": summaries,
        "thresholds": {"keyframe": policy.get("keyframe_pass", {}), "video": policy.get("video_pass", {})},
    }
    atomic_write_bytes(folder / "data" / "index.js", f"window.DITTO_INDEX = {script_json(index)};\n".encode())
    clips = f"DITTO_CLIPS({script_json(data.clips)});\n"  # loaded when the reader opens the per-clip list
    atomic_write_bytes(folder / "data" / "clips.js", clips.encode())
    for stale in (folder / "data").glob("detail-*.js"):
        stale.unlink()
    for n in range(0, len(data.episodes), CHUNK):
        chunk = data.episodes[n : n + CHUNK]
        text = f"DITTO_CHUNK({n // CHUNK}, {script_json(chunk)});\n"
        atomic_write_bytes(folder / "data" / f"detail-{n // CHUNK:05d}.js", text.encode())


def _write_plots(data: ReportData, folder: Path) -> tuple[list[str], str]:
    """(plot names, a note when there are none). matplotlib is the `report` extra: without it the
    report is written without plots and says how to get them."""
    if importlib.util.find_spec("matplotlib") is None:  # report_plots imports it only when drawing
        return [], "No plots: matplotlib is not installed (pip install -e '.[report]')."
    from store.report_plots import render_plots

    svgs = render_plots(data)
    shutil.rmtree(folder / "plots", ignore_errors=True)
    for name, svg in svgs.items():
        atomic_write_bytes(folder / "plots" / f"{name}.svg", svg)
    return list(svgs), "No plots: nothing has finished yet."


def write_report(engine: Engine, out: Path, run_id: str, folder: Path) -> ReportIndex:
    io = ArtifactStore(out, engine)
    data = report_data(engine, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    plots, plots_note = _write_plots(data, folder)
    rounds = _training_views(engine, data, io, folder)
    _write_data(data, io, folder)
    for asset in ("report.js", "labels.js", "report.css"):
        shutil.copyfile(TEMPLATES / asset, folder / asset)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("index.html.j2").render(
        run=data.run,
        totals=data.totals,
        unit=data.unit,
        spent_days=data.totals.spent_device_seconds / SECONDS_PER_DAY,
        budget_days=data.run.budget_device_seconds / SECONDS_PER_DAY,
        plots=plots,
        plots_note=plots_note,
        rounds=rounds,
        backends=data.backends,
        templates=data.templates,
        categories=data.categories,
        clips=len(data.clips),
        config=json.dumps(json.loads(data.run.config_json), indent=2, sort_keys=True),
    )
    atomic_write_bytes(folder / "index.html", html.encode())
    return ReportIndex(folder / "index.html", len(data.episodes), len(plots), "" if plots else plots_note)
