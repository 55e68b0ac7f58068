"""`report`: the run as a folder of HTML that opens from disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.options import DbOpt, OutOpt, open_store, run_or_latest
from cli.render import console


def report(
    out: OutOpt = Path("out"),
    db: DbOpt = None,
    run: Annotated[str | None, typer.Option("--run", help="This run (default: the latest).")] = None,
    open_it: Annotated[bool, typer.Option("--open", metavar="", help="Open it in the default browser.")] = False,
) -> None:
    """Write OUT/report/: a folder that opens from disk, with every episode's videos side by side, every
    attempt's scores and reasons, the decision and its cost, filters, and plots of the run."""
    from store.report import write_report

    engine = open_store(out, db)
    index = write_report(engine, out, run_or_latest(engine, run, out), out / "report")
    console.print(f"{index.episodes} episodes, {index.plots} plots in {index.path}")
    if index.plots_note:
        console.print(index.plots_note, markup=False)
    if open_it:
        import webbrowser

        webbrowser.open(index.path.resolve().as_uri())
