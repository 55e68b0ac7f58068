"""Run configs stored by earlier versions still load."""

from __future__ import annotations

import json

from agent.config import RunConfig, load_config


def test_a_config_stored_with_a_retired_key_still_loads() -> None:
    """metadata_every (metadata.csv rewritten every N samples) was stored with every run before commits
    appended to the file; those runs must resume."""
    stored = json.loads(load_config("cpu").model_dump_json())
    assert RunConfig.model_validate({**stored, "metadata_every": 10}) == RunConfig.model_validate(stored)
