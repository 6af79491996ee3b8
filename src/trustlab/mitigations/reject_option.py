"""Reject option classification (Kamiran, Karim & Zhang, ICDM 2012).

Post-processing on the estimator's scores. Decisions close to the boundary are the least
certain, so that is where discrimination is cheapest to undo: in the critical region
around the classification threshold theta, unprivileged rows get the favorable label and
privileged rows the unfavorable one; outside it, predict 1 iff score > theta. The region
is AIF360's half-open band ``theta - margin < score <= theta + margin``.

theta and margin are chosen as AIF360's ``RejectOptionClassification.fit`` does: a grid
of ``num_class_thresh`` thresholds evenly from ``low_class_thresh`` to
``high_class_thresh``, each with ``num_roc_margin`` margins evenly from 0 to
min(theta, 1 - theta); the pair with the highest balanced accuracy whose fairness metric
lies in [metric_lb, metric_ub] wins (the first in grid order on ties). The metrics are
AIF360's, unprivileged minus privileged: ``statistical_parity`` (selection rates),
``equal_opportunity`` (TPRs), ``average_odds`` (mean of the FPR and TPR differences).
They are measured on validation rows the model did not see: ``holdout`` of the training
rows (stratified by (group, label), seeded); the estimator is fitted on the rest.

One deliberate difference from AIF360: when no pair meets the bounds, AIF360 takes the
pair with the *smallest* metric value, which for the usual failure (the unprivileged group
still far behind) is the most unfair pair on the grid. Here the pair whose metric is
closest to the bounds is taken (then the highest balanced accuracy), ``feasible_`` is
False and a warning says so.

Written by hand: AIF360 is a test oracle here, not a dependency, and its grid search
re-scores a copied dataset per grid point (5000 by default). Here it is vectorized and
exact: for a privileged row the band rule reduces to "1 iff score > theta + margin", for
an unprivileged one to "1 iff score > theta - margin" (margin >= 0), so every grid point's
counts are binary searches in each (side, label) cell's sorted scores, and the rates are
formed with AIF360's float expressions (so ties and bound checks fall the same way).

Groups: ``privileged`` names the privileged value (the tabular kind passes the dataset's);
every other value is unprivileged. Without it, the group with the highest positive-label
rate in the training data is taken as privileged.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from trustlab import registry
from trustlab.errors import TrustlabError
from trustlab.mitigations._checks import (PRIVILEGED_DOC, PrivilegedValue, check_both_labels,
                                          check_fit_inputs, check_predict_inputs,
                                          holdout_scores, privileged_mask)
from trustlab.mitigations.base import Mitigation
from trustlab.registry import ParamError

Metric = Literal["statistical_parity", "average_odds", "equal_opportunity"]


@dataclass(frozen=True)
class RejectOptionGrid:
    """Every grid point, in AIF360's order (threshold outer, margin inner)."""

    class_thresh: np.ndarray
    roc_margin: np.ndarray
    balanced_accuracy: np.ndarray
    fair_metric: np.ndarray


