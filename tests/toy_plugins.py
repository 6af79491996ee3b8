"""A toy mitigation that the registry tests register through the Python API only (it is
installed nowhere): worker processes must learn it from the trial they are sent."""

from __future__ import annotations

import numpy as np
from pydantic import Field
from sklearn.base import clone

from trustlab.mitigations.base import Mitigation
from trustlab.registry import Params


class PredictConstant(Mitigation):
    """Toy: fits the estimator, then predicts the same label for every row."""

    name = "predict_constant"

    class Params(Params):
        label: int = Field(1, ge=0, le=1, description="The label predicted for every row.")

    def fit(self, estimator, X, y, sensitive):
        self.estimator_ = clone(estimator).fit(X, y)
        return self

    def predict(self, X, sensitive):
        return np.full(len(X), self.label, dtype=np.int64)
