"""The hand-written AIF360-catalogue mitigations (lfr, calibrated_equalized_odds,
reject_option_classification) against AIF360 0.6.1 run directly on the same data, plus a
defining property of each that is checked whether or not AIF360 is installed.

AIF360 is a test oracle only (the `test` extra); its comparisons are skipped without it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings

import numpy as np
import pytest
from scipy.optimize import approx_fprime
from sklearn.model_selection import train_test_split
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from trustlab.errors import TrustlabError
from trustlab.mitigations import make_mitigation
from trustlab.mitigations.calibrated_equalized_odds import (calibrated_eq_odds_rates,
                                                            calibrated_eq_odds_scores)
from trustlab.mitigations.lfr import lfr_objective, lfr_objective_and_grad
from trustlab.mitigations.reject_option import (choose_reject_option, reject_option_grid,
                                                reject_option_predict, roc_grid)
from trustlab.registry import ParamError
from trustlab.training.tabular_models import make_model

TOL = 1e-9


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(1):
        yield


@contextlib.contextmanager
def _quiet_logging():
    # AIF360 logs a root-logger warning per optional extra it lacks (tensorflow, ...) on
    # import; those say nothing about the code under test.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _aif360(module: str):
    """An AIF360 module, or skip the test when AIF360 is not installed."""
    pytest.importorskip("aif360")
    with _quiet_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


def _dataset(features, y, s_priv, scores=None):
    """A BinaryLabelDataset with protected attribute ``s`` (1 = privileged)."""
    pd = pytest.importorskip("pandas")
    datasets = _aif360("aif360.datasets")
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])])
    frame["s"] = s_priv.astype(np.float64)
    frame["y"] = np.asarray(y, dtype=np.float64)
    ds = datasets.BinaryLabelDataset(df=frame, label_names=["y"],
                                     protected_attribute_names=["s"],
                                     favorable_label=1.0, unfavorable_label=0.0)
    # AIF360 counts the protected column among the features; ours never does.
    ds.features = np.array(features, dtype=np.float64)
    if scores is not None:
        ds.scores = np.asarray(scores, dtype=np.float64).reshape(-1, 1).copy()
    return ds


PRIV, UNPRIV = [{"s": 1.0}], [{"s": 0.0}]


@pytest.fixture(scope="module")
def biased():
    """Synthetic data where the label depends on the group (as in test_mitigations)."""
    rng = np.random.default_rng(0)
    n = 1200
    s = np.where(rng.random(n) < 0.35, "F", "M")
    X = rng.normal(size=(n, 5))
    X[:, 0] += 1.0 * (s == "M")
    logit = 1.2 * X[:, 0] + 0.8 * X[:, 1] - 1.0 + 1.0 * (s == "M")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return X, y, s


@pytest.fixture(scope="module")
def scored(biased):
    """Validation-like scores from a model fitted on other rows: (y, scores, s)."""
    X, y, s = biased
    model = make_model("logistic_regression").fit(X[:600], y[:600])
    return y[600:], model.predict_proba(X[600:])[:, 1].astype(np.float64), s[600:]


@pytest.fixture(scope="module")
def calibrated():
    """Calibrated scores, equal base rates, one group's scores far sharper than the
    other's: mixing can equalize every generalized cost. (y, scores, s)"""
    rng = np.random.default_rng(5)
    n = 1500
    s = np.where(rng.random(n) < 0.4, "F", "M")
    scores = np.where(s == "M", rng.beta(0.6, 0.6, n), rng.beta(4.0, 4.0, n))
    y = (rng.random(n) < scores).astype(np.int64)
    return y, scores, s


def _spd(pred, priv):
    return pred[~priv].mean() - pred[priv].mean()


# -- lfr --------------------------------------------------------------------------------
def _lfr_parts(X, y, s):
    from sklearn.preprocessing import StandardScaler

    Z = StandardScaler().fit(X).transform(X)
    u, p = s != "M", s == "M"
    return Z, (Z[u], Z[p], y[u].astype(float), y[p].astype(float))