def roc_grid(low: float, high: float, num_class_thresh: int, num_roc_margin: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """The (threshold, margin) pairs AIF360 tries, built with the same ``np.linspace`` calls."""
    thresh, margin = [], []
    for t in np.linspace(low, high, num_class_thresh):
        high_margin = t if t <= 0.5 else 1.0 - t
        m = np.linspace(0.0, high_margin, num_roc_margin)
        thresh.append(np.full(num_roc_margin, t))
        margin.append(m)
    return np.concatenate(thresh), np.concatenate(margin)


def reject_option_predict(scores: np.ndarray, priv: np.ndarray, class_thresh: float,
                          roc_margin: float) -> np.ndarray:
    """Labels of the band rule (AIF360's ``predict``, reduced as in the module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.where(priv, scores > class_thresh + roc_margin,
                    scores > class_thresh - roc_margin).astype(np.int64)


def _count_above(sorted_scores: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """How many scores are > each cut, as float64 (AIF360 sums weights of 1.0)."""
    return (len(sorted_scores) - np.searchsorted(sorted_scores, cut, side="right")
            ).astype(np.float64)


def reject_option_grid(y: np.ndarray, scores: np.ndarray, priv: np.ndarray, metric: str,
                       low_class_thresh: float = 0.01, high_class_thresh: float = 0.99,
                       num_class_thresh: int = 100, num_roc_margin: int = 50
                       ) -> RejectOptionGrid:
    """Balanced accuracy and the fairness metric at every grid point."""
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=np.float64)
    thresh, margin = roc_grid(low_class_thresh, high_class_thresh, num_class_thresh,
                              num_roc_margin)
    cuts = {True: thresh + margin, False: thresh - margin}  # privileged / unprivileged
    sel, count = {}, {}
    for side in (True, False):
        for label in (0, 1):
            rows = (priv == side) & (y == label)
            sel[side, label] = _count_above(np.sort(scores[rows]), cuts[side])
            count[side, label] = np.sum(rows, dtype=np.float64)
    P = count[True, 1] + count[False, 1]
    N = count[True, 0] + count[False, 0]
    TP = sel[True, 1] + sel[False, 1]
    TN = N - (sel[True, 0] + sel[False, 0])
    balanced = 0.5 * (TP / P + TN / N)

    def rate(side, labels):
        return (sum(sel[side, lab] for lab in labels)
                / sum(count[side, lab] for lab in labels))

    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "statistical_parity":
            fair = rate(False, (0, 1)) - rate(True, (0, 1))
        elif metric == "equal_opportunity":
            fair = rate(False, (1,)) - rate(True, (1,))
        else:  # average_odds
            fair = 0.5 * ((rate(False, (0,)) - rate(True, (0,)))
                          + (rate(False, (1,)) - rate(True, (1,))))
    return RejectOptionGrid(thresh, margin, balanced, fair)


def choose_reject_option(grid: RejectOptionGrid, metric_lb: float, metric_ub: float
                         ) -> tuple[int, bool]:
    """Index of the chosen grid point, and whether it meets the bounds.

    Feasible points: the first with the highest balanced accuracy (AIF360's rule).
    None feasible: the point closest to [metric_lb, metric_ub], then the highest balanced
    accuracy, then the first (AIF360 would take the smallest metric value).
    """
    fair, bal = grid.fair_metric, grid.balanced_accuracy
    feasible = (fair >= metric_lb) & (fair <= metric_ub)
    if feasible.any():
        best = np.max(bal[feasible])
        return int(np.flatnonzero(feasible & (bal == best))[0]), True
    distance = np.maximum(metric_lb - fair, fair - metric_ub)
    order = np.lexsort((np.arange(len(fair)), -bal, distance))
    return int(order[0]), False


class RejectOptionClassification(Mitigation):
    """Reject option classification (Kamiran et al. 2012): near the threshold, favor the
    unprivileged group and disfavor the privileged one.

    theta and margin maximize balanced accuracy on held-out training rows subject to the
    fairness metric lying in [metric_lb, metric_ub]. Learned: ``class_thresh_``,
    ``roc_margin_``, ``feasible_``, ``val_balanced_accuracy_``, ``val_metric_``,
    ``privileged_``. ``predict_score`` is the fitted estimator's P(y=1) (the band rule is
    not a threshold on it).
    """

    name = "reject_option_classification"

    class Params(registry.Params):
        metric: Metric = Field("statistical_parity", description="the fairness metric kept "
                                                                 "within the bounds")
        metric_lb: float = Field(-0.05, description="lower bound of the metric "
                                                    "(unprivileged minus privileged)")
        metric_ub: float = Field(0.05, description="upper bound of the metric")
        low_class_thresh: float = Field(0.01, ge=0, le=1, description="smallest "
                                                                      "classification threshold")
        high_class_thresh: float = Field(0.99, ge=0, le=1, description="largest "
                                                                       "classification threshold")
        num_class_thresh: int = Field(100, ge=1, description="thresholds tried between the two")
        num_roc_margin: int = Field(50, ge=1, description="margins tried per threshold "
                                                          "(AIF360's num_ROC_margin)")
        holdout: float = Field(0.3, gt=0, lt=1, description="share of the training rows held "
                                                            "out to choose theta and margin")
        privileged: PrivilegedValue = Field(None, description=PRIVILEGED_DOC)

        @model_validator(mode="after")
        def _ordered(self):
            if self.low_class_thresh >= self.high_class_thresh:
                raise ParamError("high_class_thresh", "must be greater than low_class_thresh")
            if self.metric_lb > self.metric_ub:
                raise ParamError("metric_ub", "must be at least metric_lb")
            return self

    def fit(self, estimator, X, y, sensitive):
        who = self.name
        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        _, self.privileged_ = privileged_mask(y, sensitive, self.privileged, who)
        model, val_idx, scores = holdout_scores(estimator, X, y, sensitive, self.holdout,
                                                self.seed, who)
        y_val, priv = y[val_idx], sensitive[val_idx] == self.privileged_
        if self.metric == "statistical_parity":
            if priv.all() or not priv.any() or len(np.unique(y_val)) < 2:
                raise TrustlabError(f"{who}: the held-out rows need both sides and both "
                                    "labels")
        else:
            check_both_labels(y_val, priv, who, "held-out rows")
        grid = reject_option_grid(y_val, scores, priv, self.metric, self.low_class_thresh,
                                  self.high_class_thresh, self.num_class_thresh,
                                  self.num_roc_margin)
        best, self.feasible_ = choose_reject_option(grid, self.metric_lb, self.metric_ub)
        if not self.feasible_:
            warnings.warn(f"{who}: no threshold and margin keep {self.metric} within "
                          f"[{self.metric_lb:g}, {self.metric_ub:g}] on the held-out rows; "
                          f"took the closest ({grid.fair_metric[best]:.4f})", stacklevel=2)
        self.class_thresh_ = float(grid.class_thresh[best])
        self.roc_margin_ = float(grid.roc_margin[best])
        self.val_balanced_accuracy_ = float(grid.balanced_accuracy[best])
        self.val_metric_ = float(grid.fair_metric[best])
        self.val_idx_ = val_idx
        self.estimator_ = model
        return self

    def effect(self) -> dict[str, float]:
        return {"class_thresh": self.class_thresh_, "roc_margin": self.roc_margin_,
                "feasible": float(self.feasible_)}

    def unchanged(self) -> str | None:
        if self.roc_margin_ > 0 or self.class_thresh_ != 0.5:
            return None
        return ("margin 0 at threshold 0.5: the predictions are the estimator's own, fitted "
                "without the held-out rows")

    def predict(self, X, sensitive):
        X, sensitive = check_predict_inputs(X, sensitive)
        scores = np.asarray(self.estimator_.predict_proba(X))[:, 1].astype(np.float64)
        return reject_option_predict(scores, sensitive == self.privileged_,
                                     self.class_thresh_, self.roc_margin_)
