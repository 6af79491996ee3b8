"""Tabular models by name, and the one feature encoding every tabular trial shares.

Models are plain scikit-learn-compatible estimators on numeric arrays: the encoding is
done once per trial by :func:`encode_features`, so mitigations that resample or reweigh
(SMOTE, reweighing, fairlearn's reductions) all see the same numeric matrix.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from trustlab.errors import TrustlabError


def _logistic_regression(seed: int, **params: Any):
    return LogisticRegression(**{"max_iter": 1000, "random_state": seed, **params})


def _random_forest(seed: int, **params: Any):
    return RandomForestClassifier(**{"n_estimators": 100, "random_state": seed,
                                     "n_jobs": 1, **params})


def _gradient_boosting(seed: int, **params: Any):
    return GradientBoostingClassifier(**{"random_state": seed, **params})


def _xgboost(seed: int, **params: Any):
    from xgboost import XGBClassifier  # imported lazily: it is the slowest import here

    return XGBClassifier(**{"random_state": seed, "n_jobs": 1, "tree_method": "hist",
                            "eval_metric": "logloss", **params})


MODELS: dict[str, Callable[..., Any]] = {
    "logistic_regression": _logistic_regression,
    "random_forest": _random_forest,
    "gradient_boosting": _gradient_boosting,
    "xgboost": _xgboost,
}


def make_model(name: str, params: dict[str, Any] | None = None, seed: int = 0):
    """A fresh, unfitted estimator; ``params`` override our defaults (passed through)."""
    if name not in MODELS:
        raise TrustlabError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    try:
        return MODELS[name](seed, **(params or {}))
    except TypeError as exc:
        raise TrustlabError(f"model {name!r}: {exc}") from None


def encode_features(train: pd.DataFrame, test: pd.DataFrame
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One-hot the categoricals and standardize the numerics, fitted on ``train`` only."""
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