def test_lfr_objective_equals_aif360(biased):
    helpers = _aif360("aif360.algorithms.preprocessing.lfr_helpers.helpers")
    X, y, s = biased
    _, parts = _lfr_parts(X, y, s)
    helpers.LFR_optim_objective.steps = 0  # its print counter, set by LFR.fit before use
    rng = np.random.default_rng(3)
    for k, (Ax, Ay, Az) in [(5, (0.01, 1.0, 50.0)), (3, (1.0, 0.1, 0.5)), (8, (0, 2, 0))]:
        for _ in range(3):
            params = np.r_[rng.uniform(size=k), rng.normal(size=k * X.shape[1])]
            ours = lfr_objective(params, *parts, k, Ax, Ay, Az)
            theirs = helpers.LFR_optim_objective(params, *parts, k, Ax, Ay, Az, verbose=0)
            assert abs(ours - theirs) <= TOL * max(1.0, abs(theirs))
            # alpha learned but equal to 1 is the same objective
            with_alpha = np.r_[params, np.ones(X.shape[1])]
            assert abs(lfr_objective(with_alpha, *parts, k, Ax, Ay, Az, learn_alpha=True)
                       - theirs) <= TOL * max(1.0, abs(theirs))


@pytest.mark.filterwarnings("ignore:scipy.optimize:DeprecationWarning")  # AIF360's disp=
def test_lfr_fit_and_transform_equal_aif360(biased):
    preprocessing = _aif360("aif360.algorithms.preprocessing")
    X, y, s = biased
    X, y, s = X[:400], y[:400], s[:400]
    params = {"k": 4, "maxiter": 25, "maxfun": 20000, "privileged": "M",
              "predict_with": "prototypes"}
    ours = make_mitigation("lfr", params, seed=7).fit(make_model("logistic_regression"),
                                                      X, y, s)
    Z = ours.scaler_.transform(X)
    theirs = preprocessing.LFR(UNPRIV, PRIV, k=4, Ax=0.01, Ay=1.0, Az=50.0, seed=7)
    theirs.fit(_dataset(Z, y, s == "M"), maxiter=25, maxfun=20000)
    np.testing.assert_allclose(ours.w_, theirs.w, rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.prototypes_, theirs.prototypes, rtol=0, atol=TOL)
    out = theirs.transform(_dataset(Z, y, s == "M"))
    np.testing.assert_allclose(ours.transform(X), out.features, rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.predict_score(X, s), out.scores.ravel(), rtol=0, atol=TOL)
    np.testing.assert_array_equal(ours.predict(X, s), out.labels.ravel())
    assert 5 < ours.n_iter_ <= 25


@pytest.mark.parametrize("learn_alpha", [False, True])
def test_lfr_analytic_gradient_matches_central_differences(biased, learn_alpha):
    X, y, s = biased
    _, parts = _lfr_parts(X[:300], y[:300], s[:300])
    k, d = 4, X.shape[1]
    rng = np.random.default_rng(1)
    params = np.r_[rng.uniform(0.1, 0.9, size=k), rng.normal(size=k * d)]
    if learn_alpha:
        params = np.r_[params, rng.uniform(0.5, 2.0, size=d)]
    args = (*parts, k, 0.3, 1.0, 5.0, learn_alpha)
    value, grad = lfr_objective_and_grad(params, *args)
    assert value == lfr_objective(params, *args)
    f = lambda q: lfr_objective(q, *args)  # noqa: E731
    h = 1e-6
    central = np.array([(f(params + h * e) - f(params - h * e)) / (2 * h)
                        for e in np.eye(len(params))])
    np.testing.assert_allclose(grad, central, rtol=1e-5, atol=1e-7)
    assert np.max(np.abs(grad - approx_fprime(params, f, 1e-7))) < 1e-5


