"""Opening a store brings its schema up to date with the migrations (store/migrations): a store of the last
release before migrations, an older one that lacks columns and indexes added since, a new store, and the same
on PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, SQLModel

from agent.runner import Factory
from store.engine import head_revision, open_engine
from store.tables import Run
from store.traces import list_episodes

RELEASE_STORE = Path(__file__).parent / "data" / "store-caf5255.sql"  # a cpu run of release caf5255, dumped


def schema(engine: sa.Engine) -> dict[str, set[str]]:
    inspector = sa.inspect(engine)
    return {
        t: {c["name"] for c in inspector.get_columns(t)} | {i["name"] for i in inspector.get_indexes(t)}
        for t in inspector.get_table_names()
        if t != "alembic_version"
    }


def version(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()


def release_store(tmp_path: Path) -> Path:
    db = tmp_path / "ditto.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(RELEASE_STORE.read_text())
    return db


def test_a_store_of_the_last_release_before_migrations_opens_current_and_keeps_its_runs(
    tmp_path: Path, small_config
) -> None:  # type: ignore[no-untyped-def]
    db = release_store(tmp_path)
    engine = open_engine(f"sqlite:///{db}")
    fresh = open_engine(f"sqlite:///{tmp_path / 'new.db'}")
    assert version(engine) == head_revision() == version(fresh)
    assert schema(engine) == schema(fresh)  # the migrations reach what store/tables.py declares
    with Session(engine) as s:
        (old_run,) = s.exec(sa.select(Run)).scalars().all()  # type: ignore[call-overload]
        assert old_run.held_by is None and old_run.status == "finished"
    assert len(list_episodes(engine, old_run.id, None, None, 100)) == 3  # its episodes read as before
    # A new run in the same store works on the migrated tables (and the old run's calls stay in the cache).
    cfg = small_config(out=tmp_path, episodes_per_clip=1, max_samples=1)
    assert Factory(cfg).execute().totals.accepted == 1


def test_a_store_older_still_gains_the_columns_and_indexes_added_since(tmp_path: Path) -> None:
    """Before migrations, releases added columns and indexes by hand: a store that lacks some of them (an older
    release's) gets them from the first revision, the later ones from theirs."""
    db = release_store(tmp_path)
    with sqlite3.connect(db) as old:
        old.execute("alter table toolcall drop column error_field")
        old.execute("alter table episode drop column planned_category")
        old.execute("drop index ix_episode_run_id_clip_path")
    engine = open_engine(f"sqlite:///{db}")
    have = schema(engine)
    assert "error_field" in have["toolcall"]
    assert {"planned_category", "ix_episode_run_id_clip_path"} <= have["episode"]
    rows = sqlite3.connect(db).execute("select error_field from toolcall").fetchall()
    assert rows and all(row == (None,) for row in rows)  # the rows stay, with nothing in the new column


def test_a_current_store_is_opened_without_running_anything(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    db = f"sqlite:///{tmp_path / 'ditto.db'}"
    open_engine(db).dispose()
    from alembic import command

    monkeypatch.setattr(command, "upgrade", lambda *a, **k: pytest.fail("a current store ran its migrations"))
    open_engine(db).dispose()


def test_postgres_stores_are_created_and_upgraded_by_the_same_migrations(postgres_url: str) -> None:
    engine = open_engine(postgres_url)
    assert version(engine) == head_revision()
    with engine.begin() as conn:  # as a store of the release before migrations: no revision, no new columns
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("ALTER TABLE run DROP COLUMN held_by"))
        conn.execute(sa.text("ALTER TABLE trainingrun DROP COLUMN heldout_loss"))
    again = open_engine(postgres_url)
    assert version(again) == head_revision()
    assert {"held_by"} <= {c["name"] for c in sa.inspect(again).get_columns("run")}
    assert set(SQLModel.metadata.tables) <= set(sa.inspect(again).get_table_names())
