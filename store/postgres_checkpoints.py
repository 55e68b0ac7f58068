"""LangGraph's checkpoints in PostgreSQL (the scale extra), on a connection pool, so that episodes checkpoint
side by side and a dropped connection is replaced, not fatal."""

from __future__ import annotations

import threading

from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

CHECKPOINT_CONNECTIONS = 10  # connections the checkpoints of every episode in flight share


class PooledPostgresSaver(PostgresSaver):
    """PostgresSaver takes its `lock` around every query even when given a pool, which serialises the episodes'
    checkpoints on one connection at a time (langchain-ai/langgraph#7259). Each query has a connection of its
    own from the pool here, so the lock, an attribute the class declares, only bounds them by the pool's size."""

    def __init__(self, pool: ConnectionPool) -> None:
        super().__init__(pool)  # type: ignore[arg-type]
        self.lock = threading.BoundedSemaphore(pool.max_size)  # type: ignore[assignment]


def open_postgres_checkpointer(dsn: str) -> PooledPostgresSaver:
    # PostgresSaver's own setup needs autocommit (CREATE INDEX CONCURRENTLY) and dict rows.
    pool = ConnectionPool(
        dsn,
        min_size=1,
        max_size=CHECKPOINT_CONNECTIONS,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        check=ConnectionPool.check_connection,
        open=True,
    )
    saver = PooledPostgresSaver(pool)
    saver.setup()
    return saver
