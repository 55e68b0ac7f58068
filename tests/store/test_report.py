"""The report folder: what it writes, that it reads the record right (attempts, retries, costs, links),
and that no model-written text reaches it unescaped. The browser side is test_report_browser.py."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from main import app
from store.engine import open_engine
from store.report_data import attempts_of, report_data
from store.report_diversity import instruction_stats
from store.report_plots import PLOTS
from store.traces import latest_run

pytestmark = pytest.mark.slow


def test_report_folder_has_page_data_plots_and_links_that_exist(finished_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", "--out", str(finished_run)])
    assert result.exit_code == 0 and "6 episodes" in result.output
    folder = finished_run / "report"
    html = (folder / "index.html").read_text()
    assert '<script src="data/index.js"></script>' in html and "report.js" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network
    for name in (
        "acceptance_by_category",
        "device_seconds_by_tool",
        "score_histograms",
        "judge_and_attempts_by_category",
    ):
        assert f'src="plots/{name}.svg"' in html and (folder / "plots" / f"{name}.svg").stat().st_size > 1000
    index = json.loads(re.sub(r"^window.DITTO_INDEX = |;\s*$", "", (folder / "data" / "index.js").read_text()))
    assert len(index["episodes"]) == 6 and index["thresholds"]["video"]
    detail = (folder / "data" / "detail-00000.js").read_text()
    assert "<" not in detail  # '<' is written as \u003c: no '</script>' can close anything
    episodes = json.loads(detail.removeprefix("DITTO_CHUNK(0, ").removesuffix(");\n"))
    media = [e["media"][k] for e in episodes for k in ("source", "edited", "keyframe") if e["media"][k]]
    assert len(media) >= 3 * sum(e["status"] == "accepted" for e in episodes)
    assert all((folder / m).resolve().is_file() for m in media)
    engine = open_engine(f"sqlite:///{finished_run / 'ditto.db'}")
    run = latest_run(engine)
    assert run is not None
    for key in (run.id, run.profile, "edit_vocabulary.yaml", "cpu-metric-video-judge-v4", "budget"):
        assert key in html


def test_report_works_on_the_base_install_without_matplotlib(finished_run: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as without the `report` extra: the import fails
    result = CliRunner().invoke(app, ["report", "--out", str(finished_run)], catch_exceptions=False)
    assert result.exit_code == 0 and "6 episodes, 0 plots" in result.output, result.output
    html = (finished_run / "report" / "index.html").read_text()
    assert "No plots: matplotlib is not installed" in html and "report.js" in html


def test_attempts_record_what_was_tried_and_why_the_next_attempt_ran() -> None:
    verdict = {"stage": "keyframe", "attempt": 0, "judge": "j", "scores": {"edit_strength": 1.0}, "reasons": {}}
    updates = [
        ("ingest", {"attempt": 0, "clip": "c.mp4"}),
        ("plan_instruction", {"edit": {"instruction": "Make it sepia.", "category": "style"}}),
        ("judge_keyframe", {"verdicts": [verdict]}),
        ("rewrite_instruction", {"attempt": 1, "edit": {"instruction": "Age it.", "category": "style"}}),
        ("propagate", {"failure": {"node": "propagate", "kind": "oom", "field": None, "detail": "8 GiB"}}),
        ("lower_memory", {"attempt": 2, "failure": None}),
    ]
    attempts = attempts_of(updates, {1: "- edit_strength: scored 1.0 (needs 2.5)"})
    assert [a["instruction"] for a in attempts] == ["Make it sepia.", "Age it.", None]
    assert attempts[0]["verdicts"] == [verdict] and attempts[0]["next"] == {
        "node": "rewrite_instruction",
        "why": "- edit_strength: scored 1.0 (needs 2.5)",
    }
    assert attempts[1]["next"] == {"node": "lower_memory", "why": "propagate failed (oom): 8 GiB"}
    assert "next" not in attempts[2]


def test_an_attempt_with_weaker_control_says_why_it_ran() -> None:
    updates = [
        ("plan_instruction", {"edit": {"instruction": "Add a red balloon.", "category": "local_add"}}),
        ("judge_video", {"verdicts": [{"stage": "video", "attempt": 0, "scores": {"shape_fidelity": 2.0}}]}),
        ("lower_control", {"attempt": 1, "control_level": 1, "failure": None}),
    ]
    attempts = attempts_of(updates, {})
    assert attempts[0]["next"]["node"] == "lower_control" and "shape criterion" in attempts[0]["next"]["why"]
    assert len(attempts) == 2


def test_report_costs_add_up_to_the_run_total(finished_run: Path) -> None:
    engine = open_engine(f"sqlite:///{finished_run / 'ditto.db'}")
    run = latest_run(engine)
    assert run is not None
    data = report_data(engine, run.id)
    before_episodes = data.totals.device_seconds_by_tool.get("fingerprint_clip", 0.0)  # every source, run-wide
    assert before_episodes > 0
    total = data.totals.spent_device_seconds - before_episodes
    assert sum(e["cost_s"] for e in data.episodes) == pytest.approx(total, abs=0.01)
    assert all(e["category"] and e["instruction"] for e in data.episodes if e["status"] == "accepted")
    assert all(plot(data) is None or plot(data).get_axes() for plot in PLOTS)


def test_instruction_variety_counts_repeats_once_and_names_the_edits_commonest_words() -> None:
    planned = [
        {"instruction": "Make it look like a pencil sketch.", "status": "accepted"},
        {"instruction": "make it look like a PENCIL sketch", "status": "discarded"},  # the same, told apart by case
        {"instruction": "Make the sky look stormy.", "status": "accepted"},
    ]
    stats = instruction_stats("global_style", planned)
    assert (stats.instructions, stats.distinct, stats.accepted) == (3, 2, 2)
    assert stats.distinct_share == pytest.approx(2 / 3)
    assert stats.commonest[:3] == [("look", 3), ("make", 3), ("like", 2)]  # 'it', 'a', 'the' are left out


def test_report_shows_each_categorys_variety_and_each_clips_instructions(finished_run: Path) -> None:
    result = CliRunner().invoke(app, ["report", "--out", str(finished_run)])
    assert result.exit_code == 0, result.output
    engine = open_engine(f"sqlite:///{finished_run / 'ditto.db'}")
    run = latest_run(engine)
    assert run is not None
    data = report_data(engine, run.id)
    planned = [e for e in data.episodes if e["instruction"]]
    assert data.categories[-1].name == "all" and data.categories[-1].instructions == len(planned) > 0
    assert sum(c.instructions for c in data.categories[:-1]) == len(planned)
    html = (finished_run / "report" / "index.html").read_text()
    for c in data.categories:
        assert f"<th>{c.name}</th><td>{c.instructions}</td>" in html
    clips = json.loads((finished_run / "report" / "data" / "clips.js").read_text()[len("DITTO_CLIPS(") : -3])
    assert sorted(i["text"] for c in clips for i in c["instructions"]) == sorted(e["instruction"] for e in planned)
    shares = [c["distinct"] / len(c["instructions"]) for c in clips]
    assert shares == sorted(shares) and f"({len(clips)} clips, least varied first)" in html
