"""--gpus N (or `pools: auto` with gpus: N) shares GPUs among the pools by each stage's cost per accepted sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.budget import split_gpus
from agent.config import ConfigError, load_config


def test_gpus_follow_cost_and_all_are_used() -> None:
    split = split_gpus({"propagate": 3.0, "judge": 1.0}, {"propagate": 1, "judge": 1}, 8)
    assert split == {"propagate": 6, "judge": 2}


def test_every_pool_keeps_an_actor_and_fractions_share_a_gpu() -> None:
    costs = {"propagate": 40.0, "enhance": 35.0, "judge": 0.0, "depth": 1.0}
    per_actor = {"propagate": 1.0, "enhance": 1.0, "judge": 0.5, "depth": 0.5}
    split = split_gpus(costs, per_actor, 8)
    assert split["judge"] == split["depth"] == 1 and split["propagate"] >= split["enhance"] >= 2
    assert sum(n * per_actor[p] for p, n in split.items()) <= 8


def test_too_few_gpus_for_one_actor_each_is_an_error_naming_the_flag() -> None:
    with pytest.raises(ValueError, match="--gpus 1"):
        split_gpus({"a": 1.0, "b": 1.0}, {"a": 1, "b": 1}, 1)


def test_pools_auto_splits_the_gpus_given(small_config) -> None:  # type: ignore[no-untyped-def]
    cfg = small_config(executor="ray", pools="auto", gpus=8)
    assert cfg.pools == {} and cfg.gpus == 8  # every pool as its backend spec says, actors by the split


def test_pools_auto_without_a_gpu_count_is_an_error_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text("executor: ray\npools: auto\n")
    with pytest.raises(ConfigError, match=r"in .*cluster\.yaml: pools: auto .* gpus: N or --gpus N"):
        load_config("cpu", config)
    assert load_config("cpu", config, {"gpus": 4}).gpus == 4  # the flag gives the count


def test_the_split_counts_finished_episodes_and_run_level_calls_not_those_in_flight(tmp_path: Path) -> None:
    """An episode in flight has paid for its first stages only: counted, they would look costlier than they are."""
    from sqlmodel import Session

    from agent.budget import cost_by_tool
    from store.engine import open_engine
    from store.tables import Episode, Run, ToolCall

    engine = open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with Session(engine) as s:
        s.add(Run(id="r", profile="cpu", budget_device_seconds=1.0, seed=0, config_json="{}"))
        s.flush()
        for episode, status in (("done", "accepted"), ("going", "running")):
            s.add(Episode(id=episode, run_id="r", index=0, clip_path="c.mp4", variant=0, seed=0, status=status))
        s.flush()
        calls = [("done", "edit_keyframe", 1.0), ("done", "propagate", 4.0), ("going", "edit_keyframe", 1.0)]
        calls.append((None, "fingerprint_clip", 0.5))  # screening: no episode
        for n, (episode, tool, seconds) in enumerate(calls):
            site = {"episode_id": episode, "node": tool, "attempt": 0, "tool": tool}
            s.add(
                ToolCall(
                    call_key=str(n),
                    tool_version="1",
                    backend="b",
                    input_json="{}",
                    run_id="r",
                    device_seconds=seconds,
                    **site,
                )
            )
        s.commit()
    assert cost_by_tool(engine, "r") == {"edit_keyframe": 1.0, "propagate": 4.0, "fingerprint_clip": 0.5}