def test_lfr_large_Az_gives_small_membership_parity_gap(biased):
    X, y, s = biased
    model = make_model("logistic_regression")
    gaps = {}
    for Az in (0.0, 50.0):
        m = make_mitigation("lfr", {"Az": Az, "gradient": "analytic", "maxiter": 300,
                                    "privileged": "M"}, seed=0).fit(model, X, y, s)
        M = m.memberships(X)  # recomputed from the fitted prototypes, not from losses_
        gaps[Az] = float(np.mean(np.abs(M[s == "F"].mean(0) - M[s == "M"].mean(0))))
        assert abs(gaps[Az] - m.losses_["L_z"]) < 1e-12
        assert m.effect()["membership_parity_gap"] == m.losses_["L_z"]
        assert m.unchanged() is None  # the features are always replaced
        assert np.allclose(M.sum(axis=1), 1.0)
    assert gaps[50.0] < 0.005 and gaps[0.0] > 10 * gaps[50.0], gaps
    # the parity of the representation carries over to the LFR's own predictions
    fair = make_mitigation("lfr", {"gradient": "analytic", "maxiter": 300,
                                   "predict_with": "prototypes"}, seed=0).fit(model, X, y, s)
    assert fair.privileged_ == "M"  # inferred: the higher positive rate
    base = model.fit(X, y).predict(X)
    assert abs(_spd(fair.predict(X, s), s == "M")) < 0.5 * abs(_spd(base, s == "M"))


def test_lfr_estimator_mode_learns_from_the_representation(biased):
    X, y, s = biased
    m = make_mitigation("lfr", {"gradient": "analytic", "maxiter": 200, "Az": 1.0,
                                "learn_alpha": True}, seed=2).fit(
        make_model("logistic_regression"), X, y, s)
    assert np.all(m.alpha_ >= 0) and m.alpha_.shape == (X.shape[1],)
    # the estimator saw x̂, so it gives the same answers on x̂ as the mitigation on X
    np.testing.assert_array_equal(m.predict(X, s), m.estimator_.predict(m.transform(X)))
    assert np.mean(m.predict(X, s) == y) > max(y.mean(), 1 - y.mean())
    # x̂ is a convex combination of the k prototypes
    assert np.linalg.matrix_rank(m.transform(X) - m.prototypes_[0]) <= m.k - 1


# -- calibrated equalized odds -------------------------------------------------------------
def _generalized_costs(y, scores, rows):
    gfpr = scores[rows & (y == 0)].mean()
    gfnr = (1 - scores[rows & (y == 1)]).mean()
    br = y[rows].mean()
    return {"fpr": gfpr, "fnr": gfnr, "weighted": (gfpr * (1 - br) + gfnr * br) / 2}


@pytest.mark.parametrize("data", ["calibrated", "scored"])
@pytest.mark.parametrize("cost", ["fnr", "fpr", "weighted"])
def test_calibrated_eq_odds_equals_aif360(request, data, cost):
    postprocessing = _aif360("aif360.algorithms.postprocessing")
    y, scores, s = request.getfixturevalue(data)
    priv = s == "M"
    ours = calibrated_eq_odds_rates(y, scores, priv, cost)
    ceo = postprocessing.CalibratedEqOddsPostprocessing(UNPRIV, PRIV, cost_constraint=cost,
                                                        seed=11)
    feats = np.zeros((len(y), 1))
    ceo.fit(_dataset(feats, y, priv), _dataset(feats, y, priv, scores))
    assert abs(ours.base_rate_priv - ceo.base_rate_priv) <= TOL
    assert abs(ours.base_rate_unpriv - ceo.base_rate_unpriv) <= TOL
    assert abs(ours.priv_mix_rate - ceo.priv_mix_rate) <= TOL
    assert abs(ours.unpriv_mix_rate - ceo.unpriv_mix_rate) <= TOL
    # on the model's scores of `biased` the skewed base rates leave fnr and fpr out of
    # reach (AIF360's rates leave [0, 1] then); the calibrated data reach every cost
    assert ours.equalized == (data == "calibrated" or cost == "weighted")
    if ours.equalized:
        assert max(ours.priv_mix_rate, ours.unpriv_mix_rate) > 0.01  # something is mixed
    # same seed semantics: AIF360 seeds np.random and draws unprivileged rows first
    out = ceo.predict(_dataset(feats, y, priv, scores))
    mixed = calibrated_eq_odds_scores(scores, priv, ours, seed=11)
    np.testing.assert_allclose(mixed, out.scores.ravel(), rtol=0, atol=TOL)
    np.testing.assert_array_equal((mixed >= 0.5).astype(float), out.labels.ravel())


