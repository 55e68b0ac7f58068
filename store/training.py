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
    engine: Engine,
    run_id: str,
    trigger: str,
    steps: int,
    accepted: int,
    train_ids: list[str],
    heldout_ids: list[str],
    heldout_frozen: bool = False,
) -> TrainingRun:
    """The round left running by a crash, if any (it resumes as it was planned); else a new round that
    continues from the last finished one. `heldout_frozen`: the held-out set was fixed before this round."""
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
            heldout_frozen=heldout_frozen,
        )
        s.add(row)
        s.commit()
        return row


@dataclass(frozen=True)
class HeldoutSet:
    """The held-out samples the last finished round evaluated, whether they are fixed for good, and those whose
    evaluation failed there (they stay in the set, as rounds compare like with like, but do not count)."""

    sample_ids: list[str]
    frozen: bool
    failed: set[str]


def last_heldout_set(engine: Engine, run_id: str) -> HeldoutSet | None:
    """None before any round has finished."""
    with Session(engine) as s:
        last = s.exec(
            select(TrainingRun)
            .where(TrainingRun.run_id == run_id, TrainingRun.status == "finished")
            .order_by(col(TrainingRun.index).desc())
        ).first()
        if last is None:
            return None
        rows = s.exec(select(HeldoutEvaluation).where(HeldoutEvaluation.training_id == last.id)).all()
    failed = {ev.sample_id for ev in rows if not judged(ev)}
    return HeldoutSet(json.loads(last.heldout_samples_json), bool(last.heldout_frozen), failed)


def heldout_set_state(r: TrainingRun) -> str:
    """A round's held-out set in a table cell: '4 frozen', '3 growing', or its size alone for a round that did
    not finish."""
    size = len(json.loads(r.heldout_samples_json))
    if r.status != "finished":
        return str(size)
    return f"{size} {'frozen' if r.heldout_frozen else 'growing'}"


def heldout_set_line(r: TrainingRun) -> str:
    """What a round says of its held-out set: '4 samples, frozen; steered by the evaluation with reference', or
    '3 samples, growing (judged: global_style 2, text 1); steering waits'."""
    size = len(json.loads(r.heldout_samples_json))
    samples = f"{size} sample{'' if size == 1 else 's'}"
    if r.status != "finished":
        return samples
    if r.heldout_frozen:
        return f"{samples}, frozen; steered by the evaluation {r.steered_by}"
    judged = ", ".join(f"{c} {n}" for c, n in json.loads(r.category_counts_json or "{}").items())
    return f"{samples}, growing (judged: {judged or 'none'}); steering waits"


def judged(ev: HeldoutEvaluation) -> bool:
    """Both evaluations of the sample have the judge's verdict."""
    return bool(ev.scores_json) and bool(ev.scores_with_reference_json)


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
    with_reference: bool,
    edited_video: str | None,
    verdict: dict[str, Any] | None,
    error: str | None,
    metrics: dict[str, float] | None = None,
) -> None:
    """One of a held-out sample's two evaluations: Editto's edit with the edited reference frame, or without."""
    suffix = "_with_reference" if with_reference else ""
    values = {
        "edited_video": edited_video,
        "error": error,
        "scores_json": json.dumps(verdict["scores"]) if verdict else None,
        "reasons_json": json.dumps(verdict["reasons"]) if verdict else None,
        "metrics_json": json.dumps(metrics) if metrics else None,
    }
    with Session(engine) as s:
        row = _evaluation_row(s, training_id, sample_id)
        for name, value in values.items():
            column = name.replace("_json", f"{suffix}_json") if name.endswith("_json") else name + suffix
            setattr(row, column, value)
        s.add(row)
        s.commit()


def record_flow_losses(engine: Engine, training_id: str, sample_id: str, loss: float, with_reference: float) -> None:
    with Session(engine) as s:
        row = _evaluation_row(s, training_id, sample_id)
        row.flow_loss, row.flow_loss_with_reference = loss, with_reference
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


