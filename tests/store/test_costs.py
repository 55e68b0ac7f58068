"""The key-frame gate's saving, from a real cpu run's record (store/costs.py)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from agent.runner import Factory
from main import app
from store.costs import VIDEO_STAGES, gate_saving

pytestmark = pytest.mark.slow
PRIORS = {"propagate": 40.0, "enhance_temporal": 30.0, "judge_video": 2.0}


def test_every_attempt_the_gate_stops_saves_the_prior_cost_of_the_video_stages(small_config) -> None:  # type: ignore[no-untyped-def]
    # No key frame can pass (a criterion the metric judge does not score fails: policy.failing_criteria), so no
    # video stage is ever measured: the priors apply.
    cfg = small_config(
        policy={"keyframe_pass": {"never_scored": 0.0}, "max_attempts": 2, "prior_stage_device_seconds": PRIORS},
        episodes_per_clip=1,
    )
    factory = Factory(cfg)
    result = factory.execute()
    saving = gate_saving(factory.engine, factory.run.id)
    gated = [reason for reason in result.totals.discarded_by_reason if reason.startswith("keyframe_judge:")]
    episodes_at_gate = sum(result.totals.discarded_by_reason[r] for r in gated)
    assert episodes_at_gate >= 1 and saving.discarded_at_gate == episodes_at_gate
    assert saving.gated_episodes == episodes_at_gate
    assert saving.gated_attempts == 2 * episodes_at_gate  # both attempts of each stopped at the gate
    assert saving.per_call == PRIORS and not any(saving.measured.values())
    assert saving.saved_device_seconds == pytest.approx(saving.gated_attempts * sum(PRIORS.values()))


def test_a_run_whose_key_frames_pass_saves_nothing_and_measures_its_video_stages(small_config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = small_config(policy={"keyframe_pass": {}, "prior_stage_device_seconds": PRIORS}, episodes_per_clip=1)
    factory = Factory(cfg)
    factory.execute()
    saving = gate_saving(factory.engine, factory.run.id)
    assert saving.gated_attempts == 0 and saving.saved_device_seconds == 0.0
    assert all(saving.measured[stage] for stage in VIDEO_STAGES)  # bigbuckbunny and carphone reach the video
    assert saving.per_call != PRIORS

    listing = CliRunner().invoke(app, ["traces", "--out", str(cfg.out)], catch_exceptions=False)
    assert listing.exit_code == 0, listing.output
    assert re.search(r"key-frame gate: CPU-seconds saved\s+│ 0\.00", listing.output)
