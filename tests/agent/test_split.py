"""--gpus N (or `pools: auto` with gpus: N) shares GPUs among the pools by each stage's cost per accepted sample."""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.actor_pool import Pool
from agent.budget import split_gpus, weigh_resplit
from agent.config import ConfigError, load_config
from agent.ray_cluster import Ask, training_gpus
from agent.ray_pools import RayExecutor
from agent.runner import split_due
from tests.agent.test_ledger import FakeClock
from tests.agent.test_ray_pools import FakeActors, loaded_pool


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


GPUS_PER_ACTOR = {"caption_clip": 0.5, "edit_keyframe": 1, "judge_keyframe": 0.5, "propagate": 1}
GPUS_PER_ACTOR |= {"enhance_temporal": 1, "judge_video": 0.5}
# Device-seconds per episode: propagation and the enhancer cost the same, so that 8 GPUs split 3/2 or 2/3
# between them model the same rate, and noise tips split_gpus one way or the other.
TIED = {"caption_clip": 0.1, "edit_keyframe": 0.3, "judge_keyframe": 0.1, "propagate": 2.0}
TIED |= {"enhance_temporal": 2.0, "judge_video": 0.25}
# bench/scale.yaml's stages (seconds x 8 x the GPUs of an actor): 8 GPUs split 1/1/1/3/2/2
SCALE = {"caption_clip": 0.08, "edit_keyframe": 0.32, "judge_keyframe": 0.08, "propagate": 2.0}
SCALE |= {"enhance_temporal": 1.28, "judge_video": 0.24}


def executor_on(gpus: float, load_s: float) -> RayExecutor:
    """A RayExecutor's split bookkeeping without Ray: pools of fake actors, loaded, as the run starts them
    with no priors (evenly), each pool's actors having taken `load_s` to load."""
    executor = RayExecutor.__new__(RayExecutor)
    executor.cfg = SimpleNamespace(
        gpus=gpus,
        pools={},
        budget_device_seconds=1e9,
        training=SimpleNamespace(every=None),
        backends=SimpleNamespace(editto=None),
    )  # type: ignore[assignment]
    executor.asks = {g: Ask(cpus=0.1, gpus=n) for g, n in GPUS_PER_ACTOR.items()}
    executor.pool_of = {g: g for g in GPUS_PER_ACTOR}
    executor.nodes = [{"CPU": 16.0, "GPU": gpus, "memory": 2.0**36}]
    executor.alive, executor.targets, executor.pools = {"node": executor.nodes[0]}, {}, {}
    for group, count in executor.split({}).items():
        executor.pools[group] = loaded_pool(count)[0]
        executor.pools[group].load_s = [load_s]
    return executor


def weighings(truth: dict[str, float], totals: dict[str, float], rng: random.Random, times: int) -> Iterator[dict]:
    """What the run hands rebalance every 20 finished episodes: each tool's charges so far, each episode's
    charge of a stage its true cost x uniform(0.5, 1.5)."""
    for _ in range(times):
        for _ in range(20):
            for tool, cost in truth.items():
                totals[tool] = totals.get(tool, 0.0) + cost * rng.uniform(0.5, 1.5)
        yield dict(totals)


def test_noisy_costs_around_a_fixed_truth_do_not_move_gpus_back_and_forth() -> None:
    executor, rng, totals = executor_on(8, load_s=180.0), random.Random(2), {}
    per_actor = dict(GPUS_PER_ACTOR)
    splits, held = [], []
    for measured in weighings(TIED, totals, rng, 30):
        splits.append(split_gpus(measured, per_actor, 8))
        executor.rebalance(measured)
        held.append({g: len(p.actors) for g, p in executor.pools.items()})
    moves_by_cost_alone = sum(a != b for a, b in itertools.pairwise(splits))
    assert moves_by_cost_alone >= 3  # re-split from each weighing's costs, GPUs would go back and forth
    assert all(h == held[0] for h in held)  # one move, from the even start, at the first weighing
    assert held[0]["propagate"] + held[0]["enhance_temporal"] == 5


