"""`traces` and `trace`: what the agent did, episode by episode, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer

from cli.options import DbOpt, OutOpt, fail, open_store, run_or_latest
from cli.render import (
    category_figures_table,
    console,
    episode_trace_json,
    episodes_table,
    gate_table,
    print_episode_trace,
    print_json,
    print_training_trace,
    training_table,
    training_trace_json,
)


def traces(
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    run: Annotated[str | None, typer.Option("--run", help="This run (default: the latest).")] = None,
    status: Annotated[str | None, typer.Option(help="accepted | discarded | running")] = None,
    reason: Annotated[
        str | None, typer.Option(help="Discard reasons containing this text (as stored or as shown).")
    ] = None,
    category: Annotated[str | None, typer.Option(help="Only this edit category (e.g. local_attribute).")] = None,
    since: Annotated[
        str | None, typer.Option(help="Episodes started since: an ISO date or time (UTC), or an age: 30m, 2h, 1d.")
    ] = None,
    sort: Annotated[Literal["run", "cost"], typer.Option(help="run (in run order) | cost (costliest first)")] = "run",
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 200,
) -> None:
    """List a run's episodes with their category, decision, reason and device-seconds, figures per edit
    category, what the key-frame gate saved and the training rounds. Filters apply to every table: with one,
    the figures are those of the episodes it keeps (the gate and training tables, of the whole run, are left
    out)."""
    from store.categories import category_figures
    from store.costs import gate_saving
    from store.tables import device_unit
    from store.traces import list_episodes
    from store.training import training_runs

    engine = open_store(out, db)
    run_id = run_or_latest(engine, run, out)
    try:
        rows = list_episodes(engine, run_id, status, reason, None, category, parse_since(since), sort == "cost")
    except ValueError as err:
        raise fail(f"--status: {err}") from err
    filters = {"status": status, "reason": reason, "category": category, "since": since}
    chosen = " ".join(f"--{k} {v}" for k, v in filters.items() if v is not None)
    title = f"run {run_id}" + (f", {chosen}" if chosen else "")
    console.print(episodes_table(rows[:limit], title))
    shown = f", the first {limit} shown (--limit)" if len(rows) > limit else ""
    console.print(f"{len(rows)} episode{'' if len(rows) == 1 else 's'}{shown}")
    kept = {r.episode.id for r in rows} if chosen else None
    if figures := category_figures(engine, run_id, kept):
        console.print(category_figures_table(figures, "device", title))
    if chosen:
        return
    saving = gate_saving(engine, run_id)
    console.print(gate_table(saving, device_unit(saving.profile)))
    if rounds := training_runs(engine, run_id):
        console.print(training_table(rounds))


def trace(
    episode_id: Annotated[str, typer.Argument(help="An episode or training-round id from `traces`.")],
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    prompts: Annotated[
        bool, typer.Option("--prompts/--no-prompts", metavar="", help="Print rendered prompts in full.")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", metavar="", help="Print the same content as JSON, for scripts.")
    ] = False,
) -> None:
    """Show one episode (its path through the graph, every tool call, prompts, verdicts and the decision),
    or one training round (its calls, checkpoint and held-out scores)."""
    from store.traces import episode_trace
    from store.training import evaluations, training_calls, training_run

    engine = open_store(out, db)
    if (tr := episode_trace(engine, episode_id)) is not None:
        return print_json(episode_trace_json(tr)) if as_json else print_episode_trace(tr, prompts)
    if (found := training_run(engine, episode_id)) is None:
        raise fail(f"no episode or training round {episode_id!r}")
    calls, evals = training_calls(engine, episode_id), evaluations(engine, episode_id)
    if as_json:
        return print_json(training_trace_json(found, calls, evals))
    print_training_trace(found, calls, evals, prompts)


def parse_since(since: str | None) -> datetime | None:
    """An ISO date or time (UTC unless it says otherwise), or an age such as 30m, 2h or 1d."""
    if since is None:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if since[:-1].isdigit() and since[-1:] in units:
        return datetime.now(UTC) - timedelta(**{units[since[-1]]: int(since[:-1])})
    try:
        when = datetime.fromisoformat(since)
    except ValueError as err:
        raise fail(f"--since {since!r} is neither an ISO date or time nor an age like 30m, 2h, 1d") from err
    return when if when.tzinfo else when.replace(tzinfo=UTC)
