"""call() runs a tool once per content key and charges once per executed call."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select

from agent.calls import CallSite, OutageBreaker, ToolCaller
from prompts.loader import PromptBook
from store.artifacts import ArtifactStore
from store.engine import open_engine
from store.tables import Episode, Run, ToolCall
from tools import build_toolkit
from tools.base import ToolError
from tools.ingest import ingest_input


def make_caller(tmp_path: Path, small_config, prompts_dir: Path | None = None) -> ToolCaller:  # type: ignore[no-untyped-def]
    cfg = small_config()
    engine = open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with Session(engine) as s:
        if s.get(Run, "r") is None:
            s.add(Run(id="r", profile="cpu", budget_device_seconds=1, seed=0, config_json="{}"))
            s.commit()
            for ep in ("e1", "e2"):
                s.add(Episode(id=ep, run_id="r", index=0, clip_path="x", variant=0, seed=0))
            s.commit()
    return ToolCaller(
        engine, build_toolkit(cfg.tools, cfg.backends), ArtifactStore(tmp_path, engine), PromptBook(prompts_dir)
    )


def test_cache_hit_is_not_charged(tmp_path: Path, small_config, clips: list[Path]) -> None:  # type: ignore[no-untyped-def]
    caller = make_caller(tmp_path, small_config)
    first = caller.call("ingest", ingest_input(clips[0]), CallSite("r", "e1", "ingest", 0))
    second = caller.call("ingest", ingest_input(clips[0]), CallSite("r", "e2", "ingest", 0))
    assert first == second
    with Session(caller.engine) as s:
        rows = s.exec(select(ToolCall).order_by(ToolCall.id)).all()
    assert len(rows) == 2 and rows[1].reused_call_id == rows[0].id and rows[1].device_seconds == 0
    assert rows[0].device_seconds > 0 and rows[0].run_id == rows[1].run_id == "r"


def test_rerun_of_the_same_step_does_nothing(tmp_path: Path, small_config, clips: list[Path]) -> None:  # type: ignore[no-untyped-def]
    """After a crash: the step's row is found, not taken for a cached result of another step."""
    caller = make_caller(tmp_path, small_config)
    site = CallSite("r", "e1", "ingest", 0)
    caller.call("ingest", ingest_input(clips[0]), site)
    caller.call("ingest", ingest_input(clips[0]), site)
    with Session(caller.engine) as s:
        rows = s.exec(select(ToolCall)).all()
        assert len(rows) == 1 and rows[0].reused_call_id is None and rows[0].device_seconds > 0


def test_deleted_artifact_is_recomputed_not_reused(tmp_path: Path, small_config, clips: list[Path]) -> None:  # type: ignore[no-untyped-def]
    caller = make_caller(tmp_path, small_config)
    out = caller.call("ingest", ingest_input(clips[0]), CallSite("r", "e1", "ingest", 0))
    caller.io.path(out.clip).unlink()
    again = caller.call("ingest", ingest_input(clips[0]), CallSite("r", "e2", "ingest", 0))
    assert caller.io.path(again.clip).is_file()
    with Session(caller.engine) as s:
        ran = s.exec(select(ToolCall).where(ToolCall.reused_call_id == None)).all()  # noqa: E711
        assert len(ran) == 2 and all(c.device_seconds > 0 for c in ran)  # the work really ran twice


def test_bad_input_is_recorded_with_the_file_name(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    caller = make_caller(tmp_path, small_config)
    bogus = tmp_path / "bogus.mp4"
    bogus.write_text("nope")
    try:
        caller.call("ingest", ingest_input(bogus), CallSite("r", "e1", "ingest", 0))
    except Exception as err:  # noqa: BLE001
        assert "bogus.mp4" in str(err) and getattr(err, "kind", None) == "bad_input"
    else:
        raise AssertionError("a text file was ingested as a video")
    with Session(caller.engine) as s:
        row = s.exec(select(ToolCall)).one()
    assert row.error_kind == "bad_input" and "bogus.mp4" in (row.error_detail or "")


def test_a_cached_error_keeps_its_kind_field_and_detail(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    caller = make_caller(tmp_path, small_config)
    bogus = tmp_path / "bogus.mp4"
    bogus.write_text("nope")
    raised = []
    for episode in ("e1", "e2"):  # the second is a cache hit: bad_input is deterministic
        try:
            caller.call("ingest", ingest_input(bogus), CallSite("r", episode, "ingest", 0))
        except ToolError as err:
            raised.append((err.kind, err.field, err.detail))
    assert len(raised) == 2 and raised[0] == raised[1]
    assert raised[0][:2] == ("bad_input", "clip_path") and not raised[0][2].startswith("bad_input")
    with Session(caller.engine) as s:
        rows = s.exec(select(ToolCall).order_by(ToolCall.id)).all()
    assert rows[1].reused_call_id == rows[0].id
    assert [(r.error_kind, r.error_field) for r in rows] == [("bad_input", "clip_path")] * 2


def test_a_backend_counts_as_down_only_after_calls_in_a_row_fail() -> None:
    breaker = OutageBreaker(limit=3)
    assert not breaker.failed("b", "refused") and not breaker.failed("b", "refused")
    breaker.succeeded("b")  # a blip: the next success starts the count again
    assert not breaker.failed("b", "refused") and not breaker.failed("b", "refused") and not breaker.is_down("b")
    assert breaker.failed("b", "timed out") and breaker.is_down("b") and not breaker.is_down("other")
    breaker.succeeded("b")  # a late success elsewhere does not bring a backend back that stopped the run
    assert breaker.is_down("b")
    assert "unreachable 3 calls in a row" in str(breaker.down("plan_instruction", "b"))
