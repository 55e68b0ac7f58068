"""Editto training inside a run: the supervisor trains at the right counts, through call(), charged once;
each round resumes the last checkpoint, publishes a checkpoint folder, records its global batch, and stores
held-out scores with and without the edited reference frame, on a held-out set that grows round by round."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

pytest.importorskip("torch")
pytestmark = [pytest.mark.tiny, pytest.mark.slow]

from agent.runner import Factory  # noqa: E402
from main import app  # noqa: E402
from models.cpu.metric_judge import MetricVideoJudge  # noqa: E402
from store.tables import HeldoutEvaluation, Run, Sample, ToolCall, TrainingRun  # noqa: E402
from store.training import training_runs  # noqa: E402

EVERY = 2
TRAINING = {"every": EVERY, "steps": 3, "heldout_every": 3}
BATCH = 2  # the cpu profile's global_batch: two samples a step, accumulated on one worker


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cpu run, one episode at a time, Editto trained every 2 accepted samples."""
    from agent.config import deep_merge, load_config
    from tests.conftest import SMALL

    out = tmp_path_factory.mktemp("train") / "out"
    clip = {"clip_scorer": {"kind": "clip", "path": "tiny:clip", "device": "cpu", "dtype": "float32"}}
    cfg = load_config(
        "cpu", None, deep_merge(SMALL, {"out": out, "concurrency": 1, "training": TRAINING, "backends": clip})
    )
    Factory(cfg).execute()
    return out


def db(out: Path) -> sqlite3.Connection:
    return sqlite3.connect(out / "ditto.db")


def test_supervisor_trains_every_n_accepted(trained_run: Path) -> None:
    accepted = db(trained_run).execute("select count(*) from sample").fetchone()[0]
    rounds = (
        db(trained_run).execute("select accepted, status, resume_from, id from trainingrun order by `index`").fetchall()
    )
    assert accepted >= 4, "the sample clips should give enough accepted samples to train twice"
    assert [r[0] for r in rounds] == list(range(EVERY, accepted + 1, EVERY))  # one episode at a time: exact counts
    assert all(status == "finished" for _, status, _, _ in rounds)
    assert [r[2] for r in rounds] == [None] + [r[3] for r in rounds[:-1]]  # each round continues the last


def test_rounds_publish_checkpoints_and_continue_the_curriculum(trained_run: Path) -> None:
    rounds = training_runs_at(trained_run)
    for k, r in enumerate(rounds, start=1):
        card = json.loads(r.card_json)
        assert card["step"] == TRAINING["steps"] * k and card["samples_seen"] == TRAINING["steps"] * k * BATCH
        assert (card["global_batch"], card["workers"], card["per_device_batch"], card["accumulation"]) == (2, 1, 1, 2)
        assert len(card["step_losses"]) == TRAINING["steps"]
        assert card["reference_drop_probability"] == pytest.approx(card["step"] / 100)  # cpu: linear over 100 steps
        folder = trained_run / r.checkpoint_dir
        assert {p.name for p in folder.iterdir()} == {
            "editto.safetensors",
            "training_state.pt",
            "card.json",
            "editto_diffusers.safetensors",
            "editto_diffsynth.safetensors",
        }
        assert json.loads((folder / "card.json").read_text())["step"] == card["step"]
        weights = trained_run / "artifacts" / r.weights[:2] / r.weights
        assert not weights.samefile(folder / "editto.safetensors")  # a copy: a user's edit leaves the store intact
        assert weights.read_bytes() == (folder / "editto.safetensors").read_bytes()


