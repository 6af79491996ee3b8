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
