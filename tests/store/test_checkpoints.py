"""LangGraph's checkpoint file, damaged, is refused in one line that names it and says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.checkpoints import CheckpointsUnreadable, open_checkpointer


def test_a_truncated_checkpoint_file_is_named_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite"
    open_checkpointer(f"sqlite:///{tmp_path / 'ditto.db'}", path).conn.close()  # type: ignore[attr-defined]
    path.write_bytes(path.read_bytes()[:5000] + b"\0" * 100)
    with pytest.raises(CheckpointsUnreadable, match="checkpoints.sqlite is not a readable checkpoint database") as err:
        open_checkpointer(f"sqlite:///{tmp_path / 'ditto.db'}", path)
    assert "\n" not in str(err.value) and "move it aside" in str(err.value)
