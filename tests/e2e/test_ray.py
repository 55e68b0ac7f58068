"""Tools in Ray actor pools (a local Ray with logical GPUs, started while another Ray cluster runs on the
machine): the same samples as a local run; actors killed mid-call, between calls or while loading cost their
calls a retry, not an episode or a second charge; the run's own command on this 2-CPU machine. One Ray
session serves the whole module."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session, select

from agent.ray_pools import ToolHost
from agent.runner import Factory
from agent.sources import sample_clips
from bench.fake_llm_server import Reply, ScriptedLLMServer, plan_json
from store.engine import open_engine
from store.tables import Episode, Run, ToolCall, TrainingRun
from tests.conftest import SMALL
from tests.e2e.ray_runs import POOLED, POOLS, charged_once, charges, one_clip_config, outcome

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="ray is missing: pip install -e '.[scale]'")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def local_ray(foreign_ray_cluster: Path) -> Iterator[None]:
    """A Ray of the module's own: `address="local"`, as every test and bench starts one, never the cluster
    that runs on the machine (which `ray.init()` would join, and then refuse num_cpus and num_gpus)."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=4,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    yield
    ray.shutdown()


def test_more_actors_per_pool_decide_the_same_and_a_wait_for_an_actor_is_recorded(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    """Spreading the episodes over more actors changes no decision. With one actor a pool, calls waited for it:
    recorded as queued_s, beside a charge the actor measured itself. That the wait is not charged is proven on a
    clock of the test's own (tests/agent/test_ray_pools.py): here the seconds two runs measure on two shared
    cores were up to 22% apart, the size of the waits themselves, so comparing them proves nothing."""
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(sample_clips()[0], source / "clip.mp4")
    runs = {}
    for actors in (1, 4):
        pools = {t: {**p, "actors": actors if t in POOLED[3:] else 1} for t, p in POOLS.items()}
        cfg = small_config(
            out=tmp_path / f"x{actors}", source_dir=source, seed=5, executor="ray", pools=pools, episodes_per_clip=8
        )
        runs[actors] = factory = Factory(cfg)
        factory.execute()
    assert outcome(runs[1]) == outcome(runs[4]) and any(d[1] == "accepted" for d in outcome(runs[4])["decisions"])
    with Session(runs[1].engine) as s:
        executed = s.exec(select(ToolCall).where(ToolCall.reused_call_id.is_(None))).all()  # type: ignore[union-attr]
    assert sum(c.queued_s for c in executed) > 0  # two episodes at once (SMALL) met at one actor
    assert charged_once(runs[1]) and charged_once(runs[4])


@pytest.mark.tiny
def test_an_editto_training_round_runs_in_an_actor_of_its_own(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    clip = {"clip_scorer": {"kind": "clip", "path": "tiny:clip", "device": "cpu", "dtype": "float32"}}
    training = {"every": 2, "steps": 3, "heldout_every": 3, "steer_min_samples": 1}
    pools = {**POOLS, "train_editto": {"gpus": 1, "cpus": 0}, "score_clip": {"cpus": 0}}
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
    assert factory.caller.executor.asks["train_editto"].gpus == 1  # type: ignore[attr-defined]
    assert charged_once(factory)


def test_a_hung_call_kills_its_actor_and_the_run_goes_on(tmp_path: Path, small_config) -> None:  # type: ignore[no-untyped-def]
    replies = [Reply(plan_json(), delay_s=60), Reply(plan_json()), Reply(plan_json("Give it a sepia tone."))]
    with ScriptedLLMServer(replies) as server:
        factory = Factory(one_clip_config(tmp_path, small_config, server.url, planner={"timeout_s": 3}))
        result = factory.execute()
    with Session(factory.engine) as s:
        kinds = [c.error_kind for c in s.exec(select(ToolCall).where(ToolCall.tool == "plan_instruction")).all()]
    assert "timeout" in kinds and result.totals.discarded + result.totals.accepted == 2
    assert charged_once(factory)


def pid_of(actor: Any) -> int:
    return ray.get(actor.__ray_call__.remote(lambda host: os.getpid()))


def test_actors_killed_mid_call_between_calls_and_while_loading_cost_a_retry_not_an_episode(
    tmp_path: Path,
    small_config,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Actor processes killed, as a crash or the OOM killer kills them: the planner's only actor in the middle
    of a call (kill -9); then, the pool grown to two, its new actor while it loads and the busy one in the
    middle of the next call, for good; the key-frame judge's only actor between two calls (kill -9); the
    ingest pool's only one for good, then the one that replaced it, for good too, while it loads. Ray restarts
    the others; an actor killed for good (as when a crash that recurs has spent its restarts) is replaced by a
    fresh one at once, in one line that says why, instead of its pool running short or, its last, stopping the
    run; not beyond the pool's target (the planner's, 1, the pool was grown past by hand). The run ends with
    the decisions and the number of charges of an undisturbed run: each interrupted call charged once. (One
    run for all: a run on this module's Ray costs some 40 s, nearly all of it starting its actors.)"""
    with ScriptedLLMServer([Reply(plan_json())]) as server:
        undisturbed = Factory(one_clip_config(tmp_path / "undisturbed", small_config, server.url, executor="local"))
        undisturbed.execute()
    slow, fast = Reply(plan_json(), delay_s=4), Reply(plan_json())
    with ScriptedLLMServer([slow, fast, slow, fast]) as server:  # the killed calls are the slow ones
        pools = {**POOLS, "plan_instruction": {"actors": 1, "cpus": 0}, "judge_keyframe": {"actors": 1, "cpus": 0}}
        cfg = one_clip_config(tmp_path / "killed", small_config, server.url, concurrency=1, pools=pools)
        factory = Factory(cfg)
        planner = factory.caller.executor.pools["plan_instruction"]  # type: ignore[attr-defined]
        judge = factory.caller.executor.pools["judge_keyframe"]  # type: ignore[attr-defined]
        ingest = factory.caller.executor.pools["ingest"]  # type: ignore[attr-defined]
        os.kill(pid_of(judge.actors[0]), signal.SIGKILL)  # between calls: the next waits for Ray's restart
        first_ingest = ingest.actors[0]
        ray.kill(first_ingest, no_restart=True)  # for good: the next call waits for a fresh actor
        deadline = time.monotonic() + 60
        while not (fresh := [a for a in ingest.loading.values() if a != first_ingest]) and time.monotonic() < deadline:
            time.sleep(0.02)
        ray.kill(fresh[0], no_restart=True)  # while it loads its tools
        first_planner = pid_of(planner.actors[0])
        killed_mid_call: list[int] = []  # the pool's actors when one was killed

        def busy_planner_once_asked(requests: int) -> Any:
            while len(server.requests) < requests:
                time.sleep(0.02)
            busy = [a for a in planner.actors if a not in planner.idle and a not in planner.loading.values()]
            killed_mid_call.append(len(planner.actors) if len(busy) == 1 else -1)
            return busy[0]

        def disturb() -> None:
            busy_planner_once_asked(1)
            os.kill(first_planner, signal.SIGKILL)
            planner.resize(2)
            loading = next(iter(planner.loading.values()))
            ray.kill(loading, no_restart=False)  # killed while it loads its tools
            while loading in planner.loading.values():
                time.sleep(0.05)
            killed_for_good.append(busy_planner_once_asked(3))
            ray.kill(killed_for_good[0], no_restart=True)  # its call runs again on the other

        killed_for_good: list[Any] = []
        killer = threading.Thread(target=disturb, daemon=True)
        killer.start()
        with caplog.at_level(logging.WARNING, logger="agent.ray_pools"):
            result = factory.execute()
        killer.join(30)
    assert killed_mid_call == [1, 2]  # a pool of one actor, then of two
    why = "an actor died for good (The actor is dead because it was killed by `ray.kill`.)"
    said = sorted(r.getMessage() for r in caplog.records if "died for good" in r.getMessage())
    assert said == [
        f"Ray pool ingest: {why}; a new one starts",
        f"Ray pool ingest: {why}; a new one starts",
        f"Ray pool plan_instruction: an actor left: {why}; 1 left",
    ]
    assert {first_ingest, fresh[0]} <= ingest.dropped and len(ingest.actors) == 1 and ingest.replaced == 2
    assert killed_for_good[0] in planner.dropped and len(planner.actors) == 1
    assert result.totals.accepted + result.totals.discarded == 2
    assert outcome(factory) == outcome(undisturbed) and charges(factory) == charges(undisturbed)
    assert charged_once(factory)


def test_the_run_command_starts_a_ray_of_its_own_that_fits_this_machine(tmp_path: Path) -> None:
    """`python main.py --executor ray` with no flag about resources, on this 2-CPU machine where a cluster
    started with `ray start` runs (RAY_TMPDIR, as the module's fixture set it): the pools' default
    reservations fit, the run starts a Ray of its own, says so first, and makes its samples."""
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in SMALL.items() if k != "concurrency"}))
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(sample_clips()[0], source / "clip.mp4")
    command = [sys.executable, "main.py", "--executor", "ray", "--max-samples", "1", "--out", str(tmp_path / "out")]
    command += ["--config", str(config), "--source-dir", str(source)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    first = done.stdout.lstrip().splitlines()[0]
    assert first.startswith("Ray: started one for this run on this machine (2 CPUs"), done.stdout
    assert "stopped_max_samples" in done.stdout


def within(seconds: float, make: Any) -> BaseException:
    """What `make()` raised, waited for at most `seconds` (a hang fails the test instead of blocking it)."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            make()
        except BaseException as err:  # noqa: BLE001 -- handed to the test
            raised.append(err)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still waiting after {seconds} s"
    assert raised, "it did not fail"
    return raised[0]


def test_pools_that_do_not_fit_fail_in_one_line_naming_the_pool_never_hang(
    tmp_path: Path,
    small_config,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """This Ray has 4 GPUs. A pool asking 8 per actor is refused before any actor starts; and where the
    cluster looked roomier than it is (another job took the GPUs meanwhile, or an autoscaler never adds the
    node), the actor waits for a node with room only ray_waits.place_s, and the run stops then instead of
    waiting for ever; and --gpus fewer than a pool's one actor needs is refused. No refusal leaves a run
    'running' in the store."""
    pools = {**POOLS, "propagate": {"gpus": 8, "cpus": 0.1}}
    refused = within(60, lambda: Factory(small_config(out=tmp_path / "a", executor="ray", pools=pools)))
    assert "Ray pool propagate: an actor asks for 8 GPUs" in str(refused) and "pools.propagate.gpus" in str(refused)
    monkeypatch.setattr("agent.ray_pools.capacity", lambda free=True: [{"CPU": 2.0, "GPU": 16.0, "memory": 2.0**34}])
    cfg = small_config(out=tmp_path / "b", executor="ray", pools=pools, ray_waits={"place_s": 3})
    refused = within(120, lambda: Factory(cfg))
    assert "Ray pool propagate: no node had room for an actor (8 GPUs" in str(refused)
    assert "ray_waits.place_s (3 s)" in str(refused)
    monkeypatch.undo()
    cfg = small_config(out=tmp_path / "c", executor="ray", gpus=0.5, pools={**POOLS, "propagate": {"gpus": 1}})
    refused = within(60, lambda: Factory(cfg))
    assert "--gpus 0.5 is fewer than one actor of every pool needs" in str(refused)
    for out in ("a", "b", "c"):
        with Session(open_engine(f"sqlite:///{tmp_path / out / 'ditto.db'}")) as s:
            assert s.exec(select(Run)).all() == []
    deadline = time.monotonic() + 30  # nothing of the failed start is left holding GPUs (Ray frees them soon)
    while ray.available_resources().get("GPU") != 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("GPU") == 4


def test_ray_address_auto_is_refused_where_several_clusters_run(tmp_path: Path) -> None:
    """This module's Ray and the foreign cluster both run here: `auto` would be a guess."""
    command = [sys.executable, "main.py", "--executor", "ray", "--ray-address", "auto", "--out", str(tmp_path / "o")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "--ray-address auto:" in done.stdout and "Ray clusters run on this machine" in done.stdout
    assert "HOST:PORT" in done.stdout and "Traceback" not in done.stdout + done.stderr
    with Session(open_engine(f"sqlite:///{tmp_path / 'o' / 'ditto.db'}")) as s:
        assert s.exec(select(Run)).all() == []  # refused before the run's row was written


def test_the_scale_bench_runs_the_product_at_a_small_size() -> None:
    """bench.scale --quick: Factory.execute on PostgreSQL with simulated stages in Ray actors, every setting
    at a tiny size, on a Ray of its own while this module's and the foreign cluster run."""
    pytest.importorskip("psycopg", reason="psycopg is missing: pip install -e '.[scale]'")
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    if "no PostgreSQL server here" in done.stderr:
        pytest.skip("PostgreSQL is not installed: apt-get install postgresql")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if "accepted/h" in line]
    assert len(rows) == 4, done.stdout
    for row in rows:
        assert "busy: caption_clip" in row and "propagate" in row and "PostgreSQL connections" in row, row


def test_each_pools_actor_killed_while_it_loads_its_tools_costs_a_restart_not_the_run(
    tmp_path: Path,
    small_config,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every pool's first actor is killed (as a crash or the OOM killer kills a worker) while Ray is still
    constructing it, i.e. loading its tools, with the probe that waits for it sent: Ray restarts it, the
    probe is sent again, and the run makes its samples."""
    from ray._private import state

    from agent.ray_pools import RayExecutor

    probe, states = RayExecutor._probe, {}

    def probe_then_kill(executor: RayExecutor, actor: Any) -> Any:
        ref = probe(executor, actor)
        if (group := next(g for g, p in executor.pools.items() if actor in p.actors)) not in states:
            states[group] = (state.actors(actor._actor_id.hex()) or {}).get("State", "DEPENDENCIES_UNREADY")
            ray.kill(actor, no_restart=False)
        return ref

    monkeypatch.setattr(RayExecutor, "_probe", probe_then_kill)
    factory = Factory(small_config(executor="ray", pools=POOLS, episodes_per_clip=1, max_samples=1))
    result = factory.execute()
    assert states.keys() == factory.caller.executor.pools.keys()  # type: ignore[attr-defined]
    assert set(states.values()) <= {"DEPENDENCIES_UNREADY", "PENDING_CREATION"}  # none had loaded yet
    assert result.totals.accepted + result.totals.discarded >= 1 and charged_once(factory)


class DyingHost(ToolHost):
    """A ToolHost whose process dies in every fingerprint_clip call (a crash on one input)."""

    def run(self, tool_name: str, inp: Any) -> Any:
        if tool_name == "fingerprint_clip":
            os._exit(1)
        return super().run(tool_name, inp)


def test_a_clip_whose_fingerprint_killed_its_actor_four_times_is_not_used_and_the_trace_says_why(
    tmp_path: Path,
    small_config,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Duplicates of a clip that could not be fingerprinted could not be found: its episodes are discarded as
    unscreened, naming the four deaths, rather than run unchecked."""
    monkeypatch.setattr("agent.ray_pools.ToolHost", DyingHost)
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(sample_clips()[0], source / "clip.mp4")
    factory = Factory(small_config(executor="ray", pools=POOLS, source_dir=source, episodes_per_clip=1))
    factory.execute()
    with Session(factory.engine) as s:
        episodes = s.exec(select(Episode)).all()
        calls = s.exec(select(ToolCall)).all()
    assert [(e.status, e.reason) for e in episodes] == [("discarded", "unscreened")]
    assert "its actor died 4 times" in str(episodes[0].detail)
    assert [c.tool for c in calls] == ["fingerprint_clip"]  # nothing decoded, planned or edited


class UnloadableHost(ToolHost):
    """A ToolHost whose tools do not load, as with weights missing on its node."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.load_error = "OSError: no weights at /models/propagate"


def test_an_actor_whose_tools_do_not_load_is_killed_and_the_run_refused_in_one_line(
    tmp_path: Path,
    small_config,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ray._private import state

    from agent.ray_pools import RayExecutor

    monkeypatch.setattr("agent.ray_pools.ToolHost", UnloadableHost)
    start, started = RayExecutor._start, []
    monkeypatch.setattr(RayExecutor, "_start", lambda *a: started.append(start(*a)) or started[-1])
    refused = within(120, lambda: Factory(small_config(executor="ray", pools=POOLS)))
    assert str(refused).startswith("Ray pool ") and "could not load their tools: OSError: no weights" in str(refused)
    assert "\n" not in str(refused)
    deadline = time.monotonic() + 30  # no process left behind (Ray reaps a killed actor's worker soon)
    while time.monotonic() < deadline and any(state.actors(a._actor_id.hex())["State"] != "DEAD" for a in started):
        time.sleep(0.2)
    assert started and all(state.actors(a._actor_id.hex())["State"] == "DEAD" for a in started)
    pids = [state.actors(a._actor_id.hex())["Pid"] for a in started]
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in pids):
        time.sleep(0.2)
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
