"""The database engine: SQLite in the output folder by default, any SQLAlchemy URL otherwise."""

from __future__ import annotations

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from sqlmodel import Session, SQLModel, create_engine

from store import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

SQLITE_BUSY_TIMEOUT_S = 60  # concurrent episodes write from several threads; waiting beats failing


def open_engine(url: str, pool_size: int = 10, create_tables: bool = True) -> Engine:
    """`pool_size`: on a database server, the connections kept open (the driver's episodes take one for a
    moment at a time, and as many again may be opened under load); 0 keeps none (a Ray actor, which writes a
    few rows per call: a pool in each of many actors would hold more connections than a server allows).
    `create_tables=False` where the run has made the store already (actors: dozens creating the same
    tables at once on a new PostgreSQL database collided)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers (traces) never block the run
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    elif pool_size == 0:  # SQLAlchemy's pool_size=0 would mean "no limit"
        engine = create_engine(url, poolclass=NullPool)
    else:
        # A server's default limit is 100 connections, shared with the checkpointer's pool; episodes beyond
        # these wait for a free connection, as long as the SQLite store waits for its lock.
        engine = create_engine(
            url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size, pool_timeout=SQLITE_BUSY_TIMEOUT_S
        )
    if create_tables:
        SQLModel.metadata.create_all(engine)
        upgrade_store(engine)
    return engine


def upgrade_store(engine: Engine) -> None:
    """A store written by an older version gains the columns (each nullable or with a default) and the
    indexes added since, so its runs can be resumed and read, as fast as a new store's."""
    existing = inspect(engine)
    with engine.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                kind = column.type.compile(engine.dialect)
                default = column.default.arg if column.default is not None and column.default.is_scalar else None
                clause = f" DEFAULT {default!r}" if isinstance(default, int | float | str) else ""
                conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}{clause}'))
            for index in table.indexes:
                index.create(conn, checkfirst=True)


def session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)
