"""The orchestration bench runs the real run loop with tools that do nothing, and LangGraph alone beside it."""

from __future__ import annotations

from pathlib import Path

from bench.overhead import langgraph_floor_ms, measure


def test_the_bench_measures_the_run_loop_and_the_langgraph_floor(tmp_path: Path) -> None:
    row, steps = measure(12, concurrency=2, root=tmp_path)
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    assert cells[:2] == ["2", "12"]  # concurrency, episodes finished
    assert all(float(c) > 0 for c in cells[2:])
    assert 9 <= steps <= 12  # every judge passes: ingest to commit, one attempt
    assert langgraph_floor_ms(round(steps), tmp_path, episodes=5) > 0
