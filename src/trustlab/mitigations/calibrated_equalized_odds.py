"""Calibrated equalized odds (Pleiss, Raghavan, Wu, Kleinberg & Weinberger, NeurIPS 2017).

Post-processing on the estimator's calibrated scores. Equalized odds and calibration
cannot both hold exactly, so Pleiss et al. relax equalized odds to one *generalized* cost
per group (the score-weighted false-negative rate, false-positive rate, or a weighted sum
of the two) and equalize that cost while keeping each group calibrated: the group with the
lower cost gets, with probability ``mix_rate``, the trivial prediction (its own base rate,
which is perfectly calibrated and costlier) instead of the model's score, and

    mix_rate = (cost_other - cost_own) / (cost_trivial_own - cost_own).

As AIF360's ``CalibratedEqOddsPostprocessing`` expects, the costs are measured on
validation rows the model did not see: ``holdout`` of the training rows (stratified by
(group, label), seeded) are set aside, the estimator is fitted on the rest, and the mixing
rates and base rates come from its scores on the held-out rows. At prediction time the
random draws come from ``numpy.random.RandomState(seed)`` in AIF360's order (one uniform
draw per unprivileged row, then one per privileged row, rows in their given order), so a
trial is reproducible and equals AIF360 run after ``np.random.seed(seed)``.

Written by hand: AIF360 has it, but it is a test oracle here and not a dependency (it
pulls in its whole dataset stack, and its metrics need ``BinaryLabelDataset`` objects);
the method itself is a few group means. The costs are AIF360's ``ClassificationMetric``
quantities: base rate P(y=1 | group), GFPR = sum of scores over the group's negatives /
their count, GFNR = sum of (1 - score) over its positives / their count, and
``weighted`` = (GFPR (1 - base rate) + GFNR base rate) / 2.

Groups: ``privileged`` names the privileged value (the tabular kind passes the
dataset's); every other value is unprivileged. Without it, the group with the highest
positive-label rate in the training data is taken as privileged.

This module also holds the two helpers the other hand-written AIF360 methods share
(``privileged_mask``, ``holdout_scores``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from trustlab import registry
from trustlab.errors import TrustlabError
from trustlab.mitigations._checks import (PRIVILEGED_DOC, PrivilegedValue,
                                          check_both_labels, check_fit_inputs,
                                          check_predict_inputs, holdout_scores,
                                          privileged_mask)
from trustlab.mitigations.base import Mitigation

# -- the method ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MixingRates:
    """What calibrated equalized odds learns: each side's base rate and mixing rate.

    The rates are AIF360's values, which can leave [0, 1] when mixing cannot equalize the
    costs: above 1 the cheaper side's trivial cost is still below the other side's (every
    score is replaced), below 0 its trivial cost is below its own (no score is).
    """

    base_rate_priv: float
    base_rate_unpriv: float
    priv_mix_rate: float
    unpriv_mix_rate: float

    @property
    def equalized(self) -> bool:
        """Whether mixing equalizes the two costs (both rates in [0, 1])."""
        return all(0.0 <= r <= 1.0 for r in (self.priv_mix_rate, self.unpriv_mix_rate))


def _group_costs(y: np.ndarray, scores: np.ndarray, rows: np.ndarray, fn_rate: int,
                 fp_rate: int, base_rate: float) -> float:
    """One group's generalized cost, computed as AIF360's ClassificationMetric does."""
    pos, neg = rows & (y == 1), rows & (y == 0)
    # np.sum over the selected rows in order, float64: the same sums AIF360 forms.
    gfpr = np.sum(scores[neg], dtype=np.float64) / np.sum(neg, dtype=np.float64)
    gfnr = np.sum(1.0 - scores[pos], dtype=np.float64) / np.sum(pos, dtype=np.float64)
    if fn_rate == 0:
        return float(gfpr)
    if fp_rate == 0:
        return float(gfnr)
    norm = float(fp_rate + fn_rate)
    return float(fp_rate / norm * gfpr * (1 - base_rate) + fn_rate / norm * gfnr * base_rate)


def calibrated_eq_odds_rates(y: np.ndarray, scores: np.ndarray, priv: np.ndarray,
                             cost_constraint: str) -> MixingRates:
    """Base rates and mixing rates from validation labels, scores and the privileged mask.

    AIF360's formula; where it would divide by zero (the trivial predictor costs exactly
    what the model does, so mixing changes nothing) the rate is 0 instead of AIF360's
    inf or nan.
    """
    fn_rate, fp_rate = {"fnr": (1, 0), "fpr": (0, 1), "weighted": (1, 1)}[cost_constraint]
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=np.float64)
    unpriv = ~priv
    br_p = float(np.sum(y[priv] == 1, dtype=np.float64) / np.sum(priv, dtype=np.float64))
    br_u = float(np.sum(y[unpriv] == 1, dtype=np.float64) / np.sum(unpriv, dtype=np.float64))
    cost_p = _group_costs(y, scores, priv, fn_rate, fp_rate, br_p)
    cost_u = _group_costs(y, scores, unpriv, fn_rate, fp_rate, br_u)
    # the trivial predictor: every score replaced by the group's base rate
    trivial = np.where(priv, br_p, br_u)
    triv_p = _group_costs(y, trivial, priv, fn_rate, fp_rate, br_p)
    triv_u = _group_costs(y, trivial, unpriv, fn_rate, fp_rate, br_u)

    def rate(num: float, den: float) -> float:
        return float(num / den) if den != 0 else 0.0

    if cost_u > cost_p:  # the privileged side is cheaper: it is mixed up to the other's cost
        return MixingRates(br_p, br_u, rate(cost_u - cost_p, triv_p - cost_p), 0.0)
    return MixingRates(br_p, br_u, 0.0, rate(cost_p - cost_u, triv_u - cost_u))


def calibrated_eq_odds_scores(scores: np.ndarray, priv: np.ndarray, rates: MixingRates,
                              seed: int) -> np.ndarray:
    """The mixed scores: each row keeps its score or, with its side's mixing rate, gets
    its side's base rate. Draws as AIF360's ``predict`` after ``np.random.seed(seed)``."""
    scores = np.asarray(scores, dtype=np.float64)
    rng = np.random.RandomState(seed)
    out = scores.copy()
    unpriv = ~priv
    for rows, mix, base in ((unpriv, rates.unpriv_mix_rate, rates.base_rate_unpriv),
                            (priv, rates.priv_mix_rate, rates.base_rate_priv)):
        idx = np.flatnonzero(rows)
        replaced = rng.random_sample(len(idx)) <= mix
        out[idx[replaced]] = base
    return out


class CalibratedEqualizedOdds(Mitigation):
    """Calibrated equalized odds (Pleiss et al. 2017): randomly replace the cheaper group's
    scores by its base rate until the groups' generalized costs match.

    Fitted on a held-out part of the training data (the estimator is fitted on the rest).
    Learned: ``rates_`` (:class:`MixingRates`; a warning when they cannot equalize the
    costs), ``privileged_``, ``val_idx_``; ``effect()`` gives the share of each side's
    scores replaced.
    ``predict`` is the mixed score >= 0.5 and ``predict_score`` the mixed score itself
    (calibrated within each group), both drawn with the trial seed.
    """

    name = "calibrated_equalized_odds"

    class Params(registry.Params):
        cost_constraint: Literal["fnr", "fpr", "weighted"] = Field(
            "weighted", description="the generalized cost equalized: false-negative rate, "
                                    "false-positive rate, or both weighted by base rate")
        holdout: float = Field(0.3, gt=0, lt=1, description="share of the training rows "
                                                            "held out to fit the mixing rates")
        privileged: PrivilegedValue = Field(None, description=PRIVILEGED_DOC)

    def fit(self, estimator, X, y, sensitive):
        who = self.name
        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        _, self.privileged_ = privileged_mask(y, sensitive, self.privileged, who)
        model, val_idx, scores = holdout_scores(estimator, X, y, sensitive, self.holdout,
                                                self.seed, who)
        priv = sensitive[val_idx] == self.privileged_
        check_both_labels(y[val_idx], priv, who, "held-out rows")
        self.rates_ = calibrated_eq_odds_rates(y[val_idx], scores, priv, self.cost_constraint)
        if not self.rates_.equalized:
            warnings.warn(f"{who}: mixing cannot equalize the {self.cost_constraint} costs "
                          f"on the held-out rows (mixing rates {self.rates_.priv_mix_rate:.3g}"
                          f", {self.rates_.unpriv_mix_rate:.3g}; above 1 every score of the "
                          f"cheaper group is replaced, below 0 none)", stacklevel=2)
        self.val_idx_ = val_idx
        self.estimator_ = model
        return self

    def effect(self) -> dict[str, float]:
        # the share of each side's scores replaced (AIF360's rates can leave [0, 1])
        clip = lambda r: float(min(max(r, 0.0), 1.0))  # noqa: E731
        return {"mix_rate_privileged": clip(self.rates_.priv_mix_rate),
                "mix_rate_unprivileged": clip(self.rates_.unpriv_mix_rate),
                "costs_equalized": float(self.rates_.equalized)}

    def unchanged(self) -> str | None:
        e = self.effect()
        if e["mix_rate_privileged"] > 0 or e["mix_rate_unprivileged"] > 0:
            return None
        return ("no score is mixed (neither mixing rate is above 0 on the held-out rows): "
                "the predictions are the estimator's own, fitted without the held-out rows")

    def predict_score(self, X, sensitive):
        X, sensitive = check_predict_inputs(X, sensitive)
        scores = np.asarray(self.estimator_.predict_proba(X))[:, 1].astype(np.float64)
        return calibrated_eq_odds_scores(scores, sensitive == self.privileged_, self.rates_,
                                         self.seed)

    def predict(self, X, sensitive):
        return (self.predict_score(X, sensitive) >= 0.5).astype(np.int64)
