"""The terminal side of reading a run: `trace --json` for scripts, and `traces` filters that say so when
a value is wrong."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from main import app

pytestmark = pytest.mark.slow


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def listed_ids(output: str) -> list[str]:
    return re.findall(r"^ ?(run-[\d-]+:\d+) ", output, flags=re.M)


def test_trace_json_has_what_trace_prints(finished_run: Path) -> None:
    code, output = cli("traces", "--out", str(finished_run), "--status", "accepted")
    episode_id = listed_ids(output)[0]
    code, text = cli("trace", episode_id, "--out", str(finished_run))
    text = " ".join(text.split())  # rich wraps at the terminal's width
    code_json, raw = cli("trace", episode_id, "--out", str(finished_run), "--json")
    assert code == code_json == 0
    data = json.loads(raw)
    assert data["episode"]["id"] == episode_id and data["decision"]["status"] == "accepted"
    assert "path: " + " -> ".join(data["path"]) in text
    assert [c["tool"] for c in data["calls"]][:2] == ["ingest", "caption_clip"]
    assert all(isinstance(c["input"], dict) for c in data["calls"])
    prompts = [p for c in data["calls"] for p in c["prompts"]]
    assert prompts and all(p["sha256"][:12] in text and p["text"] for p in prompts)
    assert {v["stage"] for v in data["verdicts"]} == {"keyframe", "video"}
    assert " ".join(data["sample"]["record"]["instruction"].split()) in text
    code, _ = cli("trace", "run-bogus:00000", "--out", str(finished_run), "--json")
    assert code == 1


def test_traces_filter_by_category_since_and_sort_by_cost(finished_run: Path) -> None:
    code, everything = cli("traces", "--out", str(finished_run))
    all_ids = listed_ids(everything)
    assert code == 0 and len(all_ids) == 6
    trace = json.loads(cli("trace", all_ids[0], "--out", str(finished_run), "--json")[1])
    category = trace["episode"]["category"]
    code, output = cli("traces", "--out", str(finished_run), "--category", category)
    chosen = listed_ids(output)
    assert code == 0 and all_ids[0] in chosen and 0 < len(chosen) < 6
    for episode_id in chosen:
        assert json.loads(cli("trace", episode_id, "--out", str(finished_run), "--json")[1])["episode"]["category"] == (
            category
        )
    assert len(listed_ids(cli("traces", "--out", str(finished_run), "--since", "1d")[1])) == 6
    assert listed_ids(cli("traces", "--out", str(finished_run), "--since", "2999-01-01")[1]) == []
    costly = listed_ids(cli("traces", "--out", str(finished_run), "--sort", "cost")[1])
    costs = [
        sum(c["device_seconds"] for c in json.loads(cli("trace", i, "--out", str(finished_run), "--json")[1])["calls"])
        for i in costly
    ]
    assert sorted(costly) == sorted(all_ids) and costs == sorted(costs, reverse=True)


@pytest.mark.parametrize(
    ("flag", "value", "named", "exit_code"),
    # A value outside --sort's choices is a usage error (typer's, exit 2), as for any flag of a fixed type.
    [("--status", "bogus", "accepted", 1), ("--since", "yesterday", "--since", 1), ("--sort", "price", "--sort", 2)],
)
def test_traces_rejects_a_bad_value_by_name(
    finished_run: Path, flag: str, value: str, named: str, exit_code: int
) -> None:
    code, output = cli("traces", "--out", str(finished_run), flag, value)
    assert code == exit_code and named in output and value in output and "Traceback" not in output


@pytest.fixture
def narrow_terminal():  # type: ignore[no-untyped-def]
    """The console 80 columns wide, as a first user's terminal is."""
    from cli.render import console

    before = console._width
    console.width = 80
    yield
    console._width = before


def lines_of(output: str) -> list[str]:
    return [line.rstrip() for line in output.splitlines()]


LONG_REASON = "video_judge:structure_preservation,temporal_consistency"


def discard_one(out: Path, reason: str = LONG_REASON) -> str:
    from sqlmodel import Session, select

    from store.engine import open_engine
    from store.tables import Episode

    with Session(open_engine(f"sqlite:///{out / 'ditto.db'}")) as s:
        episode = s.exec(select(Episode).where(Episode.status == "accepted")).first()
        assert episode is not None
        episode.status, episode.reason = "discarded", reason
        s.add(episode)
        s.commit()
        return episode.id


