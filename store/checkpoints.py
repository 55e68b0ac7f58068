"""LangGraph's checkpointer, kept where the tables are: one thread per episode, resumed after a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from sqlalchemy.engine import make_url


class CheckpointsUnreadable(ValueError):
    """The SQLite file of LangGraph's checkpoints is damaged (truncated, overwritten)."""


def open_checkpointer(db_url: str, sqlite_path: Path) -> BaseCheckpointSaver[str]:
    """LangGraph's checkpoints next to the tables: in PostgreSQL when the store is, else in SQLite in --out."""
    url = make_url(db_url)
    if url.get_backend_name() != "postgresql":
        try:
            conn = sqlite3.connect(sqlite_path, check_same_thread=False)
            # As for the tables (engine.py): WAL + NORMAL survives a killed process without an fsync per
            # checkpoint, which the default rollback journal paid at every step of every episode.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            saver = SqliteSaver(conn)
            saver.setup()
        except sqlite3.DatabaseError as err:
            raise CheckpointsUnreadable(
                f"{sqlite_path} is not a readable checkpoint database ({err}); move it aside to run again: the "
                "episodes it held restart from their first step, and every tool call they made is reused from "
                "the store"
            ) from err
        return saver
    from store.postgres_checkpoints import open_postgres_checkpointer  # the scale extra's

    return open_postgres_checkpointer(url.set(drivername="postgresql").render_as_string(hide_password=False))