def mean_scores(engine: Engine, training_id: str, with_reference: bool) -> tuple[dict[str, float], dict[str, int]]:
    """Per criterion (judge and CLIP) and for the flow-matching loss (`flow_loss`): the mean over the round's
    held-out samples of one of the two evaluations, and how many samples it rests on."""
    per_criterion: dict[str, list[float]] = {}
    for ev in evaluations(engine, training_id):
        scores, metrics, loss = (
            (ev.scores_with_reference_json, ev.metrics_with_reference_json, ev.flow_loss_with_reference)
            if with_reference
            else (ev.scores_json, ev.metrics_json, ev.flow_loss)
        )
        both = {**json.loads(scores or "{}"), **json.loads(metrics or "{}")}
        if loss is not None:
            both["flow_loss"] = loss
        for name, score in both.items():
            per_criterion.setdefault(name, []).append(score)
    return means(per_criterion)


def category_scores(engine: Engine, training_id: str, with_reference: bool) -> dict[str, float]:
    """Mean held-out score per edit category in one of the two evaluations (each sample's mean over the judge's
    criteria, averaged over the category's samples)."""
    per_category: dict[str, list[float]] = {}
    for ev, category in _evaluations_by_category(engine, training_id):
        scores = json.loads((ev.scores_with_reference_json if with_reference else ev.scores_json) or "{}")
        if scores and category:
            per_category.setdefault(category, []).append(sum(scores.values()) / len(scores))
    return means(per_category)[0]


def judged_per_category(engine: Engine, training_id: str) -> dict[str, int]:
    """Held-out samples per edit category that the judge scored in both evaluations of the round."""
    counts: dict[str, int] = {}
    for ev, category in _evaluations_by_category(engine, training_id):
        if judged(ev) and category:
            counts[category] = counts.get(category, 0) + 1
    return dict(sorted(counts.items()))


def _evaluations_by_category(engine: Engine, training_id: str) -> list[tuple[HeldoutEvaluation, str | None]]:
    with Session(engine) as s:
        rows = s.exec(
            select(HeldoutEvaluation, Sample)
            .join(Sample, col(Sample.id) == col(HeldoutEvaluation.sample_id))
            .where(HeldoutEvaluation.training_id == training_id)
        ).all()
    return [(ev, json.loads(sample.record_json).get("category")) for ev, sample in rows]


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
    category_scores: dict[str, float] | None = None  # instruction alone
    category_scores_with_reference: dict[str, float] | None = None
    category_counts: dict[str, int] | None = None  # held-out samples judged (both ways) per category
    heldout_frozen: bool | None = None  # the held-out set is fixed from now on
    steered_by: str | None = None  # which evaluation moved the shares; None: steering waited
    shares_before: dict[str, float] | None = None
    shares_after: dict[str, float] | None = None  # the category shares the next episodes are admitted by


def finish_training_run(engine: Engine, training_id: str, outcome: RoundOutcome) -> TrainingRun:
    finished = outcome.status == "finished"
    scores, counts = mean_scores(engine, training_id, False) if finished else (None, None)
    with_reference, counts_with = mean_scores(engine, training_id, True) if finished else (None, None)
    loss = scores.pop("flow_loss", None) if scores is not None else None
    loss_with = with_reference.pop("flow_loss", None) if with_reference is not None else None
    as_json = {k: json.dumps(v) if v is not None else None for k, v in vars(outcome).items()}
    with Session(engine, expire_on_commit=False) as s:
        row = s.get(TrainingRun, training_id)
        assert row is not None
        row.status, row.error, row.checkpoint_dir = outcome.status, outcome.error, outcome.checkpoint_dir
        row.weights, row.training_state = outcome.weights, outcome.training_state
        row.card_json = as_json["card"]
        row.eval_scores_json = json.dumps(scores) if scores is not None else None
        row.eval_counts_json = json.dumps(counts) if counts is not None else None
        row.heldout_loss = loss
        row.eval_scores_with_reference_json = json.dumps(with_reference) if with_reference is not None else None
        row.eval_counts_with_reference_json = json.dumps(counts_with) if counts_with is not None else None
        row.heldout_loss_with_reference = loss_with
        row.category_scores_json = as_json["category_scores"]
        row.category_scores_with_reference_json = as_json["category_scores_with_reference"]
        row.category_counts_json = as_json["category_counts"]
        row.heldout_frozen, row.steered_by = outcome.heldout_frozen, outcome.steered_by
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
