"""How far the judges' decisions agree with labels, and thresholds fitted to them. Per edit category: the
accept decision's confusion matrix, precision and recall; each criterion's ROC AUC (how well its score alone
ranks accepted cases above rejected ones); and per-category thresholds for a target precision, written as a
config overlay (policy.category_pass) that a run's --config takes.

The fit searches one threshold at a time (coordinate ascent over every criterion the judges scored, each
threshold at a midpoint between two neighbouring scores, or off), keeping the thresholds that reach the
target precision with the most recall; ties go to the value nearest the configured one, so a fit moves a
threshold only where the labels ask it to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from agent.judging import STAGES, CaseVerdict
from agent.policy import PolicyConfig, pass_thresholds

MAX_ROUNDS = 20  # coordinate ascent settles in a few rounds; this bounds it


@dataclass(frozen=True)
class Confusion:
    tp: int  # labelled accept, accepted
    fp: int  # labelled reject, accepted: a wrong sample in the dataset
    fn: int  # labelled accept, rejected: a good sample thrown away
    tn: int

    @property
    def precision(self) -> float | None:
        """Of the accepted, the share labelled accept; None when nothing was accepted."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """Of those labelled accept, the share accepted; None when none is labelled accept."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


def confusion(labels: Sequence[bool], accepted: Sequence[bool]) -> Confusion:
    y, a = np.asarray(labels, bool), np.asarray(accepted, bool)
    return Confusion(int((y & a).sum()), int((~y & a).sum()), int((y & ~a).sum()), int((~y & ~a).sum()))


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """The probability that a case labelled accept scores above one labelled reject (ties count half): the
    area under the ROC curve, by Mann-Whitney. None without both labels."""
    y, s = np.asarray(labels, bool), np.asarray(scores, float)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return None
    above = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(above / (len(pos) * len(neg)))


Criterion = tuple[str, str]  # (stage, criterion)


@dataclass
class CategoryFit:
    category: str
    cases: int
    current: Confusion  # the configured policy's decisions
    auc: dict[Criterion, float | None]
    configured: dict[str, dict[str, float]]  # stage -> the policy's thresholds for this category
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> criterion -> fitted
    fitted: Confusion | None = None  # the fitted thresholds' decisions on the same cases
    note: str = ""  # why nothing was fitted, or that the target was not reached


def labelled(verdicts: Sequence[CaseVerdict]) -> list[CaseVerdict]:
    return [v for v in verdicts if v.case.label is not None]


def score_table(verdicts: Sequence[CaseVerdict], criteria: Sequence[Criterion]) -> np.ndarray:
    """[cases, criteria] scores; NaN where a case has no such score (no key frame, not judged)."""
    return np.array([[v.scores.get(s, {}).get(c, np.nan) for s, c in criteria] for v in verdicts], float).reshape(
        len(verdicts), len(criteria)
    )


def decide(table: np.ndarray, floors: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """Accepted: judged, and every score present at least its floor (a missing stage is not checked)."""
    return judged & np.all(np.isnan(table) | (table >= floors), axis=1)


def objective(conf: Confusion, target: float) -> tuple[bool, float, float]:
    """Larger is better: the target reached, then recall, then precision (nothing accepted counts as 0)."""
    precision, recall = conf.precision or 0.0, conf.recall or 0.0
    return (precision >= target, recall if precision >= target else precision, recall)


def fit_category(category: str, verdicts: Sequence[CaseVerdict], cfg: PolicyConfig, target: float) -> CategoryFit:
    cases = labelled(verdicts)
    y = np.array([v.case.label == "accept" for v in cases], bool)
    criteria = sorted({(s, c) for v in cases for s, scores in v.scores.items() for c in scores})
    table = score_table(cases, criteria)
    configured = {s: pass_thresholds(cfg, s, category) for s in STAGES}
    fit = CategoryFit(
        category,
        len(cases),
        confusion(y, [v.accepted for v in cases]),
        {k: roc_auc(y[~np.isnan(table[:, i])], table[~np.isnan(table[:, i]), i]) for i, k in enumerate(criteria)},
        configured,
    )
    if y.all() or not y.any():
        fit.note = "not fitted: needs cases labelled accept and cases labelled reject"
        return fit
    # A case refused before the judges (the pre-filter, an unreadable file) stays refused whatever the thresholds.
    judged = np.array([v.prefilter is None and v.error is None for v in cases], bool)
    start = np.array([configured[s].get(c, 0.0) for s, c in criteria], float)
    floors = start.copy()
    for _ in range(MAX_ROUNDS):
        moved = False
        for i in range(len(criteria)):
            best = (objective(confusion(y, decide(table, floors, judged)), target), -abs(floors[i] - start[i]))
            for value in candidate_floors(table[:, i]):
                trial = floors.copy()
                trial[i] = value
                rank = (objective(confusion(y, decide(table, trial, judged)), target), -abs(value - start[i]))
                if rank > best:
                    best, floors, moved = rank, trial, True
        if not moved:
            break
    fit.fitted = confusion(y, decide(table, floors, judged))
    fit.thresholds = {  # every criterion scored, 0 where the fit turned it off (over the policy's, 0 is needed)
        s: {c: round(float(f), 2) for (stage, c), f in zip(criteria, floors, strict=True) if stage == s}
        for s in STAGES
        if any(stage == s for stage, _ in criteria)
    }
    if (fit.fitted.precision or 0.0) < target:
        fit.note = f"target precision {target:g} not reached on these cases"
    return fit


def candidate_floors(scores: np.ndarray) -> list[float]:
    """Off (0), and midpoints between neighbouring distinct scores, and just above the highest."""
    values = np.unique(scores[~np.isnan(scores)])
    mids = (values[1:] + values[:-1]) / 2 if len(values) > 1 else np.array([])
    top = [min(10.0, float(values[-1]) + 0.01)] if len(values) else []
    return [0.0, *(round(float(m), 2) for m in mids), *top]


def calibrate(verdicts: Sequence[CaseVerdict], cfg: PolicyConfig, target: float) -> list[CategoryFit]:
    """One fit per category that has labelled cases, in the order the cases name them."""
    by_category: dict[str, list[CaseVerdict]] = {}
    for v in labelled(verdicts):
        by_category.setdefault(v.case.category, []).append(v)
    return [fit_category(category, found, cfg, target) for category, found in by_category.items()]


def overall(verdicts: Sequence[CaseVerdict]) -> Confusion:
    cases = labelled(verdicts)
    return confusion([v.case.label == "accept" for v in cases], [v.accepted for v in cases])


def overlay_yaml(fits: Sequence[CategoryFit], header: str, base: dict[str, Any]) -> str:
    """A config file that --config takes: `base` (the config file the cases were judged with, if any) with the
    fitted categories' thresholds under policy.category_pass, beside the tables it gives other categories (the
    profile's own stay the profile's: a config file merges over them)."""
    tables = dict(base.get("policy", {}).get("category_pass", {}))
    for fit in fits:
        if fit.thresholds:
            tables[fit.category] = {f"{stage}_pass": table for stage, table in fit.thresholds.items()}
    data = {**base, "policy": {**base.get("policy", {}), "category_pass": tables}}
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
