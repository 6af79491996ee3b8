"""Tabular models by name, and the one feature encoding every tabular trial shares.

Models are plain scikit-learn-compatible estimators on numeric arrays: the encoding is
done once per trial by :func:`encode_features`, so mitigations that resample or reweigh
(SMOTE, reweighing, fairlearn's reductions) all see the same numeric matrix.

Each model is a small class in :data:`MODELS` whose ``Params`` declares the defaults we
choose (e.g. ``max_iter=1000`` for logistic regression); any other argument of the
estimator passes through, checked against the estimator's own parameter names. The trial
seed becomes ``random_state`` (a ``random_state`` in the params wins).
"""

from __future__ import annotations

import difflib
import importlib
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from trustlab.registry import Configurable, OpenParams, ParamError, Registry

MODELS = Registry("models", "tabular model", {
    "logistic_regression": "trustlab.training.tabular_models:LogisticRegressionModel",
    "random_forest": "trustlab.training.tabular_models:RandomForestModel",
    "gradient_boosting": "trustlab.training.tabular_models:GradientBoostingModel",
    "xgboost": "trustlab.training.tabular_models:XGBoostModel",
})


def _estimator_class(spec: str) -> type:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


@lru_cache(maxsize=None)
def estimator_arguments(spec: str) -> frozenset[str]:
    """The parameter names of the estimator ``"module:Class"`` (its ``get_params``)."""
    return frozenset(_estimator_class(spec)().get_params(deep=False))


class EstimatorParams(OpenParams):
    """Our defaults for an estimator (``estimator``: ``"module:Class"``); its other
    arguments pass through and must be names of its ``get_params``."""

    estimator: ClassVar[str] = ""

    @model_validator(mode="after")
    def _estimator_arguments(self):
        known = estimator_arguments(self.estimator)
        for key in sorted(self.model_extra or {}):
            if key not in known:
                cls = self.estimator.rpartition(":")[2]
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = (f"did you mean {close[0]!r}?" if close
                        else f"{cls} takes: {', '.join(sorted(known))}")
                raise ParamError(key, f"unknown parameter (not an argument of {cls}; {hint})")
        return self


class TabularModel(Configurable):
    """Base of the tabular models: ``build()`` returns a fresh, unfitted estimator."""

    Params: ClassVar[type[EstimatorParams]] = EstimatorParams

    def __init__(self, seed: int = 0, **params: Any) -> None:
        self.seed = seed
        self._set_params(params)

    def build(self):
        cls = _estimator_class(type(self).Params.estimator)
        return cls(**{"random_state": self.seed, **self.params.to_dict()})


class LogisticRegressionModel(TabularModel):
    """Logistic regression (scikit-learn's LogisticRegression)."""

    name = "logistic_regression"
    extra_params = "any argument of scikit-learn's LogisticRegression"

    class Params(EstimatorParams):
        estimator: ClassVar[str] = "sklearn.linear_model:LogisticRegression"
        max_iter: int = Field(1000, ge=0, description="maximum solver iterations")


class RandomForestModel(TabularModel):
    """Random forest (scikit-learn's RandomForestClassifier)."""

    name = "random_forest"
    extra_params = "any argument of scikit-learn's RandomForestClassifier"

    class Params(EstimatorParams):
        estimator: ClassVar[str] = "sklearn.ensemble:RandomForestClassifier"
        n_estimators: int = Field(100, ge=1, description="number of trees")
        n_jobs: int | None = Field(1, description="parallel jobs (1: the trial's own core)")


class GradientBoostingModel(TabularModel):
    """Gradient-boosted trees (scikit-learn's GradientBoostingClassifier)."""

    name = "gradient_boosting"
    extra_params = "any argument of scikit-learn's GradientBoostingClassifier"

    class Params(EstimatorParams):
        estimator: ClassVar[str] = "sklearn.ensemble:GradientBoostingClassifier"


class XGBoostModel(TabularModel):
    """Gradient-boosted trees (XGBoost's XGBClassifier)."""

    name = "xgboost"
    extra_params = "any argument of xgboost's XGBClassifier"

    class Params(EstimatorParams):
        estimator: ClassVar[str] = "xgboost:XGBClassifier"
        n_jobs: int | None = Field(1, description="threads (1: the trial's own core)")
        tree_method: Literal["auto", "exact", "approx", "hist"] = Field(
            "hist", description="tree construction algorithm")
        eval_metric: str | list[str] | None = Field("logloss",
                                                   description="evaluation metric(s)")


def make_model(name: str, params: dict[str, Any] | None = None, seed: int = 0):
    """A fresh, unfitted estimator ``name``; ``params`` override our defaults."""
    return MODELS.get(name)(seed=seed, **(params or {})).build()


def encoded_split(ds, sensitive: str, keep_sensitive: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The tabular dataset ``ds``'s training and test features, encoded by
    :func:`encode_features`, without the sensitive attribute's own columns (its
    ``meta["sensitive_features"]``) unless ``keep_sensitive``."""
    X_train, X_test = ds.X_train, ds.X_test
    if not keep_sensitive:
        drop = ds.meta.get("sensitive_features", {}).get(sensitive, [sensitive])
        X_train = X_train.drop(columns=[c for c in drop if c in X_train.columns])
        X_test = X_test.drop(columns=[c for c in drop if c in X_test.columns])
    X_train, X_test, _ = encode_features(X_train, X_test)
    return X_train, X_test


def encode_features(train, test) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One-hot the categoricals and standardize the numerics of the DataFrames ``train``
    and ``test``, fitted on ``train`` only."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = [c for c in train.columns if not pd.api.types.is_numeric_dtype(train[c])]
    numeric = [c for c in train.columns if c not in categorical]
    encoder = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
         ("num", StandardScaler(), numeric)],
        verbose_feature_names_out=False,
    )
    X_train = encoder.fit_transform(train).astype(np.float64)
    X_test = encoder.transform(test).astype(np.float64)
    return X_train, X_test, list(encoder.get_feature_names_out())