def test_calibrated_eq_odds_mitigation_equals_aif360_on_its_holdout(biased):
    postprocessing = _aif360("aif360.algorithms.postprocessing")
    X, y, s = biased
    m = make_mitigation("calibrated_equalized_odds", {"privileged": "M"}, seed=4).fit(
        make_model("logistic_regression"), X, y, s)
    val = m.val_idx_
    scores = m.estimator_.predict_proba(X[val])[:, 1]
    ceo = postprocessing.CalibratedEqOddsPostprocessing(UNPRIV, PRIV, seed=4)
    feats = np.zeros((len(val), 1))
    ceo.fit(_dataset(feats, y[val], s[val] == "M"),
            _dataset(feats, y[val], s[val] == "M", scores))
    assert abs(m.rates_.priv_mix_rate - ceo.priv_mix_rate) <= TOL
    assert abs(m.rates_.unpriv_mix_rate - ceo.unpriv_mix_rate) <= TOL
    test_scores = m.estimator_.predict_proba(X)[:, 1]
    out = ceo.predict(_dataset(np.zeros((len(y), 1)), y, s == "M", test_scores))
    np.testing.assert_allclose(m.predict_score(X, s), out.scores.ravel(), rtol=0, atol=TOL)
    np.testing.assert_array_equal(m.predict(X, s), out.labels.ravel())


@pytest.mark.parametrize("cost", ["fnr", "fpr", "weighted"])
def test_calibrated_eq_odds_equalizes_the_expected_cost(calibrated, cost):
    y, scores, s = calibrated
    priv = s == "M"
    r = calibrated_eq_odds_rates(y, scores, priv, cost)
    costs = {}
    for side, rows, mix, base in (("p", priv, r.priv_mix_rate, r.base_rate_priv),
                                  ("u", ~priv, r.unpriv_mix_rate, r.base_rate_unpriv)):
        own = _generalized_costs(y, scores, rows)[cost]
        trivial = _generalized_costs(y, np.full(len(y), base), rows)[cost]
        costs[side] = (1 - mix) * own + mix * trivial  # cost is linear in the scores
        assert abs(base - y[rows].mean()) < 1e-12
    assert r.equalized and abs(costs["p"] - costs["u"]) < 1e-12
    assert (r.priv_mix_rate == 0) != (r.unpriv_mix_rate == 0)  # only the cheaper side mixes
    # The draws match the rate: over many repetitions, the replaced share is the rate.
    side = priv if r.priv_mix_rate > 0 else ~priv
    rate = max(r.priv_mix_rate, r.unpriv_mix_rate)
    many = np.tile(scores, 200)
    mixed = calibrated_eq_odds_scores(many, np.tile(priv, 200), r, seed=0)
    replaced = (mixed != many)[np.tile(side, 200)].mean()
    assert abs(replaced - rate) < 0.01


