"""The held-out side of a run is chosen by source clip, so no clip is on both sides, and the evaluation set
grows from round to round, keeping what it has, until every category of the mix has its minimum of judged
samples; then it is frozen."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy.engine import Engine
from sqlmodel import Session

from agent.config import load_config
from agent.training import plan_round
from store.engine import open_engine
from store.tables import Episode, Run, Sample, TrainingRun
from store.training import RoundOutcome, finish_training_run, record_evaluation

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def accept(engine: Engine, index: int, clip: str, category: str) -> str:
    sample_id = f"s{index:03d}"
    with Session(engine) as s:
        s.add(Episode(id=f"r:{index:03d}", run_id="r", index=index, clip_path=clip, variant=0, seed=index))
        s.commit()
        record = {
            "source_clip": clip,
            "category": category,
            "instruction": f"edit {index}",
            "target_description": "x",
            "seeds": {"seed": index},
            "artifacts": {"source": f"src{index}", "edited": f"ed{index}", "edited_keyframe": f"kf{index}"},
        }
        s.add(
            Sample(
                id=sample_id,
                episode_id=f"r:{index:03d}",
                run_id="r",
                dataset_dir=sample_id,
                record_json=json.dumps(record),
                created_at=T0 + timedelta(minutes=index),
            )
        )
        s.commit()
    return sample_id


def clip_of(engine: Engine, sample_id: str) -> str:
    with Session(engine) as s:
        sample = s.get(Sample, sample_id)
        assert sample is not None
        return json.loads(sample.record_json)["source_clip"]


def store(tmp_path: Path) -> tuple[SimpleNamespace, Engine]:
    # Two categories in the mix, two judged samples each before the held-out set is frozen.
    mix = {c: {"target": 0} for c in ("global_freeform", "local_attribute")}
    cfg = load_config("cpu", None, {"out": tmp_path, "training": {"heldout_every": 2}, "categories": mix})
    engine = open_engine(cfg.resolved_db_url)
    with Session(engine) as s:
        s.add(Run(id="r", profile="cpu", budget_device_seconds=1.0, seed=0, config_json="{}"))
        s.commit()
    # Clips a..c in order of first acceptance: a and c are held out (every 2nd clip, the first first).
    for k, (clip, category) in enumerate(
        [("a", "global_style"), ("a", "global_style"), ("b", "global_style"), ("c", "global_style"), ("b", "text")]
    ):
        accept(engine, k, clip, category)
    return SimpleNamespace(config=cfg, engine=engine, run_id="r"), engine


def test_no_source_clip_is_on_both_sides(tmp_path: Path) -> None:
    ctx, engine = store(tmp_path)
    planned = plan_round(ctx, "by hand")  # type: ignore[arg-type]
    assert planned is not None
    train, heldout = json.loads(planned.train_samples_json), json.loads(planned.heldout_samples_json)
    assert {clip_of(engine, i) for i in train} == {"b"}  # both samples of clip a stay out, not just one
    assert {clip_of(engine, i) for i in heldout} == {"a"} and "s003" not in train  # clip c: held out, not needed yet


def judge_all(engine: Engine, training_id: str, sample_ids: list[str]) -> None:
    verdict = {"scores": {"edit_strength": 5.0}, "reasons": {}}
    for sample_id in sample_ids:
        for with_reference in (False, True):
            record_evaluation(engine, training_id, sample_id, with_reference, None, verdict, None)


def test_the_evaluation_set_grows_to_the_minimum_per_category_then_is_frozen(tmp_path: Path) -> None:
    ctx, engine = store(tmp_path)
    first = plan_round(ctx, "by hand")  # type: ignore[arg-type]
    assert first is not None
    heldout = json.loads(first.heldout_samples_json)
    assert heldout == ["s000", "s001"] and not first.heldout_frozen  # global_style's first two; no text held out
    judge_all(engine, first.id, heldout)
    finish_training_run(engine, first.id, RoundOutcome("finished", heldout_frozen=False))
    # New held-out samples, of categories the first set had not seen, arrive before the next round: the set
    # keeps its samples and takes each missing category's first two.
    for k, (clip, category) in enumerate(
        [("c", "text"), ("a", "local_attribute"), ("a", "text"), ("c", "text"), ("d", "global_style")], start=5
    ):
        accept(engine, k, clip, category)
    second = plan_round(ctx, "by hand")  # type: ignore[arg-type]
    assert second is not None and second.id != first.id
    assert json.loads(second.heldout_samples_json) == [*heldout, "s005", "s007"]  # text's first two, not s008
    with Session(engine) as s:
        assert s.get(TrainingRun, second.id).accepted == 10  # type: ignore[union-attr]
    judge_all(engine, second.id, json.loads(second.heldout_samples_json))
    finish_training_run(engine, second.id, RoundOutcome("finished", heldout_frozen=True))
    accept(engine, 10, "c", "global_style")
    third = plan_round(ctx, "by hand")  # type: ignore[arg-type]
    assert third is not None and third.heldout_frozen
    assert json.loads(third.heldout_samples_json) == json.loads(second.heldout_samples_json)  # frozen: the same


def test_a_sample_whose_evaluation_failed_stays_but_another_of_its_category_joins(tmp_path: Path) -> None:
    ctx, engine = store(tmp_path)
    first = plan_round(ctx, "by hand")  # type: ignore[arg-type]
    assert first is not None
    heldout = json.loads(first.heldout_samples_json)
    judge_all(engine, first.id, heldout[1:])
    record_evaluation(engine, first.id, heldout[0], False, None, None, "a bad clip")
    finish_training_run(engine, first.id, RoundOutcome("finished", heldout_frozen=False))
    second = plan_round(ctx, "by hand")  # type: ignore[arg-type]
    assert second is not None
    assert json.loads(second.heldout_samples_json) == [*heldout, "s003"]  # global_style's next, from clip c