def test_a_real_change_of_costs_moves_gpus_and_the_line_says_the_modelled_gain(caplog) -> None:  # type: ignore[no-untyped-def]
    executor, rng, totals = executor_on(8, load_s=180.0), random.Random(1), {}
    for measured in weighings(SCALE, totals, rng, 10):
        executor.rebalance(measured)
    before = {g: len(p.actors) for g, p in executor.pools.items()}
    assert before == {"caption_clip": 1, "edit_keyframe": 1, "judge_keyframe": 1, "propagate": 3} | {
        "enhance_temporal": 2,
        "judge_video": 2,
    }
    slower = {**SCALE, "enhance_temporal": 3 * SCALE["enhance_temporal"]}  # longer clips to enhance, say
    held = []
    with caplog.at_level(logging.WARNING, logger="agent.ray_pools"):
        for measured in weighings(slower, totals, rng, 20):
            executor.rebalance(measured)
            held.append({g: len(p.actors) for g, p in executor.pools.items()})
    assert held[-1]["enhance_temporal"] > before["enhance_temporal"]
    assert held[-1]["propagate"] < before["propagate"]
    enhancers = [h["enhance_temporal"] for h in held]
    assert enhancers == sorted(enhancers)  # towards the new truth, never back
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("GPU split:")]
    assert any("propagate 3 -> 2, enhance_temporal 2 -> 3" in line for line in lines), lines
    assert all("modelled" in line and "x the samples per hour (bottleneck" in line for line in lines)


def test_a_move_is_weighed_against_the_time_its_actors_load_and_the_budget_left() -> None:
    now, new = {"propagate": 1, "enhance_temporal": 3}, {"propagate": 2, "enhance_temporal": 2}
    costs, per_actor = {"propagate": 2.0, "enhance_temporal": 1.5}, {"propagate": 1.0, "enhance_temporal": 1.0}
    taken = weigh_resplit(now, new, costs, per_actor, {"propagate": 300.0}, left_s=36_000)
    assert taken.move and taken.why.startswith("modelled 2.00x the samples per hour (bottleneck propagate -> ")
    # 330 s of budget left, 300 of them loading propagation's new actor: 1.09x over what is left
    late = weigh_resplit(now, new, costs, per_actor, {"propagate": 300.0}, left_s=330)
    assert not late.move and "1.09x over" in late.why and "under the 1.1x a move needs" in late.why
    close = weigh_resplit(now, new, {"propagate": 2.0, "enhance_temporal": 3.8}, per_actor, {}, left_s=36_000)
    assert not close.move and close.why.startswith("modelled 1.05x")  # 2.0 -> 1.9 s per GPU at the bottleneck


def test_a_pool_measures_how_long_its_actors_take_to_load(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock, fake = FakeClock(), FakeActors()
    monkeypatch.setattr(time, "perf_counter", clock)
    pool = Pool("p", fake.start, fake.probe, fake.kill)
    pool.resize(2)
    clock.advance(30)
    pool.loaded(("probe", 0))
    clock.advance(60)
    pool.loaded(("probe", 1))
    assert pool.typical_load_s() == 60  # the median of 30 and 90 s


def test_the_split_is_weighed_every_20_episodes_once_as_many_have_finished_as_run_at_once() -> None:
    """The first episodes to finish are those discarded early, which never paid for propagation."""
    assert [n for n in range(1, 121) if split_due(n, concurrency=48)] == [60, 80, 100, 120]
    assert [n for n in range(1, 61) if split_due(n, concurrency=2)] == [20, 40, 60]


def test_the_gpus_of_editto_rounds_on_several_workers_are_kept_out_of_the_split(small_config) -> None:  # type: ignore[no-untyped-def]
    """--gpus is all the run holds: a run's own Ray has exactly that many, so the pools taking every one
    would leave a data-parallel round refused at its start, hours in."""
    editto = {"kind": "wan_vace", "path": "/models/x", "device": "cuda", "workers": 3}
    cfg = small_config(executor="ray", gpus=8, training={"every": 2}, backends={"editto": editto})
    executor = executor_on(8, load_s=1.0)
    executor.cfg = cfg
    assert sum(n * GPUS_PER_ACTOR[g] for g, n in executor.split({}).items()) <= 5
    assert training_gpus(small_config(executor="ray", gpus=8, backends={"editto": editto})) == 0  # no training
    assert training_gpus(small_config(training={"every": 2}, backends={"editto": {**editto, "device": "cpu"}})) == 0
    executor.cfg = small_config(
        executor="ray", gpus=8, training={"every": 2}, backends={"editto": {**editto, "workers": 7}}
    )
    with pytest.raises(ConfigError, match="once 7 of --gpus 8 are kept for Editto's rounds"):
        executor.split({})