def test_calibrated_eq_odds_predictions_are_seeded_and_consistent(biased):
    X, y, s = biased
    a = make_mitigation("calibrated_equalized_odds", {}, seed=1).fit(
        make_model("logistic_regression"), X, y, s)
    b = make_mitigation("calibrated_equalized_odds", {}, seed=1).fit(
        make_model("logistic_regression"), X, y, s)
    assert a.rates_.equalized
    assert a.privileged_ == "M"  # inferred
    score = a.predict_score(X, s)
    np.testing.assert_array_equal(score, b.predict_score(X, s))
    np.testing.assert_array_equal(a.predict(X, s), (score >= 0.5).astype(np.int64))
    assert score.dtype == np.float64 and np.all((score >= 0) & (score <= 1))
    # the estimator was fitted on the other 70 % only, stratified by (group, label)
    cell = np.unique(s, return_inverse=True)[1] * 2 + y
    _, val = train_test_split(np.arange(len(y)), test_size=0.3, random_state=1, stratify=cell)
    np.testing.assert_array_equal(np.sort(a.val_idx_), np.sort(val))
    fit_rows = np.setdiff1d(np.arange(len(y)), val)
    direct = make_model("logistic_regression", seed=0).fit(X[fit_rows], y[fit_rows])
    np.testing.assert_allclose(a.estimator_.coef_, direct.coef_, rtol=1e-10)
    # out of reach (see test_calibrated_eq_odds_equals_aif360): said, not silent
    with pytest.warns(UserWarning, match="cannot equalize the fnr costs"):
        c = make_mitigation("calibrated_equalized_odds", {"cost_constraint": "fnr"},
                            seed=1).fit(make_model("logistic_regression"), X, y, s)
    assert c.rates_.priv_mix_rate > 1 and np.all(c.predict_score(X, s)[s == "M"]
                                                 == c.rates_.base_rate_priv)
    assert c.effect() == {"mix_rate_privileged": 1.0, "mix_rate_unprivileged": 0.0,
                          "costs_equalized": 0.0} and c.unchanged() is None
    assert a.effect()["mix_rate_privileged"] == a.rates_.priv_mix_rate > 0
    with pytest.warns(UserWarning, match="cannot equalize the fpr costs"):
        d = make_mitigation("calibrated_equalized_odds", {"cost_constraint": "fpr"},
                            seed=1).fit(make_model("logistic_regression"), X, y, s)
    assert d.rates_.unpriv_mix_rate < 0 and d.unchanged().startswith("no score is mixed")
    np.testing.assert_array_equal(d.predict(X, s), d.estimator_.predict(X))


# -- reject option classification -----------------------------------------------------------
def _band_rule(scores, priv, theta, margin):
    """AIF360's predict, literally: favorable above theta, then the critical region."""
    pred = (scores > theta).astype(np.int64)
    crit = (scores <= theta + margin) & (scores > theta - margin)
    pred[crit & priv] = 0
    pred[crit & ~priv] = 1
    return pred


def _metric(pred, y, priv, metric):
    def rates(rows):
        return (pred[rows].mean(), pred[rows & (y == 1)].mean(), pred[rows & (y == 0)].mean())

    (sel_u, tpr_u, fpr_u), (sel_p, tpr_p, fpr_p) = rates(~priv), rates(priv)
    return {"statistical_parity": sel_u - sel_p, "equal_opportunity": tpr_u - tpr_p,
            "average_odds": 0.5 * ((fpr_u - fpr_p) + (tpr_u - tpr_p))}[metric]


@pytest.mark.parametrize("metric", ["statistical_parity", "average_odds",
                                    "equal_opportunity"])
def test_reject_option_equals_aif360(scored, metric):
    postprocessing = _aif360("aif360.algorithms.postprocessing")
    y, scores, s = scored
    priv = s == "M"
    grid = {"low_class_thresh": 0.05, "high_class_thresh": 0.95, "num_class_thresh": 25,
            "num_roc_margin": 12}
    names = {"statistical_parity": "Statistical parity difference",
             "average_odds": "Average odds difference",
             "equal_opportunity": "Equal opportunity difference"}
    roc = postprocessing.RejectOptionClassification(
        UNPRIV, PRIV, metric_name=names[metric], metric_lb=-0.05, metric_ub=0.05,
        low_class_thresh=0.05, high_class_thresh=0.95, num_class_thresh=25, num_ROC_margin=12)
    feats = np.zeros((len(y), 1))
    roc.fit(_dataset(feats, y, priv), _dataset(feats, y, priv, scores))
    ours = reject_option_grid(y, scores, priv, metric, **grid)
    best, feasible = choose_reject_option(ours, -0.05, 0.05)
    assert feasible
    assert abs(ours.class_thresh[best] - roc.classification_threshold) <= TOL
    assert abs(ours.roc_margin[best] - roc.ROC_margin) <= TOL
    out = roc.predict(_dataset(feats, y, priv, scores))
    pred = reject_option_predict(scores, priv, ours.class_thresh[best], ours.roc_margin[best])
    np.testing.assert_array_equal(pred, out.labels.ravel())


