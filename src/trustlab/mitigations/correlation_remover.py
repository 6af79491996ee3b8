"""Correlation remover: fairlearn's linear pre-processing that decorrelates the features
from the sensitive attribute.

Each feature column is regressed (least squares) on the centred group indicators and
replaced by its residual, blended with the original: ``alpha * residual + (1 - alpha) *
original``. At ``alpha = 1`` no column is linearly correlated with any group indicator in
the training data; at ``alpha = 0`` the data is unchanged. Only linear correlation goes:
a non-linear model can still recover the group from the residuals.

The tabular trial passes ``X`` without the sensitive column and the groups as a separate
1-D array, while fairlearn's ``CorrelationRemover`` expects the sensitive columns inside
``X``: the groups are one-hot encoded (one indicator per training group) and appended,
then named as ``sensitive_feature_ids`` so fairlearn drops them from its output. The
indicators sum to one, so their centred matrix has rank (groups - 1); fairlearn's
``lstsq`` takes the minimum-norm solution, whose residual is the same projection.
"""

from __future__ import annotations

import numpy as np
from fairlearn.preprocessing import CorrelationRemover
from pydantic import Field

from trustlab import registry
from trustlab.errors import TrustlabError
from trustlab.mitigations._checks import check_predict_inputs, group_positions
from trustlab.mitigations.base import FeatureMap


class CorrelationRemoverMitigation(FeatureMap):
    """Correlation remover (fairlearn): project the group indicators out of every feature.

    ``alpha`` goes to fairlearn's ``CorrelationRemover`` as it is. Learned: ``groups_``
    (the training groups, one indicator column each), ``remover_`` (the fitted
    ``CorrelationRemover``), ``n_features_``, ``max_feature_change_`` (largest change of a
    training value), ``estimator_`` (fitted on the transformed training data).
    """

    name = "correlation_remover"

    class Params(registry.Params):
        alpha: float = Field(1.0, ge=0, le=1, description="how much of the correlation to "
                                                          "remove (1: all, 0: none)")

    def _with_indicators(self, X: np.ndarray, sensitive: np.ndarray) -> np.ndarray:
        pos = group_positions(self.groups_, sensitive, self.name)
        onehot = np.zeros((len(X), len(self.groups_)), dtype=np.float64)
        onehot[np.arange(len(X)), pos] = 1.0
        return np.hstack([X, onehot])

    def _fit_map(self, X, sensitive):
        self.groups_ = np.unique(sensitive)
        if len(self.groups_) < 2:
            raise TrustlabError("correlation_remover needs at least two groups in the "
                                "training data")
        n = self.n_features_ = X.shape[1]
        self.remover_ = CorrelationRemover(
            sensitive_feature_ids=list(range(n, n + len(self.groups_))), alpha=self.alpha)
        return self.remover_.fit_transform(self._with_indicators(X, sensitive))

    def _why_unchanged(self) -> str:
        return ("alpha is 0: the features are unchanged" if self.alpha == 0 else
                "no feature is linearly correlated with the group in the training data")

    def transform(self, X: np.ndarray, sensitive: np.ndarray) -> np.ndarray:
        """``X`` as the estimator sees it: the groups' linear trace removed (same columns)."""
        X, sensitive = check_predict_inputs(X, sensitive)
        if X.ndim != 2 or X.shape[1] != self.n_features_:
            raise TrustlabError(f"correlation_remover: X has shape {X.shape}, expected "
                                f"{self.n_features_} columns")
        return self.remover_.transform(self._with_indicators(X, sensitive))
