"""A store made by an earlier version still opens: columns added since are added to it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from store.engine import open_engine


def test_a_store_from_before_error_field_gets_the_column(tmp_path: Path) -> None:
    db = tmp_path / "ditto.db"
    open_engine(f"sqlite:///{db}").dispose()
    old = sqlite3.connect(db)
    old.execute("alter table toolcall drop column error_field")  # as the store was before the column
    old.execute(
        "insert into toolcall (call_key, node, attempt, tool, tool_version, backend, input_json, prompts_json, "
        "device_seconds, devices, queued_s, error_kind, error_detail, at) "
        "values ('k', 'ingest', 0, 'ingest', '1', 'b', '{}', '[]', 0, 1, 0, 'bad_input', 'gone', '2026-01-01')"
    )
    old.commit()
    old.close()
    open_engine(f"sqlite:///{db}").dispose()
    rows = sqlite3.connect(db).execute("select error_kind, error_field, error_detail from toolcall").fetchall()
    assert rows == [("bad_input", None, "gone")]


ADDED_SINCE = {
    "edit categories": {
        "episode": ("categories_json", "category_rounds_json", "planned_category"),
        "trainingrun": ("category_scores_json", "shares_before_json", "shares_after_json"),
        "heldoutevaluation": ("metrics_json",),
    },
    "held-out losses and counts": {
        "trainingrun": ("eval_counts_json", "heldout_loss", "category_counts_json"),
        "heldoutevaluation": ("flow_loss",),
    },
}


@pytest.mark.parametrize("added", ADDED_SINCE.values(), ids=ADDED_SINCE.keys())
def test_a_store_from_before_gets_the_columns_added_since(tmp_path: Path, added: dict[str, tuple[str, ...]]) -> None:
    db = tmp_path / "ditto.db"
    open_engine(f"sqlite:///{db}").dispose()
    old = sqlite3.connect(db)
    for table, columns in added.items():
        for column in columns:
            old.execute(f"alter table {table} drop column {column}")
    old.commit()
    old.close()
    open_engine(f"sqlite:///{db}").dispose()
    now = sqlite3.connect(db)
    for table, columns in added.items():
        have = {row[1] for row in now.execute(f"pragma table_info({table})")}
        assert set(columns) <= have, table


def test_a_store_from_before_the_clip_index_gets_it(tmp_path: Path) -> None:
    """Admission asks for a clip's other episodes at every admission: without the index on clip_path that
    scanned every episode of the run."""
    db = tmp_path / "ditto.db"
    open_engine(f"sqlite:///{db}").dispose()
    old = sqlite3.connect(db)
    old.execute("drop index ix_episode_run_id_clip_path")
    old.commit()
    old.close()
    open_engine(f"sqlite:///{db}").dispose()
    indexes = {row[1] for row in sqlite3.connect(db).execute("pragma index_list(episode)")}
    assert "ix_episode_run_id_clip_path" in indexes