def test_reject_option_mitigation_equals_aif360_on_its_holdout(biased):
    postprocessing = _aif360("aif360.algorithms.postprocessing")
    X, y, s = biased
    # both at their defaults: the 100 x 50 grid, statistical parity within +-0.05
    m = make_mitigation("reject_option_classification", {"privileged": "M"}, seed=5).fit(
        make_model("logistic_regression"), X, y, s)
    val = m.val_idx_
    scores = m.estimator_.predict_proba(X[val])[:, 1]
    roc = postprocessing.RejectOptionClassification(UNPRIV, PRIV)
    feats = np.zeros((len(val), 1))
    roc.fit(_dataset(feats, y[val], s[val] == "M"),
            _dataset(feats, y[val], s[val] == "M", scores))
    assert m.feasible_ and m.roc_margin_ > 0
    assert abs(m.class_thresh_ - roc.classification_threshold) <= TOL
    assert abs(m.roc_margin_ - roc.ROC_margin) <= TOL
    all_scores = m.estimator_.predict_proba(X)[:, 1]
    out = roc.predict(_dataset(np.zeros((len(y), 1)), y, s == "M", all_scores))
    np.testing.assert_array_equal(m.predict(X, s), out.labels.ravel())


@pytest.mark.parametrize("metric", ["statistical_parity", "average_odds",
                                    "equal_opportunity"])
def test_reject_option_grid_matches_brute_force(scored, metric):
    y, scores, s = scored
    priv = s == "M"
    params = {"low_class_thresh": 0.1, "high_class_thresh": 0.9, "num_class_thresh": 9,
              "num_roc_margin": 6}
    grid = reject_option_grid(y, scores, priv, metric, **params)
    thresh, margin = roc_grid(0.1, 0.9, 9, 6)
    assert len(thresh) == 54 and np.all(margin <= np.minimum(thresh, 1 - thresh) + 1e-15)
    for i, (t, m) in enumerate(zip(thresh, margin)):
        pred = _band_rule(scores, priv, t, m)
        np.testing.assert_array_equal(pred, reject_option_predict(scores, priv, t, m))
        bal = 0.5 * (pred[y == 1].mean() + (1 - pred[y == 0]).mean())
        assert abs(grid.balanced_accuracy[i] - bal) < 1e-12
        assert abs(grid.fair_metric[i] - _metric(pred, y, priv, metric)) < 1e-12
    best, feasible = choose_reject_option(grid, -0.05, 0.05)
    ok = np.abs(grid.fair_metric) <= 0.05
    assert feasible and ok[best]
    assert grid.balanced_accuracy[best] == grid.balanced_accuracy[ok].max()
    # the unconstrained model (margin 0 at 0.5) is outside the bounds: the band did the work
    base = _band_rule(scores, priv, 0.5, 0.0)
    assert abs(_metric(base, y, priv, metric)) > 0.05


def test_reject_option_infeasible_bounds_take_the_closest_point(scored):
    y, scores, s = scored
    priv = s == "M"
    grid = reject_option_grid(y, scores, priv, "statistical_parity", 0.1, 0.9, 9, 6)
    best, feasible = choose_reject_option(grid, -1.0, -0.99)  # cannot be met
    assert not feasible
    assert grid.fair_metric[best] == grid.fair_metric.min()  # closest to [-1, -0.99]
    best, feasible = choose_reject_option(grid, 1.5, 2.0)
    assert not feasible and grid.fair_metric[best] == grid.fair_metric.max()


