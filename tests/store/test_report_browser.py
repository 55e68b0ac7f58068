"""The report in real headless Chromium (Debian's, driven by Playwright): opened from disk, its videos
load and play side by side, a filter changes what is shown, the plots render, and an instruction with a
<script> in it is shown as text, never run. The screenshot is kept. Spot-check labels clicked on it persist
and download as a case folder."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select
from typer.testing import CliRunner

from main import app
from store.cases import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from store.engine import open_engine
from store.tables import Episode, NodeEvent
from tests.conftest import SMALL

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root in CI: the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",  # the closed network would be flooded with refused connections
    "--disable-component-update",
    "--no-first-run",
]
HOSTILE = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> Make it sepia.'
CLIP_SECONDS = 17 / 12  # tests.conftest.SMALL: 17 frames at 12 fps


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def plant_instruction(out: Path, text: str) -> str:
    """As an unchecked planner answer would land: the first accepted episode's instruction becomes `text`."""
    with Session(open_engine(f"sqlite:///{out / 'ditto.db'}")) as s:
        episode = s.exec(select(Episode).where(Episode.status == "accepted").order_by(Episode.index)).first()
        assert episode is not None
        event = s.exec(
            select(NodeEvent).where(NodeEvent.episode_id == episode.id, NodeEvent.node == "plan_instruction")
        ).one()
        update = json.loads(event.update_json)
        update["edit"]["instruction"] = text
        event.update_json = json.dumps(update)
        s.add(event)
        s.commit()
        return episode.id


def keep_screenshot(page, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot))
    kept = Path(os.environ.get("DITTO_SCREENSHOT_DIR", tempfile.gettempdir())) / "ditto-report-screenshot.png"
    shutil.copyfile(shot, kept)
    with capsys.disabled():
        sys.stdout.write(f"\nreport screenshot: {shot} (copy: {kept})\n")


