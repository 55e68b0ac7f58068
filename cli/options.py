"""What the commands that read a run share: --out and --db, opening the store, the run they mean, and ending
in one line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.render import error_line

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

OutOpt = Annotated[Path, typer.Option("--out", help="Folder for the database, artifacts and dataset.")]
DbOpt = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the store (default: SQLite in --out).")]


def fail(message: str) -> typer.Exit:
    """The error printed as one line; raise what it returns to exit with 1."""
    error_line(message)
    return typer.Exit(1)


def open_store(out: Path, db: str | None) -> Engine:
    from store.engine import open_engine

    if not db and not (out / "ditto.db").is_file():  # opening it would create an empty store
        raise fail(f"no run database in {out} (run the factory first, or pass --out / --db)")
    return open_engine(db or f"sqlite:///{(out / 'ditto.db').resolve()}")


def run_or_latest(engine: Engine, run: str | None, out: Path) -> str:
    from sqlmodel import Session

    from store.tables import Run
    from store.traces import latest_run

    if run is not None:
        with Session(engine) as s:
            if s.get(Run, run) is None:
                raise fail(f"--run {run}: no such run in {out}")
        return run
    if (latest := latest_run(engine)) is None:
        raise fail(f"no run in {out}")
    return latest.id
