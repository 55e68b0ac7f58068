"""The judges against labels: confusion matrix, precision, recall and ROC AUC as the textbook defines them, and
per-category thresholds fitted for a target precision, written as a config overlay that a run loads and decides
by."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.calibration import calibrate, confusion, overlay_yaml, roc_auc
from agent.config import load_config
from agent.judging import CaseVerdict
from agent.policy import PolicyConfig, pass_thresholds
from store.cases import Case


def verdict(label: str, category: str, video: dict[str, float], accepted: bool = True, **extra: str) -> CaseVerdict:
    case = Case(0, "s.mp4", "e.mp4", "Make it sepia.", category, label, "", Path("s.mp4"), Path("e.mp4"))
    return CaseVerdict(case, accepted, "passed" if accepted else "rejected", scores={"video": video}, **extra)


def test_confusion_precision_and_recall() -> None:
    conf = confusion([True, True, False, False, True], [True, False, True, False, True])
    assert (conf.tp, conf.fp, conf.fn, conf.tn) == (2, 1, 1, 1)
    assert conf.precision == pytest.approx(2 / 3) and conf.recall == pytest.approx(2 / 3)
    nothing = confusion([True, False], [False, False])
    assert nothing.precision is None and nothing.recall == 0.0


def test_roc_auc_is_the_chance_an_accepted_case_outscores_a_rejected_one() -> None:
    assert roc_auc([True, True, False, False], [9, 8, 2, 1]) == 1.0
    assert roc_auc([True, True, False, False], [1, 2, 8, 9]) == 0.0
    assert roc_auc([True, False], [5, 5]) == 0.5  # a tie counts half
    assert roc_auc([True, True, False], [9, 3, 5]) == 0.5
    assert roc_auc([True, True], [1, 2]) is None  # no rejected case to rank against
    # the trapezoid under the ROC curve, computed the long way
    rng = np.random.default_rng(0)
    y, s = rng.random(60) < 0.4, rng.integers(0, 10, 60).astype(float)
    thresholds = np.r_[np.inf, np.unique(s)[::-1]]
    tpr = [(s[y] >= t).mean() for t in thresholds]
    fpr = [(s[~y] >= t).mean() for t in thresholds]
    assert roc_auc(y, s) == pytest.approx(np.trapezoid(tpr, fpr))


def weak_and_strong(n: int = 6) -> list[CaseVerdict]:
    """Good edits score 6-9 on strength; bad ones 3-5, which today's thresholds (2.5) accept."""
    good = [verdict("accept", "global_style", {"edit_strength": 6 + k % 4, "coverage": 9}) for k in range(n)]
    bad = [verdict("reject", "global_style", {"edit_strength": 3 + k % 3, "coverage": 9}) for k in range(n)]
    return good + bad


def test_the_fit_reaches_the_target_precision_with_the_most_recall() -> None:
    cfg = PolicyConfig(video_pass={"edit_strength": 2.5, "coverage": 8})
    (fit,) = calibrate(weak_and_strong(), cfg, target=0.95)
    assert fit.current.precision == 0.5 and fit.current.recall == 1.0
    assert fit.fitted is not None and fit.fitted.precision == 1.0 and fit.fitted.recall == 1.0
    assert 5 < fit.thresholds["video"]["edit_strength"] <= 6  # between the worst good and the best bad score
    assert fit.thresholds["video"]["coverage"] == 8  # nothing asked it to move
    assert fit.auc[("video", "edit_strength")] == 1.0 and fit.auc[("video", "coverage")] == 0.5
    assert not fit.note


def test_a_category_with_one_label_only_is_not_fitted() -> None:
    only_good = [verdict("accept", "text", {"coverage": 9}) for _ in range(3)]
    (fit,) = calibrate(only_good, PolicyConfig(), target=0.95)
    assert fit.thresholds == {} and "needs cases labelled accept and cases labelled reject" in fit.note


def test_a_case_refused_before_the_judges_stays_refused_whatever_the_thresholds() -> None:
    refused = verdict("reject", "global_style", {}, accepted=False, prefilter="scene_cut: cut_score=0.6 > 0.4")
    cases = [*weak_and_strong(2), refused]
    (fit,) = calibrate(cases, PolicyConfig(video_pass={"edit_strength": 2.5}), target=0.95)
    assert fit.fitted is not None and fit.fitted.tn >= 1 + 2


def test_the_overlay_loads_as_a_config_and_its_thresholds_are_the_runs(tmp_path: Path) -> None:
    base = load_config("cpu").policy
    fits = calibrate(weak_and_strong(), base, target=0.95)
    overlay = tmp_path / "calibrated.yaml"
    mine = {"seed": 7, "policy": {"max_attempts": 2}}
    overlay.write_text(overlay_yaml(fits, "fitted on 12 cases\nsecond line", mine))
    assert overlay.read_text().startswith("# fitted on 12 cases\n# second line\n")
    cfg = load_config("cpu", overlay)
    assert cfg.seed == 7 and cfg.policy.max_attempts == 2  # the config the cases were judged with is kept
    assert pass_thresholds(cfg.policy, "video", "global_style") == {**base.video_pass, **fits[0].thresholds["video"]}
    assert pass_thresholds(cfg.policy, "video", "text") == base.video_pass  # no cases: unchanged
