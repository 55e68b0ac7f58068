"""The record of Editto training: rounds, their held-out evaluations, and each round's checkpoint folder
(out/editto/<round>/: editto.safetensors, training_state.pt, card.json and the weights in diffusers' and
DiffSynth-Studio's names), copied from the artifacts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.dataset import accepted_in_order, atomic_write_bytes, place_file
from store.tables import Episode, HeldoutEvaluation, Sample, ToolCall, TrainingRun, utcnow


def accepted_samples(engine: Engine, run_id: str) -> list[Sample]:
    return accepted_in_order(engine, run_id)


def episode_clips(engine: Engine, run_id: str) -> dict[str, str]:
    """Episode id -> the source clip's path as the run read it (a sample's record names it relative to the
    source folder, or by its full path where an earlier version made the sample)."""
    with Session(engine) as s:
        return dict(s.exec(select(Episode.id, Episode.clip_path).where(Episode.run_id == run_id)).all())


def samples_by_id(engine: Engine, ids: list[str]) -> list[Sample]:
    with Session(engine) as s:
        found = {x.id: x for x in s.exec(select(Sample).where(col(Sample.id).in_(ids))).all()}
    return [found[i] for i in ids if i in found]


def training_runs(engine: Engine, run_id: str | None = None) -> list[TrainingRun]:
    query = select(TrainingRun).order_by(col(TrainingRun.run_id), col(TrainingRun.index))
    if run_id:
        query = query.where(TrainingRun.run_id == run_id)
    with Session(engine) as s:
        return list(s.exec(query).all())


def training_run(engine: Engine, training_id: str) -> TrainingRun | None:
    with Session(engine) as s:
        return s.get(TrainingRun, training_id)


def open_training_run(
    engine: Engine, run_id: str, trigger: str, steps: int, accepted: int, train_ids: list[str], heldout_ids: list[str]
) -> TrainingRun:
    """The round left running by a crash, if any (it resumes as it was planned); else a new round that
    continues from the last finished one."""
    with Session(engine, expire_on_commit=False) as s:
        rounds = s.exec(select(TrainingRun).where(TrainingRun.run_id == run_id).order_by(col(TrainingRun.index))).all()
        for r in rounds:
            if r.status == "running":
                return r
        finished = [r for r in rounds if r.status == "finished"]
        index = len(rounds) + 1
        row = TrainingRun(
            id=f"{run_id}:train-{index:03d}",
            run_id=run_id,
            index=index,
            trigger=trigger,
            steps=steps,
            accepted=accepted,
            resume_from=finished[-1].id if finished else None,
            train_samples_json=json.dumps(train_ids),
            heldout_samples_json=json.dumps(heldout_ids),
        )
        s.add(row)
        s.commit()
        return row


def first_eval_set(engine: Engine, run_id: str) -> list[str] | None:
    """The held-out samples the run's first round with any was evaluated on: every later round evaluates
    the same ones, so rounds compare like with like. None before any."""
    with Session(engine) as s:
        rounds = s.exec(select(TrainingRun).where(TrainingRun.run_id == run_id).order_by(col(TrainingRun.index))).all()
    return next((ids for r in rounds if (ids := json.loads(r.heldout_samples_json))), None)


def current_shares(engine: Engine, run_id: str) -> dict[str, float] | None:
    """The category shares set by the run's last finished round; None before any (the config's targets hold)."""
    with Session(engine) as s:
        last = s.exec(
            select(TrainingRun)
            .where(TrainingRun.run_id == run_id, TrainingRun.status == "finished")
            .where(col(TrainingRun.shares_after_json).is_not(None))
            .order_by(col(TrainingRun.index).desc())
        ).first()
    return json.loads(last.shares_after_json) if last and last.shares_after_json else None


def accepted_when_last_trained(engine: Engine, run_id: str) -> int:
    """How many samples the last round (finished or not) was planned on; 0 before any round."""
    with Session(engine) as s:
        last = s.exec(
            select(TrainingRun).where(TrainingRun.run_id == run_id).order_by(col(TrainingRun.index).desc())
        ).first()
    return last.accepted if last else 0


def record_evaluation(
    engine: Engine,
    training_id: str,
    sample_id: str,
    edited_video: str | None,
    verdict: dict[str, Any] | None,
    error: str | None,
    metrics: dict[str, float] | None = None,
) -> None:
    with Session(engine) as s:
        row = _evaluation_row(s, training_id, sample_id)
        row.edited_video, row.error = edited_video, error
        row.scores_json = json.dumps(verdict["scores"]) if verdict else None
        row.reasons_json = json.dumps(verdict["reasons"]) if verdict else None
        row.metrics_json = json.dumps(metrics) if metrics else None
        s.add(row)
        s.commit()


def record_flow_loss(engine: Engine, training_id: str, sample_id: str, loss: float) -> None:
    with Session(engine) as s:
        row = _evaluation_row(s, training_id, sample_id)
        row.flow_loss = loss
        s.add(row)
        s.commit()


def _evaluation_row(s: Session, training_id: str, sample_id: str) -> HeldoutEvaluation:
    return s.exec(
        select(HeldoutEvaluation).where(
            HeldoutEvaluation.training_id == training_id, HeldoutEvaluation.sample_id == sample_id
        )
    ).first() or HeldoutEvaluation(training_id=training_id, sample_id=sample_id)


def evaluations(engine: Engine, training_id: str) -> list[HeldoutEvaluation]:
    with Session(engine) as s:
        return list(
            s.exec(
                select(HeldoutEvaluation)
                .where(HeldoutEvaluation.training_id == training_id)
                .order_by(col(HeldoutEvaluation.id))
            ).all()
        )


def means(values: dict[str, list[float]]) -> tuple[dict[str, float], dict[str, int]]:
    """(mean per name, how many values each mean rests on)."""
    return (
        {name: round(sum(v) / len(v), 4) for name, v in sorted(values.items())},
        {name: len(v) for name, v in sorted(values.items())},
    )


def mean_scores(engine: Engine, training_id: str) -> tuple[dict[str, float], dict[str, int]]:
    """Per criterion (judge and CLIP) and for the flow-matching loss (`flow_loss`): the mean over the round's
    held-out samples, and how many samples it rests on."""
    per_criterion: dict[str, list[float]] = {}
    for ev in evaluations(engine, training_id):
        both = {**json.loads(ev.scores_json or "{}"), **json.loads(ev.metrics_json or "{}")}
        if ev.flow_loss is not None:
            both["flow_loss"] = ev.flow_loss
        for name, score in both.items():
            per_criterion.setdefault(name, []).append(score)
    return means(per_criterion)


def category_scores(engine: Engine, training_id: str) -> tuple[dict[str, float], dict[str, int]]:
    """Mean held-out score per edit category (each sample's mean over the judge's criteria, averaged over
    the category's samples), and how many samples each rests on."""
    per_category: dict[str, list[float]] = {}
    with Session(engine) as s:
        rows = s.exec(
            select(HeldoutEvaluation, Sample)
            .join(Sample, col(Sample.id) == col(HeldoutEvaluation.sample_id))
            .where(HeldoutEvaluation.training_id == training_id)
        ).all()
    for ev, sample in rows:
        scores = json.loads(ev.scores_json or "{}")
        category = json.loads(sample.record_json).get("category")
        if scores and category:
            per_category.setdefault(category, []).append(sum(scores.values()) / len(scores))
    return means(per_category)


def publish_checkpoint(
    out: Path, training_id: str, files: dict[str, Path], card_name: str, card: dict[str, Any]
) -> Path:
    """The round's checkpoint as a folder a user can load or hand to another trainer: `files` (name ->
    artifact) copied in, the card written beside them."""
    folder = out / "editto" / training_id.replace(":", "-")
    for name, src in files.items():
        place_file(src, folder / name)
    atomic_write_bytes(folder / card_name, json.dumps(card, indent=2, sort_keys=True).encode())
    return folder


@dataclass(frozen=True)
class RoundOutcome:
    status: str  # finished | failed
    weights: str | None = None
    training_state: str | None = None
    card: dict[str, Any] | None = None
    checkpoint_dir: str | None = None
    error: str | None = None
    category_scores: dict[str, float] | None = None
    category_counts: dict[str, int] | None = None  # held-out samples judged per category
    shares_before: dict[str, float] | None = None
    shares_after: dict[str, float] | None = None  # the category shares the next episodes are admitted by


def finish_training_run(engine: Engine, training_id: str, outcome: RoundOutcome) -> TrainingRun:
    scores, counts = mean_scores(engine, training_id) if outcome.status == "finished" else (None, None)
    loss = scores.pop("flow_loss", None) if scores is not None else None
    as_json = {k: json.dumps(v) if v is not None else None for k, v in vars(outcome).items()}
    with Session(engine, expire_on_commit=False) as s:
        row = s.get(TrainingRun, training_id)
        assert row is not None
        row.status, row.error, row.checkpoint_dir = outcome.status, outcome.error, outcome.checkpoint_dir
        row.weights, row.training_state = outcome.weights, outcome.training_state
        row.card_json = json.dumps(outcome.card) if outcome.card is not None else None
        row.eval_scores_json = json.dumps(scores) if scores is not None else None
        row.eval_counts_json = json.dumps(counts) if counts is not None else None
        row.heldout_loss = loss
        row.category_scores_json = as_json["category_scores"]
        row.category_counts_json = as_json["category_counts"]
        row.shares_before_json, row.shares_after_json = as_json["shares_before"], as_json["shares_after"]
        row.finished_at = utcnow()
        s.add(row)
        s.commit()
        return row


def training_calls(engine: Engine, training_id: str) -> list[ToolCall]:
    with Session(engine) as s:
        return list(
            s.exec(select(ToolCall).where(ToolCall.training_id == training_id).order_by(col(ToolCall.id))).all()
        )
