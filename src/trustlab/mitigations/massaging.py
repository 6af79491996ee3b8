"""Massaging (Kamiran & Calders 2012), the income-fairness study's "data transformation".

A ranker scores every training row; then the fewest borderline labels are flipped so the
two groups' positive-label rates match: the unprivileged group's highest-ranked negatives
are promoted to 1 and, as many, the privileged group's lowest-ranked positives are demoted
to 0. The estimator is then fitted on the relabelled data. No maintained library ships
massaging (AIF360 is not a dependency), so the flip count and selection are written here.

Groups: ``privileged`` names the privileged value (the experiment engine passes the
dataset's); every other value is "unprivileged". Without it, the group with the highest
positive-label rate in the training data is taken as privileged. Massaging follows the
data: the group with the lower favorable rate is the one promoted. When that is the named
privileged group (on COMPAS, label 1 = no recidivism is more frequent for women, so
"privileged: Male" names the group with the lower favorable rate), a warning says so and the labels move
toward it, instead of nothing being flipped.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pydantic import Field, model_validator
from sklearn.base import clone

from trustlab.mitigations._checks import check_fit_inputs, privileged_mask
from trustlab.mitigations.base import Mitigation
from trustlab import registry
from trustlab.registry import ParamError


def massaging_flip_count(n_unpriv: int, pos_unpriv: int, n_priv: int, pos_priv: int,
                         max_flips: int | None = None) -> int:
    """The fewest flips M making (pos_u + M)/n_u and (pos_p - M)/n_p as equal as possible.

    The gap g(M) = (pos_p - M)/n_p - (pos_u + M)/n_u is linear and decreasing in M, and is
    zero at M* = (pos_p n_u - pos_u n_p) / (n_u + n_p) (Kamiran & Calders' closed form).
    The best integer is floor(M*) or ceil(M*); on a tie the smaller one wins.
    """
    def gap(m: int) -> float:
        return abs((pos_priv - m) / n_priv - (pos_unpriv + m) / n_unpriv)

    m_star = (pos_priv * n_unpriv - pos_unpriv * n_priv) / (n_unpriv + n_priv)
    if m_star <= 0:
        return 0
    lo = int(np.floor(m_star))
    best = lo if gap(lo) <= gap(lo + 1) else lo + 1
    if max_flips is not None:
        best = min(best, max_flips)
    return best


class Massaging(Mitigation):
    """Massaging (Kamiran & Calders 2012): flip the fewest borderline training labels.

    A ranker (``ranker``: a tabular model name, default ``logistic_regression`` as in
    Kamiran & Calders, or ``same`` for a clone of the estimator being mitigated, with
    ``ranker_params``) scores the training rows; the unprivileged group's top-ranked
    negatives are promoted and as many of the privileged group's lowest-ranked positives
    demoted (the other way round, with a warning, when the privileged group has the lower
    favorable rate). Learned: ``n_flips_`` (promotions = demotions = M), ``y_massaged_``,
    ``promoted_``/``demoted_`` (row indices), ``privileged_``, ``promoted_group_``
    (``unprivileged`` or ``privileged``).
    """

    name = "massaging"

    class Params(registry.Params):
        privileged: str | int | float | bool | None = Field(
            None, description="the privileged value of the sensitive attribute (the tabular "
                              "kind passes dataset.privileged; null: the group with the "
                              "highest positive rate)")
        ranker: str = Field("logistic_regression", description="a tabular model name, or "
                                                               "same (the mitigated estimator)")
        ranker_params: dict[str, Any] | None = Field(
            None, description="parameters of the ranker model")

        @model_validator(mode="after")
        def _known_ranker(self):
            if self.ranker == "same":
                if self.ranker_params:
                    raise ParamError("ranker_params", "only for a named ranker model, not "
                                                      "ranker: same")
                return self
            from trustlab.training.tabular_models import MODELS

            MODELS.resolve(self.ranker, self.ranker_params, key="ranker_params",
                           name_key="ranker")
            return self

    def _make_ranker(self, estimator):
        if self.ranker == "same":
            return clone(estimator)
        from trustlab.training.tabular_models import make_model

        return make_model(self.ranker, self.ranker_params, self.seed)

    def _privileged_mask(self, y: np.ndarray, sensitive: np.ndarray) -> np.ndarray:
        mask, self.privileged_ = privileged_mask(y, sensitive, self.privileged, "massaging")
        return mask

    def fit(self, estimator, X, y, sensitive):
        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        priv = self._privileged_mask(y, sensitive)
        # Promote the side whose favorable rate is lower, whatever its name.
        up, down = ~priv, priv
        self.promoted_group_ = "unprivileged"
        if y[priv].mean() < y[~priv].mean():
            up, down = priv, ~priv
            self.promoted_group_ = "privileged"
            warnings.warn(
                f"massaging: the privileged group {self.privileged_!r} has the lower "
                f"favorable-label rate in the training data ({y[priv].mean():.3f} vs "
                f"{y[~priv].mean():.3f}); its labels are promoted", stacklevel=2)
        ranker = self._make_ranker(estimator).fit(X, y)
        score = np.asarray(ranker.predict_proba(X))[:, 1].astype(np.float64)
        self.ranker_ = ranker

        cand_promote = np.flatnonzero(up & (y == 0))
        cand_demote = np.flatnonzero(down & (y == 1))
        m = massaging_flip_count(int(up.sum()), int(y[up].sum()),
                                 int(down.sum()), int(y[down].sum()),
                                 max_flips=min(len(cand_promote), len(cand_demote)))
        # Stable sorts: equal scores are taken in row order, so the choice is deterministic.
        promote = cand_promote[np.argsort(-score[cand_promote], kind="stable")[:m]]
        demote = cand_demote[np.argsort(score[cand_demote], kind="stable")[:m]]
        y_new = y.copy()
        y_new[promote] = 1
        y_new[demote] = 0

        self.n_flips_ = int(m)
        self.promoted_ = np.sort(promote)
        self.demoted_ = np.sort(demote)
        self.y_massaged_ = y_new
        self.estimator_ = clone(estimator).fit(X, y_new)
        return self

    def effect(self) -> dict[str, float]:
        return {"flips": float(self.n_flips_),
                "promoted_privileged": float(self.promoted_group_ == "privileged")}

    def unchanged(self) -> str | None:
        return ("0 labels flipped: the groups' favorable-label rates are already as equal "
                "as one flip can make them") if self.n_flips_ == 0 else None
