"""Every mitigation runs on adult, compas and german with every model (small subsamples).

The defining property of each method is tested in test_mitigations.py; here the point is
that the real datasets' encoded matrices and group columns go through every combination
and give sane, well-formed predictions.
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from trustlab.data import load_dataset
from trustlab.errors import DatasetNotFound
from trustlab.mitigations import MITIGATIONS, make_mitigation
from trustlab.training.tabular_models import MODELS, encode_features, make_model

N_TRAIN, N_TEST = 1500, 800
SMALL_MODEL = {"logistic_regression": {}, "random_forest": {"n_estimators": 10},
               "gradient_boosting": {"n_estimators": 10}, "xgboost": {"n_estimators": 10}}
SMALL_MITIGATION = {"exponentiated_gradient": {"max_iter": 5},
                    "threshold_optimizer": {"grid_size": 200},
                    # AIF360's finite differences: ~2 L-BFGS-B steps on adult's 94 features
                    "lfr": {"maxfun": 1000}}

@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Small repeated fits (fairlearn's reductions refit the model dozens of times) are
    # 10-20x slower when OpenBLAS threads fight over 2 busy cores.
    with threadpool_limits(1):
        yield


_CACHE: dict[str, tuple] = {}


def _data(name: str):
    if name not in _CACHE:
        try:
            ds = load_dataset(name)
        except DatasetNotFound as exc:
            pytest.skip(str(exc))
        rng = np.random.default_rng(0)
        tr = np.sort(rng.permutation(len(ds.train_idx))[:N_TRAIN])
        te = np.sort(rng.permutation(len(ds.test_idx))[:N_TEST])
        drop = ds.meta["sensitive_features"]["sex"]  # never a model feature by default
        X_tr, X_te, _ = encode_features(ds.X_train.drop(columns=drop).iloc[tr],
                                        ds.X_test.drop(columns=drop).iloc[te])
        _CACHE[name] = (X_tr, ds.y_train[tr], ds.groups_train["sex"].to_numpy()[tr],
                        X_te, ds.y_test[te], ds.groups_test["sex"].to_numpy()[te])
    return _CACHE[name]


@pytest.mark.parametrize("mitigation", sorted(MITIGATIONS))
@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("dataset", ["adult", "compas", "german"])
def test_every_mitigation_on_every_dataset_and_model(dataset, model, mitigation):
    X_tr, y_tr, s_tr, X_te, y_te, s_te = _data(dataset)
    m = make_mitigation(mitigation, SMALL_MITIGATION.get(mitigation, {}), seed=0)
    m.fit(make_model(model, SMALL_MODEL[model], seed=0), X_tr, y_tr, s_tr)
    pred = m.predict(X_te, s_te)
    assert pred.shape == y_te.shape and pred.dtype == np.int64
    assert set(np.unique(pred)) <= {0, 1}
    # Better than always predicting the minority class: the model learned something.
    assert np.mean(pred == y_te) > min(y_te.mean(), 1 - y_te.mean()) + 0.05
    score = m.predict_score(X_te, s_te)
    if score is not None:
        assert score.shape == y_te.shape and score.dtype == np.float64
        assert np.all((score >= 0) & (score <= 1))
