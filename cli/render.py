"""Rich renderings of the store's records: backends, run summary, training rounds, traces, progress."""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.padding import Padding
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from agent.calibration import CategoryFit, Confusion
    from agent.config import RunConfig
    from agent.judging import CaseVerdict
    from agent.quotas import CategorySpec
    from agent.runner import RunResult
    from prompts.loader import PromptBook
    from store.categories import CategoryFigures
    from store.costs import GateSaving
    from store.tables import HeldoutEvaluation, ToolCall, TrainingRun
    from store.traces import EpisodeRow, EpisodeTrace, RunTotals
    from tools.base import Tool

console = Console()
STATUS_COLOURS = {"accepted": "green", "discarded": "red"}


def error_line(message: str) -> None:
    # Messages quote paths and extras: no markup. One logical line, never hard-wrapped, so it can be grepped.
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def backend_table(toolkit: dict[str, Tool]) -> Table:
    table = Table(title="backends in use", show_header=True, header_style="bold")
    table.add_column("tool")
    table.add_column("backend")
    for name, tool in toolkit.items():
        table.add_row(name, tool.backend_id)
    return table


def category_status_table(
    categories: dict[str, CategorySpec], status: dict[str, str], shares: dict[str, float]
) -> Table:
    """The taxonomy as configured: which categories will be planned, their share, and why the others will not."""
    table = Table(title="edit categories", show_header=True, header_style="bold")
    for col in ("category", "planned", "share", "target (min-max)", "why not"):
        table.add_column(col, overflow="fold")
    for name, spec in categories.items():
        on = not status[name]
        table.add_row(
            name,
            "[green]yes[/]" if on else "[red]no[/]",
            f"{shares[name]:.0%}" if on else "",
            f"{spec.target:g} ({spec.min_share:g}-{spec.max_share:g})",
            escape(status[name]),
        )
    return table


