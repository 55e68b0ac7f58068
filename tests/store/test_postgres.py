"""The store and LangGraph's checkpoints on PostgreSQL: the same record, the same run, the same resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from agent.budget import Ledger
from agent.calls import CallSite, ToolCaller
from agent.runner import Factory
from bench.faults import compare, decisions, finish, run_with_kills, start, write_config
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.engine import open_engine
from store.tables import Episode, Run, ToolCall
from tools import build_toolkit
from tools.ingest import ingest_input


def test_calls_are_recorded_cached_and_charged_once(tmp_path: Path, postgres_url: str, small_config, clips) -> None:  # type: ignore[no-untyped-def]
    engine = open_engine(postgres_url)
    open_engine(postgres_url)  # a second open finds every table and column in place
    with Session(engine) as s:
        s.add(Run(id="r", profile="cpu", budget_device_seconds=1, seed=0, config_json="{}"))
        s.commit()
        s.add_all([Episode(id=e, run_id="r", index=i, clip_path="x", variant=0, seed=0) for i, e in enumerate("ab")])
        s.commit()
    cfg = small_config()
    caller = ToolCaller(engine, build_toolkit(cfg.tools, cfg.backends), ArtifactStore(tmp_path, engine), PromptBook())
    first = caller.call("ingest", ingest_input(clips[0]), CallSite("r", "a", "ingest", 0))
    assert caller.call("ingest", ingest_input(clips[0]), CallSite("r", "b", "ingest", 0)) == first
    caller.call("ingest", ingest_input(clips[0]), CallSite("r", "a", "ingest", 0))  # a rerun after a crash
    with Session(engine) as s:
        calls = s.exec(select(ToolCall).order_by(ToolCall.id)).all()
    assert len(calls) == 2 and calls[1].reused_call_id == calls[0].id and calls[1].device_seconds == 0
    charged = calls[0].device_seconds
    ledger = Ledger.load(engine, "r")
    assert charged > 0 and ledger.spent_s == pytest.approx(charged) and ledger.counted_s == {"a": charged}


@pytest.mark.slow
def test_a_run_on_postgres_decides_as_on_sqlite(tmp_path: Path, postgres_url: str, small_config) -> None:  # type: ignore[no-untyped-def]
    on_sqlite = Factory(small_config(out=tmp_path / "sqlite"))
    on_sqlite.execute()
    on_postgres = Factory(small_config(out=tmp_path / "pg", db_url=postgres_url))
    result = on_postgres.execute()
    assert result.status == "finished" and result.totals.accepted > 0
    assert not (tmp_path / "pg" / "ditto.db").exists() and not (tmp_path / "pg" / "checkpoints.sqlite").exists()
    with on_postgres.engine.connect() as conn:  # finished episodes' checkpoints were pruned from PostgreSQL
        assert conn.execute(text("select count(*) from checkpoints")).scalar() == 0
    assert decisions(tmp_path / "pg", postgres_url) == decisions(tmp_path / "sqlite")


@pytest.mark.slow
def test_sigkill_resume_on_postgres_loses_nothing_and_charges_once(tmp_path: Path, postgres_url: str) -> None:
    config = write_config(tmp_path)
    finish(start(tmp_path / "straight", config))
    landed = run_with_kills(tmp_path / "killed", config, 4, 1, "--db", postgres_url)
    assert landed >= 3
    result = compare(tmp_path / "killed", tmp_path / "straight", postgres_url)
    assert result.samples_lost == result.duplicates == result.double_charges == 0
    assert result.bad_artifacts == result.decisions_differ == 0
