"""The database engine: SQLite in the output folder by default, any SQLAlchemy URL otherwise. Opening a store
brings its schema up to date with the migrations in store/migrations (Alembic)."""

from __future__ import annotations

import errno
import functools
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool
from sqlmodel import create_engine

from store import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

SQLITE_BUSY_TIMEOUT_S = 60  # concurrent episodes write from several threads; waiting beats failing
MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 7_361_428_003  # a PostgreSQL advisory lock: one process migrates a shared store at a time


class StoreDamaged(OSError):
    """A SQLite store that SQLite cannot read (overwritten, truncated, a disk fault): an I/O error (EIO) that
    names the file and what to do, raised in place of SQLAlchemy's error wherever a query meets it."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            errno.EIO,
            f"{path} is damaged ({detail}): restore it from a backup, or keep what SQLite can still read: "
            f"sqlite3 {path} .recover | sqlite3 {path}.recovered, then move {Path(path).name}.recovered into its "
            f"place (python main.py verify then checks the files against it)",
        )
        self.path, self.detail = path, detail

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return StoreDamaged, (self.path, self.detail)

    @staticmethod
    def of(err: BaseException, path: str | None) -> StoreDamaged | None:
        """The error SQLite raised as StoreDamaged, when it says the file is damaged (not locked or busy)."""
        damaged = type(err) is sqlite3.DatabaseError and any(w in str(err) for w in ("malformed", "not a database"))
        return StoreDamaged(path or "the SQLite store", str(err)) if damaged else None


def open_engine(url: str, pool_size: int = 10, migrate_schema: bool = True) -> Engine:
    """`pool_size`: on a database server, the connections kept open (the driver's episodes take one for a
    moment at a time, and as many again may be opened under load); 0 keeps none (a Ray actor, which writes a
    few rows per call: a pool in each of many actors would hold more connections than a server allows).
    `migrate_schema=False` where the run has made the store current already (Ray actors: dozens creating the
    same tables at once on a new PostgreSQL database collided)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers (traces) never block the run
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "handle_error")
        def _name_a_damaged_file(context) -> StoreDamaged | None:  # type: ignore[no-untyped-def]
            return StoreDamaged.of(context.original_exception, engine.url.database)
    elif pool_size == 0:  # SQLAlchemy's pool_size=0 would mean "no limit"
        engine = create_engine(url, poolclass=NullPool)
    else:
        # A server's default limit is 100 connections, shared with the checkpointer's pool; episodes beyond
        # these wait for a free connection, as long as the SQLite store waits for its lock.
        engine = create_engine(
            url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size, pool_timeout=SQLITE_BUSY_TIMEOUT_S
        )
    if migrate_schema:
        migrate(engine)
    return engine


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, to: str = "head") -> None:
    """Brings the store to revision `to` by the migrations (store/migrations), from where it is: a new store is
    made by all of them, a store at the current revision is left as it is (one query). A store made before
    migrations (release caf5255 or earlier) has tables and no revision: all of them run, the first catching it up
    to that release."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # Ray actors and drivers open the same store at once
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        if "alembic_version" in inspect(conn).get_table_names():
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if current == head_revision() and to == "head":
                return
        command.upgrade(alembic_config(conn), to)