def category_figures_table(rows: list[CategoryFigures], unit: str, of: str | None = None) -> Table:
    """Per edit category: episodes, acceptance, attempts, cost per accepted sample and mean judge scores. Short
    headers, no vertical rules, and whole words in each cell: it fits an 80-column terminal. `of`: whose
    episodes they are (a run, and the filters that chose them)."""
    title = f"{of}: by edit category" if of else "by edit category"
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("category", no_wrap=True)
    for col in ("eps.", "acc.", "rate", "tries", "s/acc.", "judge"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("weakest criterion")  # wraps between words: a criterion's name is shown with spaces
    table.caption = (
        f"eps.: episodes; acc.: accepted; rate: accepted of finished; tries: attempts per episode; "
        f"s/acc.: {unit}-seconds per accepted sample; judge: mean video score"
    )
    for r in rows:
        scores = r.video_scores
        weakest = min(scores, key=scores.__getitem__) if scores else None
        table.add_row(
            r.category,
            str(r.episodes),
            str(r.accepted),
            f"{r.acceptance_rate:.0%}" if r.acceptance_rate is not None else "-",
            f"{r.mean_attempts:.2f}" if r.mean_attempts is not None else "-",
            f"{r.device_seconds_per_accepted:.2f}" if r.device_seconds_per_accepted is not None else "-",
            f"{sum(scores.values()) / len(scores):.2f}" if scores else "-",
            f"{weakest.replace('_', ' ')} {scores[weakest]:g}" if weakest else "-",
        )
    return table


def per_accepted(total: float, accepted: int) -> str:
    """A figure per accepted sample, or a dash when nothing was accepted (never 'nan')."""
    return f"{total / accepted:.3f}" if accepted else "- (no accepted sample)"


def gate_rows(table: Table, saving: GateSaving, unit: str) -> None:
    """The key-frame gate's saving as rows of a two-column table."""
    sources = ", ".join(
        f"{stage} {seconds:.2f} s ({'measured' if saving.measured[stage] else 'prior'})"
        for stage, seconds in saving.per_call.items()
    )
    table.add_row("key-frame gate: attempts stopped", f"{saving.gated_attempts} (in {saving.gated_episodes} episodes)")
    table.add_row("key-frame gate: episodes discarded", str(saving.discarded_at_gate))
    table.add_row(
        f"key-frame gate: {unit}-seconds saved",
        f"{saving.saved_device_seconds:.2f} ({saving.saved_fraction:.0%} of the cost without the gate)",
    )
    table.add_row("  projected per video call", sources)


def gate_table(saving: GateSaving, unit: str) -> Table:
    table = Table(title=f"run {saving.run_id}: what the key-frame gate saved", show_header=False)
    table.add_column("what", style="bold", overflow="fold")
    table.add_column("value", overflow="fold")
    gate_rows(table, saving, unit)
    return table


def summary_table(result: RunResult, unit: str, saving: GateSaving | None = None) -> Table:
    from store.tables import SECONDS_PER_DAY

    t = result.totals
    table = Table(title=f"run {t.run_id}: {result.status}", show_header=False)
    table.add_column("what", style="bold", overflow="fold")  # words wrap; a path or id is folded, never cut
    table.add_column("value", overflow="fold")
    table.add_row("clips seen", str(t.clips_seen))
    table.add_row("episodes", str(t.episodes))
    table.add_row("accepted", str(t.accepted))
    table.add_row("discarded", str(t.discarded))
    for reason, n in sorted(t.discarded_by_reason.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  discarded: {escape(readable_reason(reason))}", str(n))
    for tool, seconds in sorted(t.device_seconds_by_tool.items(), key=lambda kv: -kv[1]):
        table.add_row(f"device-seconds: {tool}", f"{seconds:.2f}")
    table.add_row(
        f"{unit}-days spent / budget",
        f"{t.spent_device_seconds / SECONDS_PER_DAY:.6f} / {result.budget_device_seconds / SECONDS_PER_DAY:.6f}",
    )
    table.add_row(f"{unit}-minutes per accepted sample", per_accepted(t.spent_device_seconds / 60, t.accepted))
    if saving is not None:
        gate_rows(table, saving, unit)
    table.add_row("dataset", str(result.dataset_dir))
    return table


def training_table(rounds: list[TrainingRun]) -> Table:
    """One row per round, to fit 80 columns: its steps and where the curriculum is, the global batch (workers x
    per device x accumulated) and the samples trained on, its loss, the held-out losses and mean judge scores
    of both evaluations (from the instruction alone / with the edited reference frame), and the held-out set's
    size and state; the caption says the latest round's set in words (what was judged, what steered: a column
    of it would fold words at 80 columns). `trace` shows every criterion."""
    from store.training import heldout_set_line, heldout_set_state

    table = Table(
        title="Editto training", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    table.caption = (
        "drop: the curriculum's chance of dropping the reference frame\n"
        "batch: workers x per device x accumulated, on N samples\n"
        "held-out: from the instruction alone / with the reference (samples)"
    )
    for col in ("round", "steps", "batch", "loss", "held-out\nloss", "held-out\njudge"):
        table.add_column(col, no_wrap=True)
    table.add_column("held-out\nset", no_wrap=True)
    for r in rounds:
        card = json.loads(r.card_json or "{}")
        drop = card.get("reference_drop_probability")
        loss_counts = json.loads(r.eval_counts_json or "{}")
        table.add_row(
            f"{r.id.rsplit(':', 1)[-1]}\n[{'green' if r.status == 'finished' else 'red'}]{r.status}[/]",
            f"+{r.steps} = {card.get('step', '?')}" + (f"\ndrop {drop:.2f}" if drop is not None else ""),
            f"{global_batch(card)}\non {len(json.loads(r.train_samples_json))}",
            f"{card['mean_loss']:.4f}" if card.get("mean_loss") is not None else "",
            both_ways(r.heldout_loss, r.heldout_loss_with_reference, loss_counts.get("flow_loss"), 4),
            heldout_judge(r),
            heldout_set_state(r),
        )
    if rounds:
        last = rounds[-1]
        said = f"failed: {escape(last.error or '')}" if last.status == "failed" else heldout_set_line(last)
        table.caption += f"\n{last.id.rsplit(':', 1)[-1]}: {said}"
    if finished := [r for r in rounds if r.checkpoint_dir]:
        peak = json.loads(finished[-1].card_json or "{}").get("estimated_peak_gib")
        memory = f"; a step's estimated peak memory ~{peak} GiB" if peak is not None else ""
        table.caption += f"\nlatest checkpoint: {finished[-1].checkpoint_dir}{memory}"
    return table


def global_batch(card: dict[str, Any]) -> str:
    """'64=8x1x8': samples an optimizer step, as workers x per-device batch x accumulation."""
    if "global_batch" not in card:
        return ""
    return f"{card['global_batch']}={card['workers']}x{card['per_device_batch']}x{card['accumulation']}"


def both_ways(alone: float | None, with_reference: float | None, samples: int | None, digits: int) -> str:
    """'1.7334 /' over '1.6916 (2)': a held-out figure from the instruction alone and with the reference."""
    if alone is None and with_reference is None:
        return ""
    shown = [f"{v:.{digits}f}" if v is not None else "-" for v in (alone, with_reference)]
    return f"{shown[0]} /\n{shown[1]} ({samples if samples is not None else '?'})"


def heldout_judge(r: TrainingRun) -> str:
    """The mean of the judge's criteria over the held-out samples, both ways; the paper's CLIP-T apart."""
    alone, with_reference = (json.loads(x or "{}") for x in (r.eval_scores_json, r.eval_scores_with_reference_json))
    counts = json.loads(r.eval_counts_json or "{}")
    samples = max((n for k, n in counts.items() if k != "flow_loss"), default=None)
    shown = both_ways(judge_mean(alone), judge_mean(with_reference), samples, 2)
    if "CLIP-T" in alone or "CLIP-T" in with_reference:
        pair = (alone.get("CLIP-T"), with_reference.get("CLIP-T"))
        clip_t = [f"{v:.2f}" if isinstance(v, (int, float)) else "-" for v in pair]
        shown += f"\nCLIP-T {clip_t[0]} /\n{clip_t[1]}"
    return shown


def judge_mean(scores: dict[str, float]) -> float | None:
    judged = [v for k, v in scores.items() if not k.startswith("CLIP-")]  # CLIP-T and CLIP-F: another scale
    return sum(judged) / len(judged) if judged else None


def print_checkpoint_use(round_: TrainingRun, out: Path) -> None:
    """Where a round's checkpoint is and which file each of its users loads, and the memory it was sized for."""
    card = json.loads(round_.card_json or "{}")
    if not round_.checkpoint_dir:
        return
    folder = out / round_.checkpoint_dir
    if "estimated_peak_gib" in card:
        console.print(f"estimated peak memory of a training step: ~{card['estimated_peak_gib']} GiB", markup=False)
    lines = [f"resume (this agent): {folder / 'editto.safetensors'} + training_state.pt"]
    lines += [
        f"{name}: {use['load'].format(path=folder / use['file'])}" for name, use in card.get("consumers", {}).items()
    ]
    for line in lines:  # whole lines, never wrapped, to copy as they are
        console.print(line, markup=False, soft_wrap=True)


def readable_reason(reason: str) -> str:
    """A discard reason as the tables show it, in words that wrap between them in a narrow column
    (video_judge:edit_propagation,region_stability: 'video judge: edit propagation, region stability'); a file
    name in it stays as it is. `traces --reason` takes either form."""
    parts = re.split(r"([:,@])", reason)
    words = [p.replace("_", " ") if re.fullmatch(r"[a-z][a-z0-9_]*", p) else p for p in parts]
    return re.sub(r"([:,])(?=\S)", r"\1 ", "".join(words))


def episodes_table(rows: list[EpisodeRow], title: str | None = None) -> Table:
    """One row per episode. No vertical rules, a clip's name cut short with an ellipsis, and the category above
    the discard reason in one column, in words that wrap between them, so that a row fits an 80-column
    terminal; the episode id, to copy into `trace`, is never cut."""
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("episode", no_wrap=True)
    table.add_column("clip", no_wrap=True, overflow="ellipsis", max_width=14)
    table.add_column("status", no_wrap=True)
    table.add_column("category / reason", overflow="fold", min_width=15)
    table.add_column("device-s", no_wrap=True, justify="right")
    for row in rows:
        e = row.episode
        colour = STATUS_COLOURS.get(e.status, "yellow")
        category = e.planned_category or e.category or ""
        if e.planned_category and e.category and e.planned_category != e.category:
            category += f" (admitted for {e.category} but the clip did not fit it)"
        table.add_row(
            e.id,
            Path(e.clip_path).name,
            f"[{colour}]{e.status}[/]",
            category + (f"\n{escape(readable_reason(e.reason))}" if e.reason else ""),
            f"{row.device_seconds:.2f}",
        )
    return table


def print_json(data: Any) -> None:
    """Plain JSON on stdout, unwrapped and uncoloured, for scripts."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def call_json(c: ToolCall) -> dict[str, Any]:
    row = c.model_dump(mode="json", exclude={"input_json", "output_json", "prompts_json"})
    return row | {
        "input": json.loads(c.input_json),
        "output": json.loads(c.output_json or "null"),
        "prompts": json.loads(c.prompts_json),
    }


def episode_trace_json(tr: EpisodeTrace) -> dict[str, Any]:
    """The content `trace` prints, as data: the episode, its path, every call (prompts in full), verdicts
    and the sample. JSON columns are decoded, not nested as strings."""
    updates = [json.loads(ev.update_json) or {} for ev in tr.events]
    return {
        "episode": tr.episode.model_dump(mode="json"),
        "path": [ev.node for ev in tr.events],
        "calls": [call_json(c) for c in tr.calls],
        "verdicts": [v for u in updates for v in u.get("verdicts", [])],
        "decision": {"status": tr.episode.status, "reason": tr.episode.reason, "detail": tr.episode.detail},
        "sample": tr.sample
        and tr.sample.model_dump(mode="json", exclude={"record_json"}) | {"record": json.loads(tr.sample.record_json)},
    }


def training_trace_json(
    found: TrainingRun, calls: list[ToolCall], evaluations: list[HeldoutEvaluation]
) -> dict[str, Any]:
    round_ = found.model_dump(mode="json")
    for key in [k for k in round_ if k.endswith("_json")]:
        round_[key.removesuffix("_json")] = json.loads(round_.pop(key) or "null")
    return {
        "training_round": round_,
        "calls": [call_json(c) for c in calls],
        "evaluations": [
            {
                k.removesuffix("_json"): json.loads(v or "null") if k.endswith("_json") else v
                for k, v in ev.model_dump(mode="json").items()
            }
            for ev in evaluations
        ],
    }


def templates_table(book: PromptBook) -> Table:
    table = Table(show_header=True, header_style="bold")
    for col in ("template", "origin", "sha256"):
        table.add_column(col)
    for name in book.names():
        src = book.source(name)
        table.add_row(name, src.origin, src.sha256[:12])
    return table


def shown_value(value: Any) -> str:
    """A field of a call's input or output as text to read (`--json` keeps it as it is): strings as they are, a
    number to 4 figures, nothing as '-', a list as its items, a mapping one 'key: value' a line."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "\n".join(f"{k}: {shown_value(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(map(shown_value, value)) or "-"
    return "-" if value is None else str(value)


def fields_table(sections: dict[str, dict[str, Any]]) -> Table:
    """Sections of named fields ('in', 'out') as three columns: section, field, value; a long value wraps in its
    column, between words, and an unbroken one (a path, a hash) is folded, never cut."""
    table = Table(box=None, show_header=False, padding=(0, 1, 0, 0), pad_edge=False)
    table.add_column("section", style="dim", no_wrap=True)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    for section, fields in sections.items():
        for k, (name, value) in enumerate(fields.items()):
            table.add_row(section if k == 0 else "", name, shown_value(value))
    return table


def print_calls(calls: list[ToolCall], prompts: bool) -> None:
    for call in calls:
        tool = f"{call.tool} v{call.tool_version} ({escape(call.backend)})"
        head = f"[bold]{call.node}[/]: {tool}, attempt {call.attempt}"
        cost = "reused from the cache, not charged" if call.reused_call_id else f"{call.device_seconds:.3f} device-s"
        cost += f", queued {call.queued_s:.3f} s" if call.queued_s else ""
        console.print(f"\n{head}: {cost}")
        sections = {"in": json.loads(call.input_json), "out": json.loads(call.output_json or "null") or {}}
        console.print(Padding(fields_table(sections), (0, 0, 0, 2)))
        if call.error_kind:
            where = f"{call.error_field}: " if call.error_field else ""
            console.print(f"  error {call.error_kind}: {where}{call.error_detail}", style="red", markup=False)
        for p in json.loads(call.prompts_json):
            data = p["name"].endswith(".yaml")  # a vocabulary the call read: named, not printed in every trace
            kind = "data" if data else "prompt"
            console.print(f"  {kind} {p['name']} ({p['origin']}, sha256 {p['sha256'][:12]})", markup=False)
            if prompts and not data:
                console.print(Padding(Text(p["text"]), (0, 0, 0, 4)))


def print_episode_trace(tr: EpisodeTrace, prompts: bool) -> None:
    """The episode as text to read; `trace --json` has the same as data."""
    e = tr.episode
    console.rule(f"episode {e.id}")
    console.print(f"clip {e.clip_path}, variant {e.variant}, seed {e.seed}", markup=False)
    console.print("path: " + " -> ".join(ev.node for ev in tr.events))
    print_calls(tr.calls, prompts)
    for ev in tr.events:
        update = json.loads(ev.update_json) or {}
        if update.get("retry_reason"):
            console.print(f"\n[bold]{ev.node}[/] (attempt {update['attempt']}): {escape(update['retry_reason'])}")
        for verdict in update.get("verdicts", []):
            console.print(f"\n[bold]{verdict['stage']} verdict[/] (attempt {verdict['attempt']}, {verdict['judge']})")
            scores = Table(box=None, show_header=False, padding=(0, 1, 0, 0), pad_edge=False)
            scores.add_column("criterion", no_wrap=True)
            scores.add_column("score", justify="right", no_wrap=True)
            scores.add_column("reason", overflow="fold")
            for k, v in verdict["scores"].items():
                scores.add_row(k, f"{v:g}", verdict["reasons"].get(k, ""))
            console.print(Padding(scores, (0, 0, 0, 2)))
    colour = STATUS_COLOURS.get(e.status, "yellow")
    reason = f" {escape(readable_reason(e.reason))} ({escape(e.reason)})" if e.reason else ""
    console.print(f"\ndecision: [{colour}]{e.status}[/]{reason}")
    if e.detail:
        console.print(Padding(Text(e.detail), (0, 0, 0, 2)))
    if tr.sample:
        console.print(f"sample: {tr.sample.id} in dataset/{tr.sample.dataset_dir}", markup=False)


def shares_table(found: TrainingRun) -> Table:
    """A round's decision on the category mix: held-out score per category in both evaluations (the one that
    steered marked), shares before and after."""
    scores = json.loads(found.category_scores_json or "{}")
    scores_with = json.loads(found.category_scores_with_reference_json or "{}")
    counts = json.loads(found.category_counts_json or "{}")
    before, after = json.loads(found.shares_before_json or "{}"), json.loads(found.shares_after_json or "{}")
    steered = found.steered_by
    title = (
        f"category shares, moved by the evaluation {steered}"
        if steered
        else "category shares: unchanged, steering waits for the held-out set"
    )
    table = Table(title=title, header_style="bold", caption="scores: the held-out judge's mean (* steered)")
    alone = "alone" + (" *" if steered == "instruction alone" else "")
    with_reference = "w/ ref." + (" *" if steered == "with reference" else "")
    for col in ("category", alone, with_reference, "judged", "share before", "share after"):
        table.add_column(col, no_wrap=True)
    for name in sorted(set(before) | set(after) | set(scores) | set(scores_with)):
        old, new = before.get(name), after.get(name)
        table.add_row(
            name,
            f"{scores[name]:.2f}" if name in scores else "-",
            f"{scores_with[name]:.2f}" if name in scores_with else "-",
            str(counts.get(name, 0)),
            f"{old:.1%}" if old is not None else "",
            f"{new:.1%}" if new is not None else "",
        )
    return table


def print_training_trace(
    found: TrainingRun, calls: list[ToolCall], evaluations: list[HeldoutEvaluation], prompts: bool
) -> None:
    console.print(training_table([found]))
    if found.shares_after_json:
        console.print(shares_table(found))
    print_calls(calls, prompts)
    for ev in evaluations:
        console.print(f"\n[bold]held-out {escape(ev.sample_id)}[/]")
        for title, scores, reasons, metrics, error in (
            ("instruction alone", ev.scores_json, ev.reasons_json, ev.metrics_json, ev.error),
            (
                "with reference",
                ev.scores_with_reference_json,
                ev.reasons_with_reference_json,
                ev.metrics_with_reference_json,
                ev.error_with_reference,
            ),
        ):
            console.print(f"  {title}:", markup=False)
            if error:
                console.print(f"    error: {error}", style="red", markup=False)
            why = json.loads(reasons or "{}")
            for k, v in json.loads(scores or "{}").items():
                console.print(f"    {k}: {v}  {why.get(k, '')}", markup=False)
            for k, v in json.loads(metrics or "{}").items():
                console.print(f"    {k}: {v}", markup=False)


ProgressUpdate = Callable[["RunTotals", int], None]  # (totals so far, episodes in flight)


class SteadyEta:
    """Seconds until the run ends: whichever comes first, the plan's last episode, the budget spent or
    --max-samples accepted, at the run's pace since this process started. Estimated again whenever the run
    moves on, and counted down in between, so it neither jumps nor stands still while episodes finish in
    bursts (rich's own estimate, over the last 30 s of such a count, jumped from 0:00:01 to 0:03:24)."""

    def __init__(self, budget_s: float, max_samples: int | None) -> None:
        self.budget_s, self.max_samples = budget_s, max_samples
        self.started = time.monotonic()
        self.first: RunTotals | None = None
        self.estimate: tuple[float, float | None, tuple[float, ...]] | None = None  # (when, seconds left, at what)

    def moved(self, totals: RunTotals, planned: int | None) -> None:
        """The run's figures now: a new estimate when they changed."""
        now = time.monotonic()
        progress = (totals.accepted, totals.discarded, totals.spent_device_seconds, planned or 0)
        if self.estimate is None or self.estimate[2] != progress:
            self.estimate = (now, self.at_this_pace(totals, planned, now - self.started), progress)

    def seconds_left(self) -> float | None:
        if self.estimate is None or self.estimate[1] is None:
            return None
        when, left, _ = self.estimate
        return max(0.0, left - (time.monotonic() - when))

    def at_this_pace(self, totals: RunTotals, planned: int | None, elapsed: float) -> float | None:
        first = self.first = self.first or totals
        done = totals.accepted + totals.discarded
        paces = [  # (what is left, how much of it this process has done in `elapsed`)
            (planned - done if planned else None, done - first.accepted - first.discarded),
            (self.budget_s - totals.spent_device_seconds, totals.spent_device_seconds - first.spent_device_seconds),
            (self.max_samples - totals.accepted if self.max_samples else None, totals.accepted - first.accepted),
        ]
        left = [max(0.0, todo) * elapsed / did for todo, did in paces if todo is not None and did > 0]
        return min(left) if left else None


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class EtaColumn(ProgressColumn):
    """The ETA, counted down at every refresh of the display."""

    def __init__(self, eta: SteadyEta) -> None:
        super().__init__()
        self.eta = eta

    def render(self, task: Task) -> Text:
        return Text(f"episodes, ETA {clock(self.eta.seconds_left())}")


class RunProgress(Progress):
    """Two lines whatever the figures: the bar, its count and the ETA, then the run's figures in words (on a
    second line, which wraps between words only past 80 columns: 80 columns had cut the figures, or wrapped the
    one line two or three ways as they changed)."""

    def __init__(self, *columns: Any, **options: Any) -> None:
        self.figures = Text("")  # before Progress's own __init__, which draws the display once
        super().__init__(*columns, **options)

    def get_renderables(self) -> Iterator[Any]:
        yield self.make_tasks_table(self.tasks)
        yield self.figures


@contextmanager
def run_progress(
    budget_device_seconds: float,
    unit: str,
    episodes_per_clip: int,
    count_clips: Callable[[], int],
    max_samples: int | None = None,
) -> Iterator[ProgressUpdate]:
    """A progress bar of episodes done and the ETA, and below it the episodes accepted, discarded and running,
    clips seen and device-days spent of the budget. The clips are counted in a thread of their own once the
    first episode runs (a million take seconds to list): the bar's total, and the clips' total beside the clips
    seen, show once the count is in."""
    from store.tables import SECONDS_PER_DAY

    eta = SteadyEta(budget_device_seconds, max_samples)
    with RunProgress(BarColumn(bar_width=24), MofNCompleteColumn(), EtaColumn(eta), console=console) as bar:
        task = bar.add_task("episodes", total=None)
        clips: list[int] = []

        def count() -> None:
            try:
                clips.append(count_clips())
            except Exception:  # noqa: BLE001 -- for show only: the run itself says what it cannot read
                return
            bar.update(task, total=clips[0] * episodes_per_clip)

        counter = threading.Thread(target=count, name="count-clips", daemon=True)

        def on_progress(totals: RunTotals, in_flight: int) -> None:
            if counter.ident is None and in_flight:  # once the first episode runs: it waits for nothing
                counter.start()
            planned = clips[0] * episodes_per_clip if clips else None
            seen = f"{totals.clips_seen} of {clips[0]}" if clips else f"{totals.clips_seen}"
            budget = budget_device_seconds / SECONDS_PER_DAY
            decimals = max(0, 3 - math.ceil(math.log10(budget)))  # three figures of the budget, in plain digits
            bar.figures = Text.from_markup(
                f"[green]{totals.accepted} accepted[/], [red]{totals.discarded} discarded[/], {in_flight} running; "
                f"clips {seen}; {unit}-days {totals.spent_device_seconds / SECONDS_PER_DAY:.{decimals}f} of {budget:g}"
            )
            eta.moved(totals, planned)
            bar.update(task, completed=totals.accepted + totals.discarded)

        try:
            yield on_progress
        finally:
            bar.stop()


def print_logs_of(logger: str) -> None:
    """A logger's records from INFO up as plain lines on the console, above a live progress bar, instead of
    the log's format (the Ray pools' lines are the user's: which Ray, and the pools while they start)."""
    log = logging.getLogger(logger)
    log.setLevel(logging.INFO)
    log.propagate = False
    if not any(isinstance(h, RichHandler) for h in log.handlers):  # once a process: each command in it called this
        log.addHandler(RichHandler(console=console, show_time=False, show_level=False, show_path=False, markup=False))


def print_run_start(run_id: str, cfg: RunConfig, toolkit: dict[str, Tool], unit: str) -> None:
    console.print(
        f"[bold]Ditto agent[/] run [cyan]{run_id}[/] profile [cyan]{cfg.profile}[/] "
        f"budget {cfg.budget_gpu_days:g} {unit}-days into [cyan]{escape(str(cfg.out))}[/]"
    )
    console.print(backend_table(toolkit))
    if unit == "CPU":
        console.print(f"[dim]{cfg.profile} profile: device-seconds are CPU seconds of this process, not GPU time.[/]")


def print_run_hints(
    result: RunResult, out: Path, run_id: str, episodes_per_clip: int, changed_templates: list[str]
) -> None:
    """What to do next: why a finished run finished, templates edited since the run used them, the resume."""
    if result.status == "finished":  # the plan ran out before the budget did
        console.print(
            f"Every planned episode has run: {result.totals.clips_seen} clips x {episodes_per_clip} episodes per "
            f"clip. For more samples, add clips (--source-dir), or plan more per clip: python main.py --out {out} "
            f"--episodes-per-clip {episodes_per_clip * 2} continues this run (its first episodes stay as they are)."
        )
    if changed_templates:
        console.print(
            f"Templates changed since this run used them: {', '.join(changed_templates)}. The run keeps its "
            f"results; to apply them: python main.py --out {out} --new-run (every call whose templates did not "
            "change is reused from the cache)."
        )
    if result.status == "interrupted":
        console.print(f"Interrupted. Continue with: python main.py --out {out} --resume {run_id}")


def print_run_end(engine: Engine, result: RunResult, unit: str) -> None:
    """The run's summary, what the key-frame gate saved, figures per category and the training rounds."""
    from store.categories import category_figures
    from store.costs import gate_saving
    from store.training import training_runs

    run_id = result.totals.run_id
    console.print(summary_table(result, unit, gate_saving(engine, run_id)))
    console.print(category_figures_table(category_figures(engine, run_id), unit))
    if rounds := training_runs(engine, run_id):
        console.print(training_table(rounds))


@contextmanager
def case_progress(cases: int, quiet: bool) -> Iterator[Callable[[CaseVerdict], None]]:
    """A bar of the cases judged (none when quiet: --json prints nothing but its JSON)."""
    if quiet:
        yield lambda _: None
        return
    with Progress(BarColumn(bar_width=16), MofNCompleteColumn(), TextColumn("cases judged"), console=console) as bar:
        task = bar.add_task("cases", total=cases)
        yield lambda _: bar.advance(task)


def decision_text(accepted: bool) -> str:
    return "[green]accepted[/]" if accepted else "[red]rejected[/]"


def case_verdicts_table(verdicts: list[CaseVerdict]) -> Table:
    """One row per case: what it is, its label, the decision, and why (the failing criteria, or a fault)."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    table.add_column("edited", overflow="fold", ratio=2)
    table.add_column("category")
    table.add_column("label")
    table.add_column("decision")
    table.add_column("why", overflow="fold", ratio=3)
    for v in verdicts:
        agrees = v.case.label is None or (v.case.label == "accept") == v.accepted
        label = v.case.label or "-"
        table.add_row(
            escape(v.case.edited),
            v.case.category,
            label if agrees else f"[bold yellow]{label}[/]",
            decision_text(v.accepted),
            escape(v.reason),
        )
    return table


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def calibration_table(fits: list[CategoryFit], total: Confusion) -> Table:
    """Per category: the configured decisions against the labels (confusion matrix, precision, recall), and the
    fitted thresholds' precision and recall on the same cases."""
    table = Table(title="judges against the labels", box=box.SIMPLE_HEAD, header_style="bold")
    table.add_column("category", no_wrap=True)
    for name in ("cases", "TP", "FP", "FN", "TN", "P", "R", "fitted P", "fitted R"):
        table.add_column(name, justify="right")
    for f in fits:
        c, fitted = f.current, f.fitted
        table.add_row(
            f.category,
            str(f.cases),
            *map(str, (c.tp, c.fp, c.fn, c.tn)),
            rate(c.precision),
            rate(c.recall),
            rate(fitted.precision) if fitted else "-",
            rate(fitted.recall) if fitted else "-",
        )
    t = total
    counts = map(str, (t.tp + t.fp + t.fn + t.tn, t.tp, t.fp, t.fn, t.tn))
    table.add_row("all", *counts, rate(t.precision), rate(t.recall), "", "", style="bold")
    table.caption = "TP: labelled accept, accepted; FP: labelled reject, accepted; P: precision; R: recall"
    return table


def auc_table(fits: list[CategoryFit]) -> Table:
    """Per category, each criterion's ROC AUC, its configured threshold and the fitted one (- where off)."""
    table = Table(title="each criterion against the labels", box=box.SIMPLE_HEAD, header_style="bold")
    table.add_column("category", no_wrap=True)
    table.add_column("criterion", no_wrap=True)
    for name in ("ROC AUC", "threshold", "fitted"):
        table.add_column(name, justify="right")
    for f in fits:
        for k, (stage, criterion) in enumerate(sorted(f.auc)):
            configured = f.configured.get(stage, {}).get(criterion)
            fitted = f.thresholds.get(stage, {}).get(criterion) if f.thresholds else None
            table.add_row(
                f.category if k == 0 else "",
                f"{stage}.{criterion}",
                rate(f.auc[(stage, criterion)]),
                "-" if configured is None else f"{configured:g}",
                ("-" if fitted is None else f"{fitted:g}") if f.thresholds else "",
                end_section=k == len(f.auc) - 1,
            )
    return table
