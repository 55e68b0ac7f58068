"""A training round of Editto (Ditto step 8), a run-level step the supervisor starts every N accepted
samples or a user starts by hand: train on the accepted samples through call() (cached, traced, charged),
then let the checkpoint edit held-out samples, from the instruction alone and from the instruction and the
edited reference frame, and have the video judge score both. A round killed halfway resumes as planned and
charges nothing twice.

Held out are all the samples of every `heldout_every`-th source clip (in order of first acceptance), so no
clip is on both sides. The evaluation set grows from round to round, keeping the samples it has, until
every category of the mix has `steer_min_samples` judged samples in it; then it is frozen, and every later
round evaluates the same samples. Each round records, for both evaluations, the deterministic flow-matching
loss, the judge's scores and CLIP scores, each with the number of samples it rests on. The category mix is
steered only once the set is frozen, by the evaluation that matches where the curriculum is
(policy.steering_evaluation)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session

from agent import policy, quotas
from agent.calls import CallSite
from agent.config import RunConfig
from agent.context import RunContext, open_context, open_executor
from agent.policy import TrainingConfig
from agent.ray_cluster import connect_for_training
from store.engine import open_engine
from store.tables import Run, Sample, TrainingRun
from store.training import (
    RoundOutcome,
    accepted_samples,
    category_scores,
    current_shares,
    episode_clips,
    finish_training_run,
    judged_per_category,
    last_heldout_set,
    open_training_run,
    publish_checkpoint,
    record_evaluation,
    record_flow_losses,
    samples_by_id,
    training_run,
)
from tools import declare_tools, tools_used_in
from tools.base import ToolError
from tools.judge import JudgeInput
from tools.score_clip import ScoreClipInput
from tools.train_editto import (
    EDITTO_CARD,
    EDITTO_TRAINING_STATE,
    EDITTO_WEIGHTS,
    EXPORTS,
    EdittoCheckpoint,
    EditWithEdittoInput,
    TrainEdittoInput,
    TrainingExample,
)

log = logging.getLogger(__name__)


def training_example(sample: Sample) -> TrainingExample:
    record = json.loads(sample.record_json)
    refs = record["artifacts"]
    return TrainingExample(
        sample_id=sample.id,
        source=refs["source"],
        edited=refs["edited"],
        reference=refs["edited_keyframe"],
        instruction=record["instruction"],
    )


def source_clip(sample: Sample) -> str:
    record = json.loads(sample.record_json)
    return record.get("source_clip") or record["artifacts"]["source"]


def category(sample: Sample) -> str:
    return json.loads(sample.record_json).get("category", "")


def split_samples(engine: Engine, run_id: str, cfg: TrainingConfig) -> tuple[list[Sample], list[Sample]]:
    """The run's samples Editto may use, split into (train, held out) by source clip: all the samples of
    every `heldout_every`-th clip, counted in order of each clip's first accepted sample (the first clip
    is held out), never train. A clip keeps its side as the run grows."""
    # Samples committed before their artifacts were recorded cannot be trained on; they are left out.
    samples = [s for s in accepted_samples(engine, run_id) if "artifacts" in json.loads(s.record_json)]
    paths = episode_clips(engine, run_id)  # the same for a run's every sample, whichever version recorded it
    clip = {s.id: paths.get(s.episode_id) or source_clip(s) for s in samples}
    heldout_clips = {c for k, c in enumerate(dict.fromkeys(clip.values())) if policy.held_out(k, cfg)}
    return (
        [s for s in samples if clip[s.id] not in heldout_clips],
        [s for s in samples if clip[s.id] in heldout_clips],
    )


def heldout_sample_ids(engine: Engine, run_id: str) -> set[str]:
    """Every sample of the run that is never trained on, by the run's own training settings."""
    with Session(engine) as s:
        run = s.get(Run, run_id)
    if run is None:
        raise TrainingError(f"no run {run_id!r}")
    return {s.id for s in split_samples(engine, run_id, RunConfig.model_validate_json(run.config_json).training)[1]}


