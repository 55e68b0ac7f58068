"""Editto training inside a run: the supervisor trains at the right counts, through call(), charged once;
each round resumes the last checkpoint, publishes a checkpoint folder, and stores held-out scores."""

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
from store.tables import Charge, HeldoutEvaluation, Run, Sample, ToolCall, TrainingRun  # noqa: E402
from store.training import training_runs  # noqa: E402

EVERY = 2
TRAINING = {"every": EVERY, "steps": 3, "heldout_every": 3, "eval_samples": 1}


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
        assert card["step"] == TRAINING["steps"] * k and card["samples_seen"] == TRAINING["steps"] * k
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


def test_heldout_samples_are_never_trained_on_and_are_scored(trained_run: Path) -> None:
    from store.engine import open_engine

    engine = open_engine(f"sqlite:///{trained_run / 'ditto.db'}")
    with Session(engine) as s:
        samples = s.exec(select(Sample).order_by(Sample.created_at, Sample.id)).all()
        clip = {x.id: json.loads(x.record_json)["source_clip"] for x in samples}
        clips = list(dict.fromkeys(clip[x.id] for x in samples))
        heldout_clips = {c for k, c in enumerate(clips) if k % TRAINING["heldout_every"] == 0}
        rounds = s.exec(select(TrainingRun).order_by(TrainingRun.index)).all()
        first_eval = json.loads(rounds[0].heldout_samples_json)
        for r in rounds:
            assert not heldout_clips & {clip[i] for i in json.loads(r.train_samples_json)}  # by clip, not sample
            assert json.loads(r.heldout_samples_json) == first_eval  # the same held-out set every round
            evals = s.exec(select(HeldoutEvaluation).where(HeldoutEvaluation.training_id == r.id)).all()
            assert [e.sample_id for e in evals] == first_eval and len(first_eval) == 1  # eval_samples=1
            assert clip[evals[0].sample_id] in heldout_clips
            scores = json.loads(evals[0].scores_json)
            assert set(scores) == {
                "structure_preservation",
                "edit_strength",
                "temporal_consistency",
                "edit_propagation",
                "region_stability",
            }
            metrics = json.loads(evals[0].metrics_json)  # the paper's names, beside the judge's criteria
            assert set(metrics) == {"CLIP-T", "CLIP-F"} and -100 <= metrics["CLIP-T"] <= 100
            assert json.loads(r.eval_scores_json) == {**scores, **metrics}
            assert evals[0].flow_loss is not None and r.heldout_loss == pytest.approx(evals[0].flow_loss, abs=1e-4)
            assert json.loads(r.eval_counts_json) == {name: 1 for name in [*scores, *metrics, "flow_loss"]}
            assert (trained_run / "artifacts" / evals[0].edited_video[:2] / evals[0].edited_video).is_file()


def test_training_is_charged_once_to_the_run(trained_run: Path) -> None:
    con = db(trained_run)
    rows = con.execute(
        "select t.tool, t.device_seconds, c.device_seconds, t.reused_call_id from toolcall t "
        "left join charge c on c.tool_call_id = t.id where t.training_id is not null"
    ).fetchall()
    tools = [r[0] for r in rows]
    rounds = con.execute("select count(*) from trainingrun").fetchone()[0]
    assert tools.count("train_editto") == rounds and tools.count("edit_with_editto") == rounds
    assert all(r[2] == r[1] for r in rows if r[3] is None)  # every call that ran has its one charge
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
        charges = len(s.exec(select(Charge)).all())
        stored = json.loads(s.get(Run, run_id).config_json)
    cfg = RunConfig.model_validate({**stored, "out": str(out), "db_url": None})
    Factory(cfg, run_id).execute()
    with Session(engine) as s:
        again = s.get(TrainingRun, last_id)
        assert again.status == "finished" and again.weights == weights
        assert len(s.exec(select(Charge)).all()) == charges  # the recorded calls were reused, not rerun
        assert s.exec(select(HeldoutEvaluation).where(HeldoutEvaluation.training_id == last_id)).first() is not None
        assert len(s.exec(select(ToolCall).where(ToolCall.training_id == last_id)).all()) == 4


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
    assert sum(json.loads(new.shares_after_json).values()) == pytest.approx(1.0, abs=1e-4)
    assert set(json.loads(new.category_scores_json)) <= set(json.loads(new.shares_after_json))
    CliRunner().invoke(app, ["report", "--out", str(out)], catch_exceptions=False)
    page = (out / "report" / "index.html").read_text()
    assert "held-out edits from the instruction alone" in page and f"{new.heldout_loss:.4f} (1)" in page


def test_train_by_hand_names_a_missing_run(trained_run: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--out", str(trained_run), "--run", "run-nope"])
    assert result.exit_code == 1 and "run-nope" in result.output
