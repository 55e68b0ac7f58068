"""LangGraph's checkpointer, kept where the tables are: one thread per episode, resumed after a crash."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from sqlalchemy.engine import make_url

CHECKPOINT_CONNECTIONS = 10  # PostgreSQL connections the checkpoints of every episode in flight share


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
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    # A pool, so that episodes checkpoint side by side and a dropped connection is replaced, not fatal.
    # PostgresSaver's own setup needs autocommit (CREATE INDEX CONCURRENTLY) and dict rows.
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    pool = ConnectionPool(
        dsn,
        min_size=1,
        max_size=CHECKPOINT_CONNECTIONS,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=ConnectionPool.check_connection,
        open=True,
    )
    saver = PostgresSaver(pool)  # type: ignore[arg-type]
    # PostgresSaver takes one lock around every query even when given a pool, which serialises the
    # episodes' checkpoints on one connection at a time (langchain-ai/langgraph#7259); each query has a
    # connection of its own here, so the lock only needs to bound them by the pool's size.
    saver.lock = threading.BoundedSemaphore(CHECKPOINT_CONNECTIONS)  # type: ignore[assignment]
    saver.setup()
    return saver