def plan_round(ctx: RunContext, trigger: str, steps: int | None = None) -> TrainingRun | None:
    """The round to run now: one a crash left running, or a new one over the samples accepted so far.
    None when there is nothing to train on yet."""
    cfg = ctx.config.training
    train, heldout = split_samples(ctx.engine, ctx.run_id, cfg)
    last = last_heldout_set(ctx.engine, ctx.run_id)
    if last is not None and last.frozen:
        eval_set = last.sample_ids
    else:
        eval_set = policy.grow_heldout_set(
            last.sample_ids if last else [],
            last.failed if last else set(),
            [(s.id, category(s)) for s in heldout],
            list(ctx.config.target_shares()),
            cfg.steer_min_samples,
        )
    trained_on = [s.id for s in train if s.id not in eval_set]  # even were heldout_every changed since the draw
    if not trained_on:
        log.warning("no sample to train on yet (the clips' first of every %d is held out)", cfg.heldout_every)
        return None
    return open_training_run(
        ctx.engine,
        ctx.run_id,
        trigger,
        steps or cfg.steps,
        len(train) + len(heldout),
        trained_on,
        eval_set,
        heldout_frozen=bool(last and last.frozen),
    )


def _checkpoint_of(engine: Engine, training_id: str | None) -> EdittoCheckpoint | None:
    if training_id is None:
        return None
    row = training_run(engine, training_id)
    assert row is not None and row.weights and row.training_state
    return EdittoCheckpoint(weights=row.weights, training_state=row.training_state)


def run_round(ctx: RunContext, round_: TrainingRun) -> TrainingRun:
    """Train, publish the checkpoint, evaluate on the held-out samples. A failed training step fails the
    round (recorded); a failed evaluation of one sample is recorded on that sample."""
    site = CallSite(ctx.run_id, None, "train_editto", 0, training_id=round_.id)
    examples = tuple(training_example(s) for s in samples_by_id(ctx.engine, json.loads(round_.train_samples_json)))
    heldout = samples_by_id(ctx.engine, json.loads(round_.heldout_samples_json))
    try:
        trained = ctx.caller.call(
            "train_editto",
            TrainEdittoInput(
                examples=examples,
                steps=round_.steps,
                resume_from=_checkpoint_of(ctx.engine, round_.resume_from),
                heldout=tuple(training_example(s) for s in heldout),
            ),
            site,
        )
    except ToolError as err:
        log.warning("training round %s failed: %s", round_.id, err)
        return finish_training_run(ctx.engine, round_.id, RoundOutcome("failed", error=str(err)))
    checkpoint = trained.checkpoint
    folder = publish_checkpoint(
        ctx.config.out,
        round_.id,
        {
            EDITTO_WEIGHTS: ctx.io.path(checkpoint.weights),
            EDITTO_TRAINING_STATE: ctx.io.path(checkpoint.training_state),
            **{name: ctx.io.path(trained.exports[name]) for name in EXPORTS},
        },
        EDITTO_CARD,
        {**trained.card, "training_run": round_.id, "trained_on": len(examples)},
    )
    losses = zip(heldout, trained.heldout_losses, trained.heldout_losses_with_reference, strict=True)
    for sample, loss, loss_with_reference in losses:
        record_flow_losses(ctx.engine, round_.id, sample.id, loss, loss_with_reference)
        for with_reference in (False, True):
            evaluate_heldout(ctx, round_.id, checkpoint, sample, with_reference)
    shares = decide_shares(
        ctx.engine,
        ctx.config,
        ctx.run_id,
        round_.id,
        trained.card["reference_drop_probability"],
        bool(round_.heldout_frozen),
    )
    return finish_training_run(
        ctx.engine,
        round_.id,
        RoundOutcome(
            "finished",
            weights=checkpoint.weights,
            training_state=checkpoint.training_state,
            card=trained.card,
            checkpoint_dir=str(folder.relative_to(ctx.config.out)),
            category_scores=shares.scores,
            category_scores_with_reference=shares.scores_with_reference,
            category_counts=shares.counts,
            heldout_frozen=shares.frozen,
            steered_by=shares.steered_by,
            shares_before=shares.before,
            shares_after=shares.after,
        ),
    )


@dataclass(frozen=True)
class ShareDecision:
    scores: dict[str, float]  # held-out score of each category, edited from the instruction alone
    scores_with_reference: dict[str, float]  # ... and from the instruction and the edited reference frame
    counts: dict[str, int]  # held-out samples judged (both ways) per category
    frozen: bool  # every category of the mix had enough judged samples: the held-out set is fixed from now on
    steered_by: policy.SteeringEvaluation | None  # None: steering waited for the held-out set
    before: dict[str, float]  # the shares so far
    after: dict[str, float]  # the shares from now on


