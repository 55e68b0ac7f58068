"""Opening a store brings its schema up to date with the migrations (store/migrations): a store of the last
release before migrations (its run resumes, its charges counted once), an older one that lacks columns and
indexes added since, a new store, which the migrations alone build as store/tables.py declares, and the same on
PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel, col, select

from agent.budget import Ledger
from agent.config import RunConfig
from agent.runner import Factory
from store.engine import head_revision, migrate, open_engine
from store.tables import Run, ToolCall
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


def differences_from_tables(engine: sa.Engine) -> list[object]:
    """What the store's schema lacks or has beyond store/tables.py (Alembic's own comparison)."""
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)


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
    assert schema(engine) == schema(fresh) and differences_from_tables(fresh) == []
    with Session(engine) as s:
        (old_run,) = s.exec(sa.select(Run)).scalars().all()  # type: ignore[call-overload]
        assert old_run.held_by is None and old_run.status == "finished"
    assert len(list_episodes(engine, old_run.id, None, None, 100)) == 3  # its episodes read as before
    # A new run in the same store works on the migrated tables (and the old run's calls stay in the cache).
    cfg = small_config(out=tmp_path, episodes_per_clip=1, max_samples=1)
    assert Factory(cfg).execute().totals.accepted == 1


def test_the_release_runs_charges_move_into_its_calls_and_the_run_resumes_charging_nothing_twice(
    tmp_path: Path,
) -> None:
    db = release_store(tmp_path)
    with sqlite3.connect(db) as old:
        charged = dict(old.execute("select tool_call_id, device_seconds from charge"))
    engine = open_engine(f"sqlite:///{db}")
    with Session(engine) as s:
        (old_run,) = s.exec(select(Run)).all()
        calls = s.exec(select(ToolCall)).all()
    assert {c.id: c.device_seconds for c in calls} == charged and {c.run_id for c in calls} == {old_run.id}
    assert Ledger.load(engine, old_run.id).spent_s == pytest.approx(sum(charged.values()))
    cfg = RunConfig.model_validate({**json.loads(old_run.config_json), "out": str(tmp_path), "episodes_per_clip": 2})
    result = Factory(cfg, old_run.id).execute()
    with Session(engine) as s:
        kept = {c.id: c.device_seconds for c in s.exec(select(ToolCall).where(col(ToolCall.id).in_(charged))).all()}
    assert kept == charged  # the release's calls are charged once, as they were
    assert result.totals.episodes == 6 and result.totals.spent_device_seconds >= sum(charged.values())


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
    """A store made by the first revision alone, with its revision removed, is a store of the release before
    migrations; opened, it is brought to the current revision, as a new store is made."""
    migrate(sa.create_engine(postgres_url), "0001")
    with sa.create_engine(postgres_url).begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("ALTER TABLE toolcall DROP COLUMN error_field"))  # an older release's store
    engine = open_engine(postgres_url)
    assert version(engine) == head_revision() and differences_from_tables(engine) == []