def test_report_plays_filters_plots_and_escapes_in_chromium(  # type: ignore[no-untyped-def]
    run_copy: Path, browser, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile_id = plant_instruction(run_copy, HOSTILE)
    result = CliRunner().invoke(app, ["report", "--out", str(run_copy)])
    assert result.exit_code == 0, result.output
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto((run_copy / "report" / "index.html").as_uri())
    page.wait_for_function("document.body.dataset.renders === '1'")

    index = page.evaluate("window.DITTO_INDEX.episodes")
    assert page.locator("article.episode").count() == len(index) == 6
    assert page.evaluate("window.__xss") is None
    hostile = page.locator(f'article[id="{hostile_id}"] .instruction')
    assert hostile.inner_text() == HOSTILE

    page.click("#clips summary")  # the per-clip instructions load from disk when opened
    page.wait_for_selector(".clips")
    planned = [e for e in index if e["clip"] != "cuts.mp4"]  # cuts.mp4 is discarded for its cuts before planning
    assert page.locator(".clips tr").count() == len({e["clip"] for e in planned}) == 2
    assert page.locator(".clips li").count() == len(planned)

    plots = page.locator("#plots img")
    assert plots.count() >= 5
    for k in range(plots.count()):
        plots.nth(k).scroll_into_view_if_needed()
        assert plots.nth(k).evaluate("img => img.complete && img.naturalWidth > 0"), plots.nth(k).get_attribute("src")

    card = page.locator(f'article[id="{hostile_id}"]')
    card.scroll_into_view_if_needed()
    videos = card.locator("video")
    assert videos.count() == 2
    page.wait_for_function(
        "el => [...el.querySelectorAll('video')].every(v => v.readyState >= 2)", arg=card.element_handle()
    )
    for k in range(2):
        assert abs(videos.nth(k).evaluate("v => v.duration") - CLIP_SECONDS) < 0.1
    card.locator("button.play").click()
    page.wait_for_function(
        "el => [...el.querySelectorAll('video')].every(v => !v.paused && v.currentTime > 0.2)",
        arg=card.element_handle(),
    )
    drift = card.evaluate(
        "el => { const [a, b] = el.querySelectorAll('video'); return Math.abs(a.currentTime - b.currentTime); }"
    )
    assert drift < 0.3
    keep_screenshot(page, tmp_path, capsys)

    page.select_option("#f-status", "discarded")
    page.wait_for_function("document.body.dataset.renders === '2'")
    shown = page.locator("article.episode")
    discarded = [e for e in index if e["status"] == "discarded"]
    assert 0 < shown.count() == len(discarded) < len(index)
    assert {shown.nth(k).get_attribute("data-status") for k in range(shown.count())} == {"discarded"}
    assert page.locator(f'article[id="{hostile_id}"]').count() == 0

    page.select_option("#f-status", "")
    page.select_option("#sort", "cost-desc")
    page.wait_for_function("document.body.dataset.renders === '4'")
    costs = [e["cost_s"] for e in sorted(index, key=lambda e: -e["cost_s"])]
    first = page.locator("article.episode").first.get_attribute("id")
    assert next(e for e in index if e["id"] == first)["cost_s"] == costs[0]
    assert errors == []


def test_spot_check_labels_persist_and_download_as_a_case_folder(  # type: ignore[no-untyped-def]
    run_copy: Path, browser, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["report", "--out", str(run_copy)])
    assert result.exit_code == 0, result.output
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto((run_copy / "report" / "index.html").as_uri())
    page.wait_for_function("document.body.dataset.renders === '1'")
    accepted = page.locator("article.episode.accepted")
    assert accepted.count() >= 3
    ids = [accepted.nth(k).get_attribute("id") for k in range(3)]
    for k, label in enumerate(("accept", "accept", "reject")):
        accepted.nth(k).locator(f"button.{label}").click()
    note = 'half the seat is still blue, "mostly" right'  # a comma and quotes: the CSV quotes the cell
    accepted.nth(2).locator(".label-note").fill(note)
    accepted.nth(2).locator(".label-note").press("Tab")

    page.reload()  # kept in the browser: a reload (or a report written again) shows them
    page.wait_for_function("document.body.dataset.renders === '1'")
    pressed = page.locator("article.episode button[aria-pressed=true]")
    assert [pressed.nth(k).get_attribute("data-label") for k in range(pressed.count())] == [
        "accept",
        "accept",
        "reject",
    ]
    assert page.locator("#labels-count").inner_text().startswith("3 labelled (2 accept, 1 reject)")
    all_row = page.locator(".agreement tr.all td")
    assert [all_row.nth(k).inner_text() for k in range(4)] == ["3", "2 (67%)", "1", "0"]  # the judges accepted all 3
    page.select_option("#f-label", "reject")
    page.wait_for_function("document.body.dataset.renders === '2'")
    assert [a.get_attribute("id") for a in page.locator("article.episode").all()] == [ids[2]]

    with page.expect_download() as download:
        page.click("#download-cases")
    cases = tmp_path / "labels" / "cases.csv"
    cases.parent.mkdir()
    download.value.save_as(cases)
    assert download.value.suggested_filename == "cases.csv" and errors == []
    with cases.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]
    assert [r["label"] for r in rows] == ["accept", "accept", "reject"] and rows[2]["note"] == note
    for row in rows:  # absolute paths into the run's artifacts: the csv works from any folder
        assert all(
            Path(row[k]).is_absolute() and Path(row[k]).is_file() for k in ("source", "edited", "edited_keyframe")
        )
        assert row["instruction"] and row["category"] and row["target_description"]

    # The folder as downloaded is what calibrate reads, with the run's own settings.
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in SMALL.items() if k != "budget_gpu_days"}))
    calibrated = CliRunner().invoke(app, ["judges", "calibrate", "--cases", str(cases.parent), "--config", str(config)])
    assert calibrated.exit_code == 0, calibrated.output
    said = " ".join(calibrated.output.split())
    assert all(row["category"] in said for row in rows), said
    # The run's judges, run again on its own samples, accept all three: two labels agree, one is a false accept.
    assert "all 3 2 1 0 0 0.67 1.00" in said, said