def test_heldout_samples_are_never_trained_on_and_are_scored_both_ways(trained_run: Path) -> None:
    from store.engine import open_engine

    engine = open_engine(f"sqlite:///{trained_run / 'ditto.db'}")
    with Session(engine) as s:
        samples = s.exec(select(Sample).order_by(Sample.created_at, Sample.id)).all()
        clip = {x.id: json.loads(x.record_json)["source_clip"] for x in samples}
        clips = list(dict.fromkeys(clip[x.id] for x in samples))
        heldout_clips = {c for k, c in enumerate(clips) if k % TRAINING["heldout_every"] == 0}
        rounds = s.exec(select(TrainingRun).order_by(TrainingRun.index)).all()
        previous: list[str] = []
        for r in rounds:
            assert not heldout_clips & {clip[i] for i in json.loads(r.train_samples_json)}  # by clip, not sample
            evaluated = json.loads(r.heldout_samples_json)
            assert evaluated[: len(previous)] == previous  # the set keeps what it has while it grows
            previous = evaluated
            # Too few held-out samples for every category of the mix: the set is still growing, nothing steers.
            assert not r.heldout_frozen and r.steered_by is None
            assert json.loads(r.shares_after_json) == json.loads(r.shares_before_json)
            evals = s.exec(select(HeldoutEvaluation).where(HeldoutEvaluation.training_id == r.id)).all()
            assert [e.sample_id for e in evals] == evaluated and evaluated
            assert all(clip[e.sample_id] in heldout_clips for e in evals)
            for suffix in ("", "_with_reference"):
                scores = json.loads(getattr(evals[0], f"scores{suffix}_json"))
                assert set(scores) == set(MetricVideoJudge.criteria)  # the cpu video judge, every criterion
                metrics = json.loads(getattr(evals[0], f"metrics{suffix}_json"))  # the paper's names, beside them
                assert set(metrics) == {"CLIP-T", "CLIP-F"} and -100 <= metrics["CLIP-T"] <= 100
                means = json.loads(getattr(r, f"eval_scores{suffix}_json"))
                assert set(means) == {*scores, *metrics}
                counts = json.loads(getattr(r, f"eval_counts{suffix}_json"))
                assert counts == {name: len(evals) for name in [*scores, *metrics, "flow_loss"]}
                edited = getattr(evals[0], f"edited_video{suffix}")
                assert (trained_run / "artifacts" / edited[:2] / edited).is_file()
            assert evals[0].edited_video != evals[0].edited_video_with_reference  # two edits, not one shown twice
            assert evals[0].flow_loss is not None and evals[0].flow_loss_with_reference is not None
            assert r.heldout_loss == pytest.approx(sum(e.flow_loss for e in evals) / len(evals), abs=1e-4)


def test_training_is_charged_once_to_the_run(trained_run: Path) -> None:
    con = db(trained_run)
    rows = con.execute(
        "select t.tool, t.device_seconds, t.run_id, r.run_id from toolcall t join trainingrun r "
        "on r.id = t.training_id where t.reused_call_id is null"
    ).fetchall()
    tools = [r[0] for r in rows]
    sets = [json.loads(h) for (h,) in con.execute("select heldout_samples_json from trainingrun").fetchall()]
    assert tools.count("train_editto") == len(sets)
    assert tools.count("edit_with_editto") == sum(2 * len(h) for h in sets)  # with the reference and without
    assert all(charged_to == run for *_, charged_to, run in rows)  # every call that ran is charged to its run
    assert all(r[1] > 0 for r in rows if r[0] == "train_editto")


def test_a_round_killed_halfway_resumes_without_charging_twice(trained_run: Path, tmp_path: Path) -> None:
    """Undo the end of the last round, as a kill after training would leave it, and resume the run."""
    import shutil

    from agent.config import RunConfig
    from store.engine import open_engine

    out = tmp_path / "out"
    shutil.copytree(trained_run, out)
    engine = open_engine(f"sqlite:///{out / 'ditto.db'}")
    with Session(engine) as s:
        last = s.exec(select(TrainingRun).order_by(TrainingRun.index.desc())).first()  # type: ignore[attr-defined]
        run_id, last_id, weights = last.run_id, last.id, last.weights
        last.status, last.weights, last.card_json, last.checkpoint_dir = "running", None, None, None
        s.add(last)
        for ev in s.exec(select(HeldoutEvaluation).where(HeldoutEvaluation.training_id == last_id)).all():
            s.delete(ev)
        s.commit()
        charged = [(c.id, c.device_seconds) for c in s.exec(select(ToolCall).order_by(ToolCall.id)).all()]
        stored = json.loads(s.get(Run, run_id).config_json)
    cfg = RunConfig.model_validate({**stored, "out": str(out), "db_url": None})
    Factory(cfg, run_id).execute()
    with Session(engine) as s:
        again = s.get(TrainingRun, last_id)
        assert again.status == "finished" and again.weights == weights
        calls = s.exec(select(ToolCall).order_by(ToolCall.id)).all()
        assert [(c.id, c.device_seconds) for c in calls][: len(charged)] == charged  # none ran, or was charged, again
        evaluated = json.loads(again.heldout_samples_json)
        assert s.exec(select(HeldoutEvaluation).where(HeldoutEvaluation.training_id == last_id)).first() is not None
        # one training call, and per held-out sample an edit, a verdict and CLIP scores, with and without reference
        assert len(s.exec(select(ToolCall).where(ToolCall.training_id == last_id)).all()) == 1 + 6 * len(evaluated)


