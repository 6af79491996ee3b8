"""The contract every tabular mitigation follows.

A mitigation wraps the training of a base estimator: pre-processing methods change the
data or weights before ``fit``, in-processing methods replace ``fit``, post-processing
methods change ``predict``. The tabular trial only ever calls :meth:`fit`,
:meth:`predict` and :meth:`predict_score`, so adding a method is one class (with its
``name`` and ``Params``) and one line in :data:`trustlab.mitigations.MITIGATIONS`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import clone

from trustlab.registry import Configurable


class Mitigation(Configurable):
    """Base class. ``X`` is the encoded numeric matrix, ``y`` is 0/1, ``sensitive`` 1-D.

    Subclasses set ``name`` and declare their parameters once in ``Params`` (a
    :class:`trustlab.registry.Params`); the constructor validates them and sets
    ``self.params`` and one attribute per parameter. ``seed`` is the trial seed.
    """

    name: ClassVar[str] = ""

    def __init__(self, seed: int = 0, **params: Any) -> None:
        self.seed = seed
        self._set_params(params)

    def fit(self, estimator, X: np.ndarray, y: np.ndarray, sensitive: np.ndarray
            ) -> "Mitigation":
        raise NotImplementedError

    def predict(self, X: np.ndarray, sensitive: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator_.predict(X)).astype(np.int64)

    def effect(self) -> dict[str, float]:
        """What the fitted method changed, as numbers (a trial stores them as
        ``mitigation.<name>``): e.g. massaging's label flips, reweighing's largest weight
        change. Empty for a method with nothing to count."""
        return {}

    def unchanged(self) -> str | None:
        """Why the fitted method left the training exactly as plain fitting would (e.g. "0
        labels flipped"), or None when it changed something or cannot tell. A trial
        records it and warns: a mitigation that silently does nothing misleads."""
        return None

    def predict_score(self, X: np.ndarray, sensitive: np.ndarray) -> np.ndarray | None:
        """P(y=1) when the fitted model has one, else None (no AUC then)."""
        est = getattr(self, "estimator_", None)
        if est is None or not hasattr(est, "predict_proba"):
            return None
        return np.asarray(est.predict_proba(X))[:, 1].astype(np.float64)


class NoMitigation(Mitigation):
    """No mitigation: the estimator is fitted on the training data as it is."""

    name = "none"

    def fit(self, estimator, X, y, sensitive):
        from trustlab.mitigations._checks import check_fit_inputs

        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        self.estimator_ = clone(estimator).fit(X, y)
        return self


class FeatureMap(Mitigation):
    """A pre-processing method that maps the features (knowing each row's group) and fits
    the estimator on the mapped training rows; prediction maps the rows the same way.

    A subclass implements ``_fit_map(X, sensitive)`` (learn the map on the training rows
    and return them mapped), ``transform(X, sensitive)`` and ``_why_unchanged()``. Learned
    here: ``max_feature_change_`` (largest change of a training value, the ``effect``) and
    ``estimator_``.
    """

    def _fit_map(self, X: np.ndarray, sensitive: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def transform(self, X: np.ndarray, sensitive: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _why_unchanged(self) -> str:
        raise NotImplementedError

    def fit(self, estimator, X, y, sensitive):
        from trustlab.mitigations._checks import check_fit_inputs

        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        X_new = self._fit_map(X, sensitive)
        self.max_feature_change_ = float(np.abs(X_new - X).max(initial=0.0))
        self.estimator_ = clone(estimator).fit(X_new, y)
        return self

    def effect(self) -> dict[str, float]:
        return {"max_feature_change": self.max_feature_change_}

    def unchanged(self) -> str | None:
        return None if self.max_feature_change_ > 0 else self._why_unchanged()

    def predict(self, X, sensitive):
        return super().predict(self.transform(X, sensitive), sensitive)

    def predict_score(self, X, sensitive):
        return super().predict_score(self.transform(X, sensitive), sensitive)
