"""Shared fixtures: real Adult predictions for oracle tests (trained once per session)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

# Test-only trial kinds register through the plugin mechanism, in this process and in every
# `trustlab run` subprocess and worker the tests start (they inherit the environment).
# The tests folder goes on PYTHONPATH so that subprocesses can import that module too.
os.environ["TRUSTLAB_PLUGINS"] = "test_experiments_helpers"
_TESTS = os.path.dirname(os.path.abspath(__file__))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_TESTS, os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(scope="session")
def adult_predictions() -> pd.DataFrame:
    """Logistic regression on real Adult (official split): test labels, predictions, groups."""
    from trustlab.data import load_dataset
    from trustlab.training.tabular_models import encode_features, make_model

    ds = load_dataset("adult")
    drop = ["sex"]
    X_train, X_test, _ = encode_features(ds.X_train.drop(columns=drop),
                                         ds.X_test.drop(columns=drop))
    model = make_model("logistic_regression", seed=0).fit(X_train, ds.y_train)
    frame = ds.groups_test.copy()
    frame["label"] = ds.y_test
    frame["pred"] = model.predict(X_test)
    frame["score"] = model.predict_proba(X_test)[:, 1]
    return frame


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
