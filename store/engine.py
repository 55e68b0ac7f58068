"""The database engine: SQLite in the output folder by default, any SQLAlchemy URL otherwise."""

from __future__ import annotations

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from store import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

SQLITE_BUSY_TIMEOUT_S = 60  # concurrent episodes write from several threads; waiting beats failing


def open_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers (traces) never block the run
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        # Every episode in flight may hold a connection for a moment; a server's default limit is 100.
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40)
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
