"""Deterministic per-group decision thresholds chosen on a validation split.

fairlearn's ThresholdOptimizer reaches its constraint by randomizing between two
thresholds per group, and picks them on the training scores the model has already seen.
This mitigation instead:

1. splits a validation part off the training data (stratified by (group, label), seeded);
2. fits the estimator on the rest and scores the validation rows;
3. picks one threshold per group — predict 1 iff P(y=1) >= threshold — maximizing
   validation accuracy subject to ``max_disparity`` on the validation rows:
   ``demographic_parity``: max - min selection rate <= max_disparity;
   ``equalized_odds``: both the TPR spread and the FPR spread <= max_disparity.
4. optionally (``refit: true``) refits the estimator on all training rows and keeps the
   thresholds. Default ``false``: the thresholds were chosen for the scores of the model
   that produced them, and a refitted model's scores shift, so the constraint would no
   longer be guaranteed even on the validation rows.

With ``cv: k`` (k >= 2) steps 1-2 become k-fold cross-fitting instead (folds stratified by
(group, label), seeded, through scikit-learn's ``cross_val_predict``): every training row
gets an out-of-fold score, the thresholds are chosen on all of them (k times more rows
than a holdout, so less noisy thresholds), and the estimator is then fitted on all rows
(``refit`` is implied; ``val_size`` is unused).

The search is written by hand because no library offers deterministic group thresholds
(fairlearn's are randomized; scikit-learn's TunedThresholdClassifierCV has one threshold
for everyone). It is exact over every distinct validation score and fully vectorized:
per group, sorting the scores once gives, with cumulative sums, the selection count,
TP and FP of every candidate threshold; all of these are monotone in the threshold, so
once the smallest rate in the optimal solution is fixed (it is one of the candidates'
rates), each group's admissible thresholds form one contiguous range, and the best in
that range is a range-maximum query (a sparse table). Equalized odds fixes the smallest
TPR and the smallest FPR the same way. Ties go to the smallest band and, inside a group,
to the highest threshold, so the choice is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split

from trustlab import registry
from trustlab.errors import TrustlabError
from trustlab.mitigations._checks import check_fit_inputs, check_predict_inputs
from trustlab.mitigations.base import Mitigation

_TOL = 1e-12  # rates are ratios of counts; this absorbs float rounding in the bands


@dataclass
class GroupCandidates:
    """Every distinct decision of one group, from "select none" to "select all"."""

    thresholds: np.ndarray  # predict 1 iff score >= threshold; +inf ... -inf
    selected: np.ndarray  # counts per candidate, non-decreasing
    tp: np.ndarray
    fp: np.ndarray
    n: int
    n_pos: int

    @property
    def correct(self) -> np.ndarray:
        return self.tp + (self.n - self.n_pos - self.fp)


def group_candidates(scores: np.ndarray, y: np.ndarray, grid_size: int | None = None
                     ) -> GroupCandidates:
    """Candidates at every distinct score (or ``grid_size`` of them, evenly by rank)."""
    order = np.argsort(-scores, kind="stable")
    s, yy = scores[order], y[order]
    n = len(s)
    run_end = np.r_[s[1:] != s[:-1], True]  # last row of each run of equal scores
    uniq = s[run_end]  # distinct scores, descending
    selected = np.r_[0, np.flatnonzero(run_end) + 1]
    tp = np.r_[0, np.cumsum(yy)[run_end]]
    # Candidate i >= 1 selects scores >= uniq[i-1]; use midpoints between distinct
    # scores so unseen scores fall on the side of their nearest validation score.
    thresholds = np.r_[np.inf, (uniq[:-1] + uniq[1:]) / 2, -np.inf]
    if grid_size is not None and grid_size + 1 < len(thresholds):
        keep = np.unique(np.rint(np.linspace(0, len(thresholds) - 1, grid_size + 1))
                         ).astype(np.int64)
        thresholds, selected, tp = thresholds[keep], selected[keep], tp[keep]
    return GroupCandidates(thresholds, selected, tp, selected - tp, n, int(yy.sum()))


class _RangeArgmax:
    """Sparse table: leftmost argmax of ``values[lo:hi]`` for arrays of ranges, O(1) each."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        levels = [np.arange(len(values))]
        width = 1
        while 2 * width <= len(values):
            prev = levels[-1]
            left, right = prev[:-width], prev[width:]
            levels.append(np.where(values[left] >= values[right], left, right))
            width *= 2
        self.levels = levels

    def query(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Index of the leftmost maximum on [lo, hi); callers guarantee hi > lo."""
        length = hi - lo
        k = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
        out = np.empty(lo.shape, dtype=np.int64)
        for level in np.unique(k):
            m = k == level
            table = self.levels[level]
            a, b = table[lo[m]], table[hi[m] - (1 << int(level))]
            out[m] = np.where(self.values[a] >= self.values[b], a, b)
        return out


def _window(rates: np.ndarray, low: np.ndarray, width: float):
    """Candidate index range [lo, hi) with rate in [low, low + width] (rates sorted)."""
    lo = np.searchsorted(rates, low - _TOL, side="left")
    hi = np.searchsorted(rates, low + width + _TOL, side="right")
    return lo, hi


def search_demographic_parity(cands: list[GroupCandidates], max_disparity: float
                              ) -> np.ndarray:
    """Per-group candidate indices maximizing total correct with rate spread <= bound."""
    rates = [c.selected / c.n for c in cands]
    lows = np.unique(np.concatenate(rates))  # the optimum's smallest rate is one of these
    total = np.zeros(len(lows))
    feasible = np.ones(len(lows), dtype=bool)
    picks = []
    for c, r in zip(cands, rates):
        lo, hi = _window(r, lows, max_disparity)
        ok = hi > lo
        idx = np.zeros(len(lows), dtype=np.int64)
        idx[ok] = _RangeArgmax(c.correct).query(lo[ok], hi[ok])
        feasible &= ok
        total += c.correct[idx]
        picks.append(idx)
    best = int(np.argmax(np.where(feasible, total, -np.inf)))
    return np.array([p[best] for p in picks])


def search_equalized_odds(cands: list[GroupCandidates], max_disparity: float,
                          chunk: int = 64) -> np.ndarray:
    """As above with both the TPR spread and the FPR spread <= bound."""
    for c in cands:
        if c.n_pos == 0 or c.n_pos == c.n:
            raise TrustlabError(
                "group_thresholds: equalized_odds needs positives and negatives of every "
                "group in the validation split")
    tprs = [c.tp / c.n_pos for c in cands]
    fprs = [c.fp / (c.n - c.n_pos) for c in cands]
    tpr_lows = np.unique(np.concatenate(tprs))
    fpr_lows = np.unique(np.concatenate(fprs))
    rmqs = [_RangeArgmax(c.correct) for c in cands]
    best_total, best_idx = -np.inf, None
    # Chunks of TPR lows x all FPR lows, flattened: memory stays O(chunk * |FPR lows|).
    for start in range(0, len(tpr_lows), chunk):
        a = np.repeat(tpr_lows[start:start + chunk], len(fpr_lows))
        b = np.tile(fpr_lows, min(chunk, len(tpr_lows) - start))
        total = np.zeros(len(a))
        feasible = np.ones(len(a), dtype=bool)
        picks = []
        for c, tpr, fpr, rmq in zip(cands, tprs, fprs, rmqs):
            lo1, hi1 = _window(tpr, a, max_disparity)
            lo2, hi2 = _window(fpr, b, max_disparity)
            lo, hi = np.maximum(lo1, lo2), np.minimum(hi1, hi2)
            ok = hi > lo
            idx = np.zeros(len(a), dtype=np.int64)
            idx[ok] = rmq.query(lo[ok], hi[ok])
            feasible &= ok
            total += c.correct[idx]
            picks.append(idx)
        masked = np.where(feasible, total, -np.inf)
        j = int(np.argmax(masked))
        if masked[j] > best_total:  # strict: earlier chunks win ties
            best_total, best_idx = masked[j], np.array([p[j] for p in picks])
    if best_idx is None or not np.isfinite(best_total):
        # Unreachable: selecting everyone (or no one) in every group has zero spread.
        raise AssertionError("no feasible equalized-odds thresholds")
    return best_idx


def _check_proba(model) -> None:
    if not hasattr(model, "predict_proba"):
        raise TrustlabError("group_thresholds: the estimator has no predict_proba")


class GroupThresholds(Mitigation):
    """Deterministic per-group decision thresholds maximizing accuracy under a disparity bound.

    Chosen on a validation split (or, with ``cv``, on out-of-fold scores). Learned:
    ``thresholds_`` (group -> threshold), ``val_accuracy_``, ``val_disparity_`` (on the
    rows the thresholds were chosen on). ``predict_score`` is the fitted estimator's
    P(y=1) (thresholds are group-specific, so the score itself is not thresholded).
    """

    name = "group_thresholds"

    class Params(registry.Params):
        constraints: Literal["demographic_parity", "equalized_odds"] = Field(
            "demographic_parity", description="demographic_parity: selection-rate spread; "
                                              "equalized_odds: TPR and FPR spreads")
        max_disparity: float = Field(0.01, ge=0, le=1, description="largest spread allowed "
                                                                   "on the validation rows")
        val_size: float = Field(0.3, gt=0, lt=1, description="share of the training rows "
                                                             "held out (holdout mode)")
        refit: bool = Field(False, description="refit the estimator on all training rows "
                                               "after choosing the thresholds (holdout mode)")
        cv: int | None = Field(None, ge=2, description="k-fold cross-fitting instead of a "
                                                       "holdout (null: holdout)")
        grid_size: int | None = Field(None, ge=1, description="candidate thresholds per "
                                                              "group (null: every score)")

    def fit(self, estimator, X, y, sensitive):
        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        groups, s = np.unique(sensitive, return_inverse=True)
        cell = s * 2 + y
        if self.cv is not None:
            val_idx, val_scores = self._cross_fitted_scores(estimator, X, y, cell)
            self.thresholds_ = self._choose(groups, s[val_idx], y[val_idx], val_scores)
            self.estimator_ = clone(estimator).fit(X, y)
            self.groups_ = groups
            return self
        try:
            fit_idx, val_idx = train_test_split(
                np.arange(len(y)), test_size=self.val_size, random_state=self.seed,
                stratify=cell)
        except ValueError as exc:  # a (group, label) cell with a single row
            raise TrustlabError(f"group_thresholds: cannot split off validation rows "
                                f"stratified by (group, label): {exc}") from None
        model = clone(estimator).fit(X[fit_idx], y[fit_idx])
        _check_proba(model)
        val_scores = np.asarray(model.predict_proba(X[val_idx]))[:, 1].astype(np.float64)
        self.thresholds_ = self._choose(groups, s[val_idx], y[val_idx], val_scores)
        self.estimator_ = clone(estimator).fit(X, y) if self.refit else model
        self.groups_ = groups
        return self

    def _cross_fitted_scores(self, estimator, X, y, cell):
        _check_proba(estimator)
        if np.bincount(cell).min() < self.cv:
            raise TrustlabError(f"group_thresholds: a (group, label) cell has fewer than "
                                f"cv={self.cv} rows")
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.seed)
        proba = cross_val_predict(clone(estimator), X, y, cv=list(folds.split(X, cell)),
                                  method="predict_proba")
        return np.arange(len(y)), np.asarray(proba)[:, 1].astype(np.float64)

    def _choose(self, groups, s_val, y_val, scores) -> dict:
        cands = []
        for g in range(len(groups)):
            m = s_val == g
            if not m.any():
                raise TrustlabError(
                    f"group_thresholds: group {groups.tolist()[g]!r} has no validation rows")
            cands.append(group_candidates(scores[m], y_val[m], self.grid_size))
        if self.constraints == "demographic_parity":
            picks = search_demographic_parity(cands, self.max_disparity)
            rates = [c.selected[i] / c.n for c, i in zip(cands, picks)]
            self.val_disparity_ = float(max(rates) - min(rates))
        else:
            picks = search_equalized_odds(cands, self.max_disparity)
            tpr = [c.tp[i] / c.n_pos for c, i in zip(cands, picks)]
            fpr = [c.fp[i] / (c.n - c.n_pos) for c, i in zip(cands, picks)]
            self.val_disparity_ = float(max(max(tpr) - min(tpr), max(fpr) - min(fpr)))
        self.val_accuracy_ = float(sum(c.correct[i] for c, i in zip(cands, picks))
                                   / len(y_val))
        return {g: float(c.thresholds[i]) for g, c, i in zip(groups.tolist(), cands, picks)}

    def _group_thresholds(self, sensitive: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.groups_, sensitive)
        pos = np.clip(pos, 0, len(self.groups_) - 1)
        unseen = self.groups_[pos] != sensitive
        if unseen.any():
            first = sensitive[unseen].tolist()[0]
            raise TrustlabError(f"group_thresholds: group {first!r} was not seen in training")
        return np.array([self.thresholds_[g] for g in self.groups_.tolist()])[pos]

    def predict(self, X, sensitive):
        X, sensitive = check_predict_inputs(X, sensitive)
        scores = np.asarray(self.estimator_.predict_proba(X))[:, 1].astype(np.float64)
        return (scores >= self._group_thresholds(sensitive)).astype(np.int64)