def test_reject_option_mitigation_meets_the_bound_and_treats_other_groups_as_unprivileged(
        biased):
    X, y, s = biased
    s3 = s.copy()
    s3[(s == "F") & (np.arange(len(s)) % 2 == 0)] = "G"  # a third group
    m = make_mitigation("reject_option_classification", {"num_class_thresh": 40,
                                                         "num_roc_margin": 20},
                        seed=3).fit(make_model("logistic_regression"), X, y, s3)
    assert m.privileged_ == "M" and m.feasible_
    val = m.val_idx_
    pred_val = m.predict(X[val], s3[val])
    assert abs(_spd(pred_val, s3[val] == "M") - m.val_metric_) < 1e-12
    assert abs(m.val_metric_) <= 0.05
    score = m.estimator_.predict_proba(X)[:, 1]
    np.testing.assert_array_equal(m.predict(X, s3),
                                  _band_rule(score, s3 == "M", m.class_thresh_, m.roc_margin_))
    np.testing.assert_array_equal(m.predict_score(X, s3), score)
    assert m.effect() == {"class_thresh": m.class_thresh_, "roc_margin": m.roc_margin_,
                          "feasible": 1.0} and m.roc_margin_ > 0 and m.unchanged() is None
    with pytest.warns(UserWarning, match="closest"):
        make_mitigation("reject_option_classification",
                        {"metric_lb": -1.0, "metric_ub": -0.99, "num_class_thresh": 5,
                         "num_roc_margin": 3}).fit(make_model("logistic_regression"), X, y, s)


# -- errors -----------------------------------------------------------------------------------
def test_bad_parameters_are_one_line_param_errors():
    cases = [("lfr", {"k": 0}, "k"), ("lfr", {"Az": -1}, "Az"),
             ("lfr", {"predict_with": "labels"}, "predict_with"),
             ("lfr", {"gradient": "exact"}, "gradient"),
             ("calibrated_equalized_odds", {"cost_constraint": "fdr"}, "cost_constraint"),
             ("calibrated_equalized_odds", {"holdout": 1.0}, "holdout"),
             ("reject_option_classification", {"metric": "parity"}, "metric"),
             ("reject_option_classification", {"low_class_thresh": 0.6,
                                               "high_class_thresh": 0.4}, "high_class_thresh"),
             ("reject_option_classification", {"metric_lb": 0.1, "metric_ub": 0.0},
              "metric_ub"),
             ("reject_option_classification", {"num_roc_margin": 0}, "num_roc_margin")]
    for name, params, key in cases:
        with pytest.raises(ParamError) as info:
            make_mitigation(name, params)
        assert str(info.value).startswith(f"{key}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["lfr", "calibrated_equalized_odds",
                                  "reject_option_classification"])
def test_data_problems_are_user_errors(biased, name):
    X, y, s = biased
    small = {"lfr": {"maxiter": 2}}.get(name, {})
    model = make_model("logistic_regression")
    with pytest.raises(TrustlabError, match="privileged value 'X'"):
        make_mitigation(name, {**small, "privileged": "X"}).fit(model, X, y, s)
    with pytest.raises(TrustlabError, match="two groups"):
        make_mitigation(name, small).fit(model, X, y, np.full(len(y), "M"))
    with pytest.raises(TrustlabError, match="0/1"):
        make_mitigation(name, small).fit(model, X, y + 1, s)
    if name != "lfr":
        with pytest.raises(TrustlabError, match="predict_proba"):
            make_mitigation(name).fit(LinearSVC(), X, y, s)
        s_tiny = s.copy()
        s_tiny[np.flatnonzero(y == 1)[0]] = "Z"  # a (group, label) cell with one row
        with pytest.raises(TrustlabError, match="stratified"):
            make_mitigation(name).fit(model, X, y, s_tiny)
