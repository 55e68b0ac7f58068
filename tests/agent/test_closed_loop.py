"""The closed loop: a round whose held-out evaluation scores one category low makes the following episodes
contain more of that category, within its bounds, and the decision is recorded on the round."""

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
    tmp_path: Path, low_scores: bool, steer_min_samples: int = 2
) -> tuple[Counter[str], dict[str, float], object]:
    training = {"share_rate": 0.5, "steer_min_samples": steer_min_samples}
    cfg = load_config("cpu", None, {"out": tmp_path, "concurrency": 1, "training": training})
    tmp_path.mkdir(parents=True)
    engine = open_engine(cfg.resolved_db_url)
    with Session(engine) as s:
        s.add(Run(id="r", profile="cpu", budget_device_seconds=1.0, seed=0, config_json="{}"))
        s.commit()
    before = admit_and_accept(engine, cfg, "r", 0, 20)
    assert before[LOW] >= 1
    heldout = [f"s{i:05d}" for i in range(20)]
    round_ = open_training_run(engine, "r", "every 20 accepted", 1, 20, heldout[1:], heldout)
    for sample_id in heldout:  # the rigged judge: every category scores 9, local_attribute scores 2
        with Session(engine) as s:
            category = json.loads(s.get(Sample, sample_id).record_json)["category"]
        score = 2.0 if low_scores and category == LOW else 9.0
        verdict = {"scores": {"edit_strength": score, "temporal_consistency": score}, "reasons": {}}
        record_evaluation(engine, round_.id, sample_id, None, verdict, None)
    shares = decide_shares(engine, cfg, "r", round_.id)
    done = finish_training_run(
        engine,
        round_.id,
        RoundOutcome(
            "finished",
            category_scores=shares.scores,
            category_counts=shares.counts,
            shares_before=shares.before,
            shares_after=shares.after,
        ),
    )
    after = admit_and_accept(engine, cfg, "r", 20, 20)
    return after, shares.after, done


def test_a_category_editto_does_badly_gets_more_episodes_within_its_bounds(tmp_path: Path) -> None:
    rigged, shares, done = run_with(tmp_path / "rigged", low_scores=True)
    fair, fair_shares, _ = run_with(tmp_path / "fair", low_scores=False)
    cfg = load_config("cpu", None, {"out": tmp_path})
    assert rigged[LOW] > fair[LOW]  # the following episodes contain more of it
    assert shares[LOW] > cfg.target_shares()[LOW] and shares[LOW] <= cfg.categories[LOW].max_share
    assert fair_shares == pytest.approx(cfg.target_shares(), abs=1e-5)  # equal scores change nothing
    assert all(cfg.categories[c].min_share - 1e-6 <= v <= cfg.categories[c].max_share + 1e-6 for c, v in shares.items())
    recorded = json.loads(done.category_scores_json)
    assert recorded[LOW] == 2.0 and json.loads(done.shares_after_json) == shares
    assert json.loads(done.shares_before_json) == pytest.approx(cfg.target_shares())


def test_a_category_with_too_few_heldout_samples_does_not_steer(tmp_path: Path) -> None:
    _, shares, done = run_with(tmp_path / "few", low_scores=True, steer_min_samples=50)
    cfg = load_config("cpu", None, {"out": tmp_path})
    assert shares == pytest.approx(cfg.target_shares(), abs=1e-5)  # one bad category on a few samples moves nothing
    counts = json.loads(done.category_counts_json)
    assert counts[LOW] >= 1 and json.loads(done.category_scores_json) == {}  # counted, not steering
    console = Console(width=200, record=True)
    console.print(shares_table(done))
    assert f"({counts[LOW]} held out: too few to steer)" in console.export_text()


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
