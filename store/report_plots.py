"""The report's plots, drawn with matplotlib (imported only here, when a report is written) to SVG.
A plot is a function of ReportData returning a Figure, or None when the run has nothing to show for it;
adding one is that function and its line in PLOTS."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from store.categories import category_figures, share_history
from store.report_data import ReportData

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SVG_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "ditto", "font.size": 9}  # text stays text; stable ids


def new_figure(title: str, ncols: int = 1, width: float = 5.0) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure  # no pyplot: no global figure state, safe off the main thread

    fig = Figure(figsize=(width * ncols if ncols > 1 else width, 3.0), layout="constrained")
    axes = fig.subplots(1, ncols)
    fig.suptitle(title)
    return fig, axes


def finished(data: ReportData) -> list[dict[str, Any]]:
    return [e for e in data.episodes if e["status"] in ("accepted", "discarded")]


def by_key(episodes: list[dict[str, Any]], key: Callable[[dict[str, Any]], str]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in episodes:
        groups[key(e)].append(e)
    return dict(sorted(groups.items()))


def acceptance_and_cost(data: ReportData, groups: dict[str, list[dict[str, Any]]], title: str, xlabel: str) -> Figure:
    fig, (left, right) = new_figure(title, ncols=2, width=4.2)
    names = list(groups)
    rate = [sum(e["status"] == "accepted" for e in g) / len(g) for g in groups.values()]
    per = [
        sum(e["cost_s"] for e in g) / 60 / max(1, sum(e["status"] == "accepted" for e in g)) for g in groups.values()
    ]
    left.bar(names, rate, color="#3b7d4f")
    left.set(ylabel="accepted / finished", ylim=(0, 1), xlabel=xlabel)
    right.bar(names, per, color="#8a5a2b")
    right.set(ylabel=f"{data.unit}-minutes per accepted sample", xlabel=xlabel)
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=30)
    return fig


def acceptance_by_category(data: ReportData) -> Figure | None:
    groups = by_key(finished(data), lambda e: e["category"] or "(none)")
    return acceptance_and_cost(data, groups, "By edit category", "category") if groups else None


def acceptance_by_attempt(data: ReportData) -> Figure | None:
    groups = by_key(finished(data), lambda e: f"{len(e['attempts'])}")
    return acceptance_and_cost(data, groups, "By attempts used", "attempts") if groups else None


def device_seconds_by_tool(data: ReportData) -> Figure | None:
    spent = sorted(data.totals.device_seconds_by_tool.items(), key=lambda kv: kv[1])
    if not spent:
        return None
    fig, ax = new_figure(f"{data.unit}-seconds by tool")
    ax.barh([k for k, _ in spent], [v for _, v in spent], color="#4a6fa5")
    ax.set(xlabel=f"{data.unit}-seconds")
    return fig


def minutes_per_accepted_over_run(data: ReportData) -> Figure | None:
    done = sorted((e for e in finished(data) if e["finished_at"]), key=lambda e: e["finished_at"])
    xs, ys, cost, accepted = [], [], 0.0, 0
    for k, e in enumerate(done, start=1):
        cost, accepted = cost + e["cost_s"], accepted + (e["status"] == "accepted")
        if accepted:
            xs.append(k)
            ys.append(cost / 60 / accepted)
    if not xs:
        return None
    fig, ax = new_figure(f"{data.unit}-minutes per accepted sample over the run")
    ax.plot(xs, ys, color="#8a5a2b")
    ax.set(xlabel="episodes finished", ylabel=f"{data.unit}-minutes / accepted", ylim=(0, None))
    return fig


def score_histograms(data: ReportData) -> Figure | None:
    scores: dict[str, list[float]] = defaultdict(list)
    for e in data.episodes:
        for a in e["attempts"]:
            for v in a["verdicts"]:
                for name, score in v["scores"].items():
                    scores[f"{v['stage']}: {name}"].append(score)
    if not scores:
        return None
    fig, axes = new_figure("Judge scores, every attempt", ncols=len(scores), width=2.4)
    for ax, (name, values) in zip(axes if len(scores) > 1 else [axes], sorted(scores.items()), strict=True):
        ax.hist(values, bins=10, range=(0, 10), color="#4a6fa5")
        ax.set_title(name, fontsize=8)
        ax.set(xlabel="score")
    return fig


def heldout_scores_by_round(data: ReportData) -> Figure | None:
    rounds = [(r.index, json.loads(r.eval_scores_json)) for r in data.rounds if r.eval_scores_json]
    if not rounds:
        return None
    return lines_by_round("Editto's held-out scores across training rounds", rounds, "mean judge score", 10)


def judge_and_attempts_by_category(data: ReportData) -> Figure | None:
    rows = [r for r in category_figures(data.engine, data.run.id) if r.episodes]
    if not rows:
        return None
    fig, (left, right) = new_figure("Per edit category", ncols=2, width=4.2)
    names = [r.category for r in rows]
    left.bar(names, [sum(r.video_scores.values()) / len(r.video_scores) if r.video_scores else 0 for r in rows])
    left.set(ylabel="mean video-judge score, accepted", ylim=(0, 10), xlabel="category")
    right.bar(names, [r.mean_attempts or 0 for r in rows], color="#8a5a2b")
    right.set(ylabel="attempts per episode", xlabel="category")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=30)
    return fig


def category_shares_by_round(data: ReportData) -> Figure | None:
    history = [(k, shares) for k, (_, _, shares) in enumerate(share_history(data.engine, data.run.id), 1) if shares]
    if not history:
        return None
    title = "Category shares after each training round (toward what Editto edits worst)"
    return lines_by_round(title, history, "target share", None)


def lines_by_round(title: str, rounds: list[tuple[int, dict[str, float]]], ylabel: str, top: float | None) -> Figure:
    """One line per name across training rounds, from (round, {name: value}) pairs."""
    fig, ax = new_figure(title)
    for name in sorted({k for _, values in rounds for k in values}):
        points = [(i, values[name]) for i, values in rounds if name in values]
        ax.plot([i for i, _ in points], [v for _, v in points], marker="o", label=name)
    ax.set(xlabel="training round", ylabel=ylabel, ylim=(0, top))
    ax.legend(fontsize=7)
    return fig


PLOTS: list[Callable[[ReportData], Figure | None]] = [
    acceptance_by_category,
    acceptance_by_attempt,
    device_seconds_by_tool,
    minutes_per_accepted_over_run,
    score_histograms,
    heldout_scores_by_round,
    judge_and_attempts_by_category,
    category_shares_by_round,
]


def render_plots(data: ReportData) -> dict[str, bytes]:
    """name -> SVG bytes of every plot with something to show."""
    from matplotlib import rc_context

    svgs = {}
    with rc_context(SVG_STYLE):
        for plot in PLOTS:
            fig = plot(data)
            if fig is not None:
                buf = io.BytesIO()
                fig.savefig(buf, format="svg", metadata={"Date": None})
                svgs[plot.__name__] = buf.getvalue()
    return svgs
