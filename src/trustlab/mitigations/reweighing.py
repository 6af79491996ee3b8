"""Reweighing (Kamiran & Calders 2012): weight each (group, label) cell by P(s)P(y)/P(s,y).

After weighting, the group and the label are independent in the training data, so a
model that fits the weighted data has no statistical reason to tie its decisions to the
group. The weights go to the estimator as ``sample_weight`` (all our models accept it).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from trustlab.mitigations._checks import check_fit_inputs, group_codes
from trustlab.mitigations.base import Mitigation


def reweighing_weights(y: np.ndarray, sensitive: np.ndarray) -> np.ndarray:
    """w_i = P(s_i) P(y_i) / P(s_i, y_i), from counts: n_s n_y / (n n_sy).

    Written out because it is one line of counting; AIF360 has it but is not a dependency.
    """
    y = np.asarray(y, dtype=np.int64)
    _, s = group_codes(np.asarray(sensitive))
    n = len(y)
    n_s = np.bincount(s)
    n_y = np.bincount(y, minlength=2)
    n_sy = np.bincount(s * 2 + y, minlength=2 * len(n_s))
    return n_s[s] * n_y[y] / (n * n_sy[s * 2 + y])


class Reweighing(Mitigation):
    """Reweighing (Kamiran & Calders 2012): weight (group, label) cells by P(s)P(y)/P(s,y).

    No parameters. Learned: ``sample_weight_`` (one per training row).
    """

    name = "reweighing"

    def fit(self, estimator, X, y, sensitive):
        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        self.sample_weight_ = reweighing_weights(y, sensitive)
        self.estimator_ = clone(estimator).fit(X, y, sample_weight=self.sample_weight_)
        return self

    def effect(self) -> dict[str, float]:
        return {"max_weight_change": float(np.abs(self.sample_weight_ - 1).max())}

    def unchanged(self) -> str | None:
        return ("every weight is 1: the label is already independent of the group in the "
                "training data" if np.allclose(self.sample_weight_, 1, rtol=0, atol=1e-12)
                else None)