def training_runs_at(out: Path) -> list[TrainingRun]:
    from store.engine import open_engine

    return training_runs(open_engine(f"sqlite:///{out / 'ditto.db'}"))


def test_train_by_hand_continues_from_the_last_checkpoint(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(trained_run, out)
    before = training_runs_at(out)
    result = CliRunner().invoke(app, ["train", "--out", str(out), "--steps", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    after = training_runs_at(out)
    assert len(after) == len(before) + 1
    new = after[-1]
    assert new.trigger == "by hand" and new.resume_from == before[-1].id
    assert json.loads(new.card_json)["step"] == json.loads(before[-1].card_json)["step"] + 2
    folder = out / new.checkpoint_dir  # where the round is and which file each of its users loads
    assert f'load_lora_weights("{folder / "editto_diffusers.safetensors"}")' in result.output.replace("\n", "")
    assert f'pipe.load_lora(pipe.vace, "{folder / "editto_diffsynth.safetensors"}")' in result.output.replace("\n", "")
    assert "estimated peak memory" in result.output
    listing = CliRunner().invoke(app, ["traces", "--out", str(out)], catch_exceptions=False).output
    assert "Editto training" in listing and "train-" in listing
    shown = CliRunner().invoke(app, ["trace", new.id, "--out", str(out)], catch_exceptions=False).output
    assert "train_editto" in shown and "edit_with_editto" in shown and "held-out" in shown
    assert "category shares" in shown and "share after" in shown  # the round's decision on the mix
    assert "steering waits" in shown and "growing" in shown and "with reference" in shown
    assert sum(json.loads(new.shares_after_json).values()) == pytest.approx(1.0, abs=1e-4)
    assert set(json.loads(new.category_scores_json)) <= set(json.loads(new.shares_after_json))
    CliRunner().invoke(app, ["report", "--out", str(out)], catch_exceptions=False)
    page = (out / "report" / "index.html").read_text()
    assert "held-out edits from the instruction alone, and with the edited reference frame" in page
    evaluated = len(json.loads(new.heldout_samples_json))
    assert f"{new.heldout_loss:.4f} ({evaluated}) / {new.heldout_loss_with_reference:.4f} ({evaluated})" in page


def test_train_by_hand_names_a_missing_run(trained_run: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--out", str(trained_run), "--run", "run-nope"])
    assert result.exit_code == 1 and "run-nope" in result.output


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (this test's Ray: its raylet, and the workers that raylet starts)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def kill_a_worker_after_the_first_checkpoint(out: Path, killed: list[int]) -> None:
    """SIGKILL one Ray Train worker of this process's Ray once Ray Train has taken a checkpoint of the round
    (its checkpoint manager writes down what it has), as a crashed or preempted GPU worker dies."""
    import os
    import signal
    import time

    deadline = time.monotonic() + 600
    snapshot = "artifacts/.tmp-*/.ray-train/editto/checkpoint_manager_snapshot.json"
    while time.monotonic() < deadline and not list(out.glob(snapshot)):
        time.sleep(0.05)
    for pid in descendants(os.getpid()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"RayTrainWorker" in title:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_two_workers_train_as_one_with_accumulation_survive_a_killed_worker_and_resume_at_another_width(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train --gpus 2` on the cpu profile: two gloo workers with Ray Train, the transformer sharded by FSDP2,
    one sample each a step (global batch 2). One worker is killed after the round's first saved step; Ray
    Train starts the workers again from it. The round's losses are those of one worker accumulating the same
    two samples a step, the round is charged once for 2 devices, and its checkpoint, written by 2 workers,
    resumes on 1 as the one-worker lineage does."""
    import shutil
    import threading

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(trained_run, one)
    shutil.copytree(trained_run, two)
    steps = "4"  # a checkpoint after each of the first three: the kill lands before the round ends
    alone = CliRunner().invoke(app, ["train", "--out", str(one), "--steps", steps], catch_exceptions=False)
    assert alone.exit_code == 0, alone.output
    killed: list[int] = []
    killer = threading.Thread(target=kill_a_worker_after_the_first_checkpoint, args=(two, killed), daemon=True)
    killer.start()
    shared = CliRunner().invoke(
        app, ["train", "--out", str(two), "--steps", steps, "--gpus", "2"], catch_exceptions=False
    )
    killer.join(5)
    assert shared.exit_code == 0, shared.output
    assert "Ray: started one for this run" in shared.output
    assert killed, "no Ray Train worker was found to kill"
    first, second = training_runs_at(one)[-1], training_runs_at(two)[-1]
    card_one, card_two = json.loads(first.card_json), json.loads(second.card_json)
    assert (card_two["workers"], card_two["accumulation"], card_one["workers"], card_one["accumulation"]) == (
        2,
        1,
        1,
        2,
    )
    assert card_two["resumed_at"] and card_two["resumed_at"][0] >= 1  # the restarted workers continued, not restarted
    assert card_two["step_losses"] == pytest.approx(card_one["step_losses"], rel=1e-4)
    assert card_two["step"] == card_one["step"]
    con = db(two)
    (charged, devices, seconds) = con.execute(
        "select count(*), devices, device_seconds from toolcall "
        "where tool = 'train_editto' and training_id = ? and reused_call_id is null",
        (second.id,),
    ).fetchone()
    assert (charged, devices) == (1, 2) and seconds > 0
    # The width changes back to 1: the 2-worker checkpoint resumes as the 1-worker one does.
    for out in (one, two):
        again = CliRunner().invoke(app, ["train", "--out", str(out), "--steps", "1"], catch_exceptions=False)
        assert again.exit_code == 0, again.output
    after_one, after_two = (json.loads(training_runs_at(o)[-1].card_json) for o in (one, two))
    assert after_two["workers"] == 1 and after_two["step"] == card_two["step"] + 1
    assert after_two["step_losses"] == pytest.approx(after_one["step_losses"], rel=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_round_of_two_workers_runs_from_the_train_editto_actor(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--executor ray with backends.editto workers 2: the round is a call in the Editto pool's actor
    (agent/ray_pools.ToolHost), which starts Ray Train's controller and 2 gloo workers from there. The actor
    reserves the one GPU its held-out evaluation runs on (a logical one here), not one a worker; the call is
    charged once for 2 devices; the round continues the run's last checkpoint and writes a whole one, which the
    next round resumes on 1 worker."""
    import shutil

    import ray

    from agent.config import RunConfig, deep_merge, resolve_run_config
    from agent.context import open_context, open_executor
    from agent.ray_cluster import QUIET_HOOK
    from agent.training import plan_round, run_round
    from store.engine import open_engine
    from tools import declare_tools, tools_used_in

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    out = tmp_path / "out"
    shutil.copytree(trained_run, out)
    before = training_runs_at(out)[-1]
    stored, run_id, _ = resolve_run_config(out, None, None, False, None, None, {"out": out})
    assert run_id is not None
    pools = {"train_editto": {"gpus": 1, "cpus": 0}, "judge_video": {"gpus": 0, "cpus": 0}}  # no GPU on the judge's
    # CLIP's scores left out (its pool would be one more to start): the judge scores the held-out edits.
    on_ray = {"executor": "ray", "pools": pools, "backends": {"editto": {"workers": 2}, "clip_scorer": None}}
    cfg = RunConfig.model_validate(deep_merge(stored.model_dump(mode="json"), on_ray))
    env = {
        "env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        "worker_process_setup_hook": QUIET_HOOK,
    }
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, runtime_env=env)
    try:
        toolkit = declare_tools(cfg.tools, cfg.backends, tools_used_in("training"))
        executor = open_executor(cfg, toolkit)
        try:
            assert executor.asks["train_editto"].gpus == 1  # type: ignore[attr-defined]
            ctx = open_context(cfg, open_engine(cfg.resolved_db_url), run_id, toolkit, executor)
            planned = plan_round(ctx, "by hand", 1)
            assert planned is not None
            done = run_round(ctx, planned)
        finally:
            executor.close()  # type: ignore[attr-defined]
    finally:
        ray.shutdown()
    assert done.status == "finished", done.error
    card, evaluated = json.loads(done.card_json), json.loads(done.heldout_samples_json)
    assert (card["workers"], card["accumulation"], card["step"]) == (2, 1, json.loads(before.card_json)["step"] + 1)
    assert done.resume_from == before.id and len(card["heldout_flow_losses"]) == len(evaluated) > 0
    written = {p.name for p in (out / done.checkpoint_dir).iterdir()}
    assert {"editto.safetensors", "training_state.pt", "card.json"} <= written
    query = "select count(*), devices, device_seconds from toolcall where tool = 'train_editto' and training_id = ?"
    (charged, devices, seconds) = db(out).execute(query, (done.id,)).fetchone()
    assert (charged, devices) == (1, 2) and seconds > 0
    again = CliRunner().invoke(app, ["train", "--out", str(out), "--steps", "1"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    after = training_runs_at(out)[-1]
    assert after.resume_from == done.id and json.loads(after.card_json)["step"] == card["step"] + 1
