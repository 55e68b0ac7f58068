"""What the commands that read a run share: --out and --db, opening the store, the run they mean, and ending
in one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


def user_errors() -> tuple[type[BaseException], ...]:
    """What a command ends with in one line instead of a traceback: a flag, config or template that does not
    validate, a run that cannot start or has to stop (agent/faults.py), a round with nothing to train on, a file
    or store that cannot be read or written, an extra that is not installed."""
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    from agent.faults import RunError
    from agent.training import TrainingError
    from prompts.loader import PromptError

    return (ValueError, RunError, TrainingError, PromptError, OSError, ImportError, SQLAlchemyError, sqlite3.Error)


@contextmanager
def one_line_errors(prefix: str = "", then: str = "", extra: str = "models") -> Iterator[None]:
    """A user error (user_errors) raised in the block ends the command in one line: `prefix`, the error, and
    `then` (what to do next); a missing import names the extra that brings it."""
    try:
        yield
    except Exception as err:
        if not isinstance(err, user_errors()):
            raise
        hint = f" (pip install -e '.[{extra}]')" if isinstance(err, ImportError) else ""
        raise fail(f"{prefix}{err}{hint}{then}") from err


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
