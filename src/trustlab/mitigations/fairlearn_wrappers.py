"""fairlearn's in- and post-processing methods behind the mitigation contract.

- ``exponentiated_gradient``: the reductions approach (Agarwal et al. 2018); the result is
  a randomized mixture of estimators fitted on reweighted, relabelled data.
- ``grid_search``: the same reductions, but one estimator per point of a grid of Lagrange
  multipliers (Agarwal et al. 2018, section 3.4); the best one by fairlearn's error /
  violation trade-off is kept, so its predictions are deterministic.
- ``threshold_optimizer``: group-specific (randomized) thresholds on the estimator's
  scores (Hardt et al. 2016), fitted on the training data (``prefit=False``).

The two randomized ones predict with ``random_state=seed`` so a trial is reproducible;
their ``predict_score`` is the mitigated classifier's P(yhat=1) from fairlearn's
``_pmf_predict`` (the randomized rule's own probability), not the base estimator's P(y=1).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Literal

import numpy as np
from fairlearn.postprocessing import ThresholdOptimizer
from fairlearn.reductions import (DemographicParity, EqualizedOdds, ErrorRateParity,
                                  ExponentiatedGradient, FalsePositiveRateParity, GridSearch,
                                  TruePositiveRateParity)
from pydantic import Field, model_validator
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from trustlab import registry
from trustlab.mitigations._checks import check_fit_inputs, check_predict_inputs
from trustlab.mitigations.base import Mitigation
from trustlab.registry import ParamError

# The reductions' constraints (fairlearn moments); each takes a `difference_bound`.
Constraints = Literal["demographic_parity", "equalized_odds", "true_positive_rate_parity",
                      "false_positive_rate_parity", "error_rate_parity"]
MOMENTS = {"demographic_parity": DemographicParity, "equalized_odds": EqualizedOdds,
           "true_positive_rate_parity": TruePositiveRateParity,
           "false_positive_rate_parity": FalsePositiveRateParity,
           "error_rate_parity": ErrorRateParity}
# ThresholdOptimizer's own set (it names its constraints by string, and has no error-rate
# parity but has the two negative-rate ones).
ThresholdConstraints = Literal[
    "demographic_parity", "equalized_odds", "true_positive_rate_parity",
    "false_positive_rate_parity", "true_negative_rate_parity", "false_negative_rate_parity"]


def _moment(constraints: str, difference_bound: float | None):
    kwargs = {} if difference_bound is None else {"difference_bound": difference_bound}
    return MOMENTS[constraints](**kwargs)


@contextlib.contextmanager
def _quiet_fairlearn():
    """fairlearn 0.15 trips pandas 3's deprecation warnings on every fit (its code, not
    ours); hide those so users see only warnings they can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"fairlearn\..*")
        warnings.filterwarnings("ignore", message=r".*(\.at with a key|incompatible dtype).*")
        yield


class Float64Proba(ClassifierMixin, BaseEstimator):
    """Pass-through classifier whose ``predict_proba`` is float64.

    XGBoost returns float32 probabilities; fairlearn 0.15's ThresholdOptimizer breaks on
    them under pandas 3, so every estimator it sees goes through this adapter.
    """

    def __init__(self, estimator=None) -> None:
        self.estimator = estimator

    def fit(self, X, y, sample_weight=None):
        self.estimator_ = clone(self.estimator)
        if sample_weight is None:
            self.estimator_.fit(X, y)
        else:
            self.estimator_.fit(X, y, sample_weight=sample_weight)
        self.classes_ = np.asarray(self.estimator_.classes_)
        return self

    def predict(self, X):
        return np.asarray(self.estimator_.predict(X))

    def predict_proba(self, X):
        return np.asarray(self.estimator_.predict_proba(X), dtype=np.float64)


class ExponentiatedGradientMitigation(Mitigation):
    """Exponentiated gradient (Agarwal et al. 2018): fairlearn's reductions approach.

    A randomized mixture of estimators fitted on reweighted, relabelled data; the
    parameters other than ``constraints`` and ``difference_bound`` go to fairlearn's
    ``ExponentiatedGradient`` as they are.
    """

    name = "exponentiated_gradient"

    class Params(registry.Params):
        constraints: Constraints = Field("demographic_parity",
                                         description="the fairness constraint")
        difference_bound: float | None = Field(
            None, ge=0, description="the constraint's slack (null: fairlearn's default)")
        eps: float = Field(0.01, gt=0, description="allowed fairness constraint violation")
        max_iter: int = Field(50, ge=1, description="maximum number of iterations")
        nu: float | None = Field(None, gt=0, description="convergence threshold for the "
                                                         "duality gap (null: automatic)")
        eta0: float = Field(2.0, gt=0, description="initial learning rate")
        run_linprog_step: bool = Field(True, description="solve the linear program at each "
                                                         "iteration")

    def fit(self, estimator, X, y, sensitive):
        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        self.mitigator_ = ExponentiatedGradient(
            Float64Proba(estimator), _moment(self.constraints, self.difference_bound),
            eps=self.eps, max_iter=self.max_iter,
            nu=self.nu, eta0=self.eta0, run_linprog_step=self.run_linprog_step)
        with _quiet_fairlearn():
            self.mitigator_.fit(X, y, sensitive_features=sensitive)
        return self

    def predict(self, X, sensitive):
        X, _ = check_predict_inputs(X, sensitive)
        return np.asarray(self.mitigator_.predict(X, random_state=self.seed)).astype(np.int64)

    def predict_score(self, X, sensitive):
        X, _ = check_predict_inputs(X, sensitive)
        pmf = np.asarray(self.mitigator_._pmf_predict(X))[:, 1].astype(np.float64)
        return np.clip(pmf, 0.0, 1.0)  # the mixture weights sum to 1 only up to rounding


