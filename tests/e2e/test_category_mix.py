"""The category mix of a cpu run: twelve accepted samples cover every category the cpu backends make, a
local one included, each within one sample of its target share; figures per category reach the summary,
`traces --category` and record.json."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent.config import load_config
from main import app
from tests.conftest import SMALL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def twelve(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("mix")
    config = folder / "small.yaml"
    config.write_text(yaml.safe_dump({"tools": SMALL["tools"], "policy": SMALL["policy"]}))  # smaller frames only
    out = folder / "out"
    result = CliRunner().invoke(
        app, ["--max-samples", "12", "--budget-gpu-days", "1", "--out", str(out), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def test_twelve_samples_cover_four_categories_within_one_sample_of_their_targets(twelve) -> None:  # type: ignore[no-untyped-def]
    out, _ = twelve
    records = [json.loads(p.read_text()) for p in (out / "dataset").glob("*/record.json")]
    assert len(records) == 12
    got = Counter(r["category"] for r in records)
    shares = load_config("cpu", None, {"out": out}).target_shares()
    assert len(got) >= 4 and "local_attribute" in got, got
    assert all(abs(got[c] - share * 12) <= 1 for c, share in shares.items()), (got, shares)


def test_episodes_of_one_clip_get_different_categories_and_never_repeat_an_instruction(twelve) -> None:  # type: ignore[no-untyped-def]
    out, _ = twelve
    db = sqlite3.connect(out / "ditto.db")
    by_clip: dict[str, list[str]] = {}
    for clip, category in db.execute("select clip_path, category from episode order by `index`"):
        by_clip.setdefault(clip, []).append(category)
    # Variety per clip, as far as the clip allows: bikes.mp4 has no distinct object to recolour and no plain
    # band for a subtitle, so only the two global categories fit it.
    for categories in by_clip.values():
        assert categories[0] != categories[1] and len(set(categories)) >= 2, categories
    assert max(len(set(categories)) for categories in by_clip.values()) >= 3, by_clip
    instructions = [
        json.loads(r)["instruction"] + json.loads(r)["source_clip"]
        for (r,) in db.execute("select record_json from sample")
    ]
    assert len(set(instructions)) == len(instructions)


def test_figures_per_category_in_summary_traces_and_records(twelve) -> None:  # type: ignore[no-untyped-def]
    out, output = twelve
    assert "by edit category" in output and "local_attribute" in output
    listed = CliRunner().invoke(app, ["traces", "--out", str(out), "--category", "local_attribute"])
    assert listed.exit_code == 0, listed.output
    db = sqlite3.connect(out / "ditto.db")
    (expected,) = db.execute(
        "select count(*) from episode where coalesce(planned_category, category) = 'local_attribute'"
    ).fetchone()
    assert f"{expected} episodes" in listed.output and "by edit category" in listed.output
    figures = listed.output.split("by edit category")[1]
    assert "local_attribute" in figures and "global_style" not in figures  # only the asked category's figures
    records = [json.loads(p.read_text()) for p in (out / "dataset").glob("*/record.json")]
    assert all(r["category"] in ("global_style", "global_freeform", "local_attribute", "text") for r in records)