def decide_shares(
    engine: Engine, cfg: RunConfig, run_id: str, training_id: str, drop_probability: float, was_frozen: bool
) -> ShareDecision:
    """The mix moves toward the categories Editto edits worst, by training.share_rate, within each category's
    min and max share, once the held-out set has training.steer_min_samples judged samples of every category
    of the mix (until then the shares stay and the round says it waits). The scores are those of the
    evaluation that matches where the curriculum is (policy.steering_evaluation); a category with fewer
    judged samples than that keeps its share."""
    minimum, categories = cfg.training.steer_min_samples, list(cfg.target_shares())
    counts = judged_per_category(engine, training_id)
    without, with_reference = category_scores(engine, training_id, False), category_scores(engine, training_id, True)
    before = current_shares(engine, run_id) or cfg.target_shares()
    frozen = was_frozen or policy.heldout_complete(counts, categories, minimum)
    if not frozen:
        log.info("steering waits until every category has %d judged held-out samples: %s", minimum, counts)
        return ShareDecision(without, with_reference, counts, False, None, before, before)
    steered_by = policy.steering_evaluation(drop_probability)
    chosen = with_reference if steered_by == "with reference" else without
    scores = {c: v for c, v in chosen.items() if counts.get(c, 0) >= minimum}
    bounds = {c: (cfg.categories[c].min_share, cfg.categories[c].max_share) for c in before}
    after = quotas.shift_shares(before, scores, bounds, cfg.training.share_rate)
    log.info("category shares after %s, steered %s: %s (held-out scores %s)", training_id, steered_by, after, scores)
    return ShareDecision(without, with_reference, counts, True, steered_by, before, after)


def evaluate_heldout(
    ctx: RunContext, training_id: str, checkpoint: EdittoCheckpoint, sample: Sample, with_reference: bool
) -> None:
    """Editto edits the sample's source from its instruction, and its edited key frame when `with_reference`;
    the video judge scores the result against the same instruction and target description as the accepted
    sample."""
    record = json.loads(sample.record_json)
    node = f"evaluate {sample.id}" + (" with reference" if with_reference else "")
    site = CallSite(ctx.run_id, None, node, 0, training_id=training_id)
    edited: str | None = None
    try:
        made = ctx.caller.call(
            "edit_with_editto",
            EditWithEdittoInput(
                checkpoint=checkpoint,
                clip=record["artifacts"]["source"],
                instruction=record["instruction"],
                seed=record["seeds"]["seed"],
                reference=record["artifacts"]["edited_keyframe"] if with_reference else None,
            ),
            site,
        )
        edited = made.edited_video
        verdict = ctx.caller.call(
            "judge_video",
            JudgeInput(
                source=made.source_window,  # the frames Editto edited, at its size
                edited=edited,
                instruction=record["instruction"],
                target_description=record["target_description"],
                category=record.get("category", ""),
            ),
            site,
        )
        metrics = None
        if ctx.has_tool("score_clip"):  # the paper's CLIP-T and CLIP-F, beside the judge
            text = record["target_description"]
            metrics = ctx.caller.call("score_clip", ScoreClipInput(video=edited, text=text), site).scores
    except ToolError as err:
        record_evaluation(ctx.engine, training_id, sample.id, with_reference, edited, None, str(err))
        return
    record_evaluation(ctx.engine, training_id, sample.id, with_reference, edited, verdict.model_dump(), None, metrics)


class TrainingError(Exception):
    """A training round cannot start: no such run, or no accepted sample to train on."""


def train_by_hand(cfg: RunConfig, run_id: str, steps: int | None) -> TrainingRun:
    """`python main.py train`: one round on the run's accepted samples, charged to the run's ledger. A round
    a crash left unfinished is finished first, as it was planned."""
    engine = open_engine(cfg.resolved_db_url)
    with Session(engine) as s:
        if s.get(Run, run_id) is None:
            raise TrainingError(f"no run {run_id!r} in {cfg.resolved_db_url}")
    let_ray_go = connect_for_training(cfg)
    try:
        toolkit = declare_tools(cfg.tools, cfg.backends, tools_used_in("training"))
        here = cfg.model_copy(update={"executor": "local"})  # by hand: the tools load in this process
        ctx = open_context(cfg, engine, run_id, toolkit, open_executor(here, toolkit))
        planned = plan_round(ctx, "by hand", steps)
        if planned is None:
            raise TrainingError(f"run {run_id} has no accepted sample to train on (the first is held out)")
        return run_round(ctx, planned)
    finally:
        let_ray_go()
