"""The closed loop: a round whose held-out evaluation scores one category low makes the following episodes
contain more of that category, within its bounds, and the decision is recorded on the round. The evaluation
that steers is the one matching the curriculum (with the reference frame early, from the instruction alone
late), and nothing steers until every category has enough judged held-out samples."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console
from sqlmodel import Session

from agent.admission import admit_episode
from agent.config import RunConfig, load_config
from agent.training import decide_shares
from cli.render import shares_table
from store.engine import open_engine
from store.tables import Episode, Run, Sample
from store.training import RoundOutcome, finish_training_run, open_training_run, record_evaluation

CLIPS = ("/clips/a.mp4", "/clips/b.mp4", "/clips/c.mp4")
LOW = "local_attribute"


def admit_and_accept(engine, cfg: RunConfig, run_id: str, start: int, count: int) -> Counter[str]:  # type: ignore[no-untyped-def]
    """Admit `count` episodes in order and accept each at once, as a run one episode at a time would."""
    got: Counter[str] = Counter()
    for i in range(start, start + count):
        clip = CLIPS[i % len(CLIPS)]
        episode = admit_episode(
            engine,
            run_id,
            cfg,
            {"episode_id": f"{run_id}:{i:05d}", "clip_path": clip, "clip_seed": 1, "variant": i // 3, "seed": i},
            i,
            {},
        )
        assert episode is not None
        category = episode["categories"][0]
        got[category] += 1
        with Session(engine) as s:
            row = s.get(Episode, episode["episode_id"])
            row.status, row.planned_category = "accepted", category
            s.add(row)
            s.add(
                Sample(
                    id=f"s{i:05d}",
                    episode_id=row.id,
                    run_id=run_id,
                    dataset_dir=f"s{i:05d}",
                    record_json=json.dumps({"category": category, "instruction": "x"}),
                )
            )
            s.commit()
    return got


def run_with(
    tmp_path: Path,
    low: dict[bool, str | None],
    steer_min_samples: int = 2,
    drop_probability: float = 1.0,
) -> tuple[Counter[str], dict[str, float], object]:
    """A round whose rigged judge scores every category 9 but `low[with_reference]`, which scores 2, in the
    evaluation with the reference frame (True) and without it (False); then 20 more episodes admitted."""
    training = {"share_rate": 0.5, "steer_min_samples": steer_min_samples}
    cfg = load_config("cpu", None, {"out": tmp_path, "concurrency": 1, "training": training})
    tmp_path.mkdir(parents=True)
    engine = open_engine(cfg.resolved_db_url)
    with Session(engine) as s:
        s.add(Run(id="r", profile="cpu", budget_device_seconds=1.0, seed=0, config_json="{}"))
        s.commit()
    before = admit_and_accept(engine, cfg, "r", 0, 40)
    assert min(before[c] for c in cfg.target_shares()) >= 2  # every category of the mix has 2 to judge
    heldout = [f"s{i:05d}" for i in range(40)]
    round_ = open_training_run(engine, "r", "every 40 accepted", 1, 40, heldout[1:], heldout)
    for sample_id in heldout:
        with Session(engine) as s:
            category = json.loads(s.get(Sample, sample_id).record_json)["category"]
        for with_reference in (False, True):
            score = 2.0 if category == low[with_reference] else 9.0
            verdict = {"scores": {"edit_strength": score, "temporal_consistency": score}, "reasons": {}}
            record_evaluation(engine, round_.id, sample_id, with_reference, None, verdict, None)
    shares = decide_shares(engine, cfg, "r", round_.id, drop_probability, was_frozen=False)
    done = finish_training_run(
        engine,
        round_.id,
        RoundOutcome(
            "finished",
            category_scores=shares.scores,
            category_scores_with_reference=shares.scores_with_reference,
            category_counts=shares.counts,
            heldout_frozen=shares.frozen,
            steered_by=shares.steered_by,
            shares_before=shares.before,
            shares_after=shares.after,
        ),
    )
    after = admit_and_accept(engine, cfg, "r", 40, 20)
    return after, shares.after, done


def test_a_category_editto_does_badly_gets_more_episodes_within_its_bounds(tmp_path: Path) -> None:
    rigged, shares, done = run_with(tmp_path / "rigged", {False: LOW, True: None})
    fair, fair_shares, _ = run_with(tmp_path / "fair", {False: None, True: None})
    cfg = load_config("cpu", None, {"out": tmp_path})
    assert rigged[LOW] > fair[LOW]  # the following episodes contain more of it
    assert shares[LOW] > cfg.target_shares()[LOW] and shares[LOW] <= cfg.categories[LOW].max_share
    assert fair_shares == pytest.approx(cfg.target_shares(), abs=1e-5)  # equal scores change nothing
    assert all(cfg.categories[c].min_share - 1e-6 <= v <= cfg.categories[c].max_share + 1e-6 for c, v in shares.items())
    recorded = json.loads(done.category_scores_json)
    assert recorded[LOW] == 2.0 and json.loads(done.shares_after_json) == shares
    assert json.loads(done.shares_before_json) == pytest.approx(cfg.target_shares())
    assert done.steered_by == "instruction alone" and done.heldout_frozen  # the curriculum is done (drop 1.0)


def test_early_in_the_curriculum_the_evaluation_with_the_reference_steers(tmp_path: Path) -> None:
    """Low from the instruction alone (a task not yet trained) but fine with the reference: early on, the
    with-reference evaluation steers and leaves LOW be; the other category it scores low gains instead."""
    other = "text"
    _, early, done = run_with(tmp_path / "early", {False: LOW, True: other}, drop_probability=0.2)
    _, late, _ = run_with(tmp_path / "late", {False: LOW, True: other}, drop_probability=0.8)
    cfg = load_config("cpu", None, {"out": tmp_path})
    assert done.steered_by == "with reference"
    assert early[other] > cfg.target_shares()[other] and early[LOW] <= cfg.target_shares()[LOW] + 1e-6
    assert late[LOW] > cfg.target_shares()[LOW] and late[other] <= cfg.target_shares()[other] + 1e-6
    console = Console(width=200, record=True)
    console.print(shares_table(done))
    assert "by the evaluation with reference" in console.export_text()


def test_steering_waits_until_every_category_has_enough_judged_samples(tmp_path: Path) -> None:
    _, shares, done = run_with(tmp_path / "few", {False: LOW, True: LOW}, steer_min_samples=50)
    cfg = load_config("cpu", None, {"out": tmp_path})
    assert shares == pytest.approx(cfg.target_shares(), abs=1e-5)  # one bad category on a few samples moves nothing
    counts = json.loads(done.category_counts_json)
    assert counts[LOW] >= 1 and not done.heldout_frozen and done.steered_by is None  # counted, not steering
    console = Console(width=200, record=True)
    console.print(shares_table(done))
    assert "steering waits for the held-out set" in console.export_text()


def test_an_episode_started_before_categories_gets_them_when_resumed(tmp_path: Path) -> None:
    cfg = load_config("cpu", None, {"out": tmp_path, "concurrency": 1})
    engine = open_engine(cfg.resolved_db_url)
    with Session(engine) as s:
        s.add(Run(id="r", profile="cpu", budget_device_seconds=1.0, seed=0, config_json="{}"))
        s.commit()
        s.add(Episode(id="r:00000", run_id="r", index=0, clip_path=CLIPS[0], variant=0, seed=0))  # no categories
        s.commit()
    inp = {"episode_id": "r:00000", "clip_path": CLIPS[0], "clip_seed": 1, "variant": 0, "seed": 0}
    episode = admit_episode(engine, "r", cfg, inp, 0, {})  # type: ignore[arg-type]
    assert episode is not None and episode["categories"] and episode["category_rounds"] == {}
    with Session(engine) as s:
        row = s.get(Episode, "r:00000")
        assert row is not None and row.category == episode["categories"][0]
        assert json.loads(row.categories_json or "[]") == episode["categories"]