def test_traces_fit_80_columns_and_wrap_a_reason_between_words(run_copy: Path, narrow_terminal: None) -> None:
    """A reason of two long criteria was cut ('video_judge:edit_propagation,region…') or broken mid-word."""
    discard_one(run_copy)
    code, output = cli("traces", "--out", str(run_copy))
    assert code == 0 and max(map(len, lines_of(output))) <= 80
    words = " ".join(output.split())
    assert "video judge: structure preservation, temporal consistency" in words
    assert set(re.findall(r"\S*…", output)) <= {"bigbuckbunny.…", "carphone_pris…"}  # only clip names are cut
    code, found = cli("traces", "--out", str(run_copy), "--reason", "video judge: structure preservation")
    assert code == 0 and "1 episode\n" in found  # as shown or as stored (LONG_REASON) finds it


def test_the_summary_keeps_every_discard_reason_whole_at_80_columns(narrow_terminal: None, tmp_path: Path) -> None:
    from agent.runner import RunResult
    from cli.render import console, summary_table
    from store.traces import RunTotals

    totals = RunTotals("run-x", 3, 24, 23, 1, 0, {LONG_REASON: 1}, {"propagate": 12.5}, 20.0)
    result = RunResult(totals, "finished", 86.4, tmp_path / "a" / "long" / "path" / "to" / "the" / "dataset")
    with console.capture() as captured:
        console.print(summary_table(result, "CPU"))
    text = captured.get()
    assert max(map(len, lines_of(text))) <= 80 and "…" not in text
    first_column = " ".join(line.split("│")[1].strip() for line in lines_of(text) if line.startswith("│"))
    assert "discarded: video judge: structure preservation, temporal consistency" in first_column


def test_filters_apply_to_every_table_traces_prints(finished_run: Path, narrow_terminal: None) -> None:
    """`traces --reason scene_cut` printed the whole run's figures under its rows, even with no row."""
    code, output = cli("traces", "--out", str(finished_run), "--reason", "duplicate of")
    listed = listed_ids(output)
    assert code == 0 and listed
    table = output[output.index("by edit category") :]
    counts = [int(line.split()[1]) for line in lines_of(table) if re.match(r"^ ?[a-z_]+ +\d+ +\d+ ", line)]
    assert sum(counts) == len(listed)  # the figures are those of the episodes listed
    assert "key-frame gate" not in output  # a table of the whole run is left out
    code, output = cli("traces", "--out", str(finished_run), "--reason", "no such reason")
    assert code == 0 and "0 episodes" in output and "by edit category" not in output


def test_trace_reads_without_json_and_fits_80_columns(finished_run: Path, narrow_terminal: None) -> None:
    code, output = cli("traces", "--out", str(finished_run), "--status", "accepted")
    code, text = cli("trace", listed_ids(output)[0], "--out", str(finished_run), "--no-prompts")
    assert code == 0 and max(map(len, lines_of(text))) <= 80
    assert '{"' not in text and "input:" not in text  # fields by name, one a line, not JSON
    assert re.search(r"^ +in +clip_\w+ +\S", text, flags=re.M) and re.search(r"^ +out +clip +[0-9a-f]{8}", text, re.M)


def test_the_eta_counts_down_steadily_while_episodes_finish_in_bursts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Episodes at one a minute on average, finishing three at a time: the estimate stays within a fifth of the
    time really left, and never goes up by more than a burst's worth of noise."""
    from cli import render
    from store.traces import RunTotals

    now = [0.0]
    monkeypatch.setattr(render.time, "monotonic", lambda: now[0])
    eta = render.SteadyEta(budget_s=1e9, max_samples=None)
    shown = []
    for second in range(0, 1800):
        now[0] = float(second)
        done = 3 * (second // 180)  # three episodes every three minutes
        eta.moved(RunTotals("r", 1, done, done, 0, 0, spent_device_seconds=1.0), planned=30)
        if second >= 360:
            left = eta.seconds_left()
            assert left is not None and abs(left - (1800 - second)) <= 0.2 * 1800
            shown.append(left)
    assert max(b - a for a, b in zip(shown, shown[1:], strict=False)) <= 180