class GridSearchMitigation(Mitigation):
    """Grid search (Agarwal et al. 2018, section 3.4): fairlearn's reductions on a grid.

    One estimator per grid point of Lagrange multipliers (reweighted, relabelled data); the
    one minimizing ``(1 - constraint_weight) * error + constraint_weight * violation`` on
    the training data predicts. ``grid_size``, ``grid_limit`` and ``constraint_weight``
    go to fairlearn's ``GridSearch`` as they are. Learned: ``mitigator_`` (its
    ``best_idx_``, ``predictors_``), ``estimator_`` (the selected predictor).
    """

    name = "grid_search"

    class Params(registry.Params):
        constraints: Constraints = Field("demographic_parity",
                                         description="the fairness constraint")
        difference_bound: float | None = Field(
            None, ge=0, description="the constraint's slack (null: fairlearn's default)")
        grid_size: int = Field(10, ge=1, description="number of Lagrange multiplier vectors "
                                                     "(one estimator fit each)")
        grid_limit: float = Field(2.0, gt=0, description="largest Lagrange multiplier (the "
                                                         "grid spans -limit..limit)")
        constraint_weight: float = Field(0.5, ge=0, le=1, description="weight of the "
                                         "constraint violation (1 - it: of the error) when "
                                         "picking the best grid point")

    def fit(self, estimator, X, y, sensitive):
        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        self.mitigator_ = GridSearch(
            Float64Proba(estimator), _moment(self.constraints, self.difference_bound),
            constraint_weight=self.constraint_weight, grid_size=self.grid_size,
            grid_limit=self.grid_limit)
        with _quiet_fairlearn():
            self.mitigator_.fit(X, y, sensitive_features=sensitive)
        self.estimator_ = self.mitigator_.predictors_[self.mitigator_.best_idx_]
        return self

    def predict(self, X, sensitive):
        X, _ = check_predict_inputs(X, sensitive)
        return np.asarray(self.estimator_.predict(X)).astype(np.int64)

    def predict_score(self, X, sensitive):
        X, _ = check_predict_inputs(X, sensitive)
        # A grid point whose relabelled data has a single label is fitted by fairlearn as a
        # constant DummyClassifier, whose predict_proba has one column: find label 1's.
        classes = np.asarray(self.estimator_.classes_).tolist()
        if 1 not in classes:
            return np.zeros(len(X), dtype=np.float64)
        proba = np.asarray(self.estimator_.predict_proba(X), dtype=np.float64)
        return proba[:, classes.index(1)]


class ThresholdOptimizerMitigation(Mitigation):
    """Threshold optimizer (Hardt et al. 2016): fairlearn's randomized group thresholds.

    Objective accuracy, scores from ``predict_proba`` (float64), fitted on the training
    data (``prefit=False``); ``constraints``, ``grid_size``, ``flip`` and ``tol`` go to
    fairlearn's ``ThresholdOptimizer`` as they are.
    """

    name = "threshold_optimizer"

    class Params(registry.Params):
        constraints: ThresholdConstraints = Field("demographic_parity",
                                                  description="the fairness constraint")
        grid_size: int = Field(1000, ge=1, description="thresholds tried per group")
        flip: bool = Field(False, description="also consider flipped predictions")
        tol: float | None = Field(None, ge=0, description="allowed constraint violation "
                                                          "(not with equalized_odds)")

        @model_validator(mode="after")
        def _tol_needs_demographic_parity(self):
            if self.tol is not None and self.constraints == "equalized_odds":
                raise ParamError("tol", "not supported with constraints: equalized_odds")
            return self

    def fit(self, estimator, X, y, sensitive):
        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        self.mitigator_ = ThresholdOptimizer(
            estimator=Float64Proba(estimator), constraints=self.constraints,
            objective="accuracy_score", grid_size=self.grid_size, flip=self.flip,
            prefit=False, predict_method="predict_proba", tol=self.tol)
        with _quiet_fairlearn():
            self.mitigator_.fit(X, y, sensitive_features=sensitive)
        self.estimator_ = self.mitigator_.estimator_
        return self

    def predict(self, X, sensitive):
        X, sensitive = check_predict_inputs(X, sensitive)
        return np.asarray(self.mitigator_.predict(
            X, sensitive_features=sensitive, random_state=self.seed)).astype(np.int64)

    def predict_score(self, X, sensitive):
        X, sensitive = check_predict_inputs(X, sensitive)
        pmf = self.mitigator_._pmf_predict(X, sensitive_features=sensitive)
        return np.clip(np.asarray(pmf)[:, 1].astype(np.float64), 0.0, 1.0)
