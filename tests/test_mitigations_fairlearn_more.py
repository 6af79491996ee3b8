"""Correlation remover, grid search, the extended fairlearn constraints and the disparate
impact remover: each checked against fairlearn run directly, a hand computation, or the
method's defining property."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.postprocessing import ThresholdOptimizer
from fairlearn.preprocessing import CorrelationRemover
from fairlearn.reductions import (DemographicParity, EqualizedOdds, ErrorRateParity,
                                  ExponentiatedGradient, FalsePositiveRateParity, GridSearch,
                                  TruePositiveRateParity)
from scipy.stats import ks_2samp
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from trustlab.errors import TrustlabError
from trustlab.mitigations import MITIGATIONS, make_mitigation
from trustlab.mitigations.disparate_impact_remover import midrank_knots
from trustlab.registry import ParamError
from trustlab.training.tabular_models import make_model

REDUCTION_CONSTRAINTS = {
    "demographic_parity": DemographicParity, "equalized_odds": EqualizedOdds,
    "true_positive_rate_parity": TruePositiveRateParity,
    "false_positive_rate_parity": FalsePositiveRateParity,
    "error_rate_parity": ErrorRateParity}
THRESHOLD_CONSTRAINTS = [
    "demographic_parity", "equalized_odds", "true_positive_rate_parity",
    "false_positive_rate_parity", "true_negative_rate_parity", "false_negative_rate_parity"]


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # fairlearn's reductions refit the model many times; OpenBLAS threads fighting over
    # busy cores make those small fits 10-20x slower.
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def biased():
    """Synthetic data where the label depends on the group (like income on sex)."""
    rng = np.random.default_rng(0)
    n = 1200
    s = np.where(rng.random(n) < 0.35, "F", "M")
    X = rng.normal(size=(n, 5))
    X[:, 0] += 1.0 * (s == "M")  # a proxy of the group, as occupation is for sex
    X[:, 2] = X[:, 2] * (1 + (s == "M")) + 0.5 * (s == "F")  # spread differs too
    logit = 1.2 * X[:, 0] + 0.8 * X[:, 1] - 1.0 + 1.0 * (s == "M")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return X, y, s


@pytest.fixture(scope="module")
def three_groups():
    """Three groups of unequal sizes, continuous, binary and constant columns."""
    rng = np.random.default_rng(3)
    n = 900
    s = rng.choice(np.array(["a", "b", "c"]), size=n, p=[0.5, 0.3, 0.2])
    shift = {"a": 0.0, "b": 1.5, "c": -1.0}
    X = np.column_stack([
        rng.normal(size=n) + np.array([shift[g] for g in s]),
        rng.exponential(size=n) * np.where(s == "c", 3.0, 1.0),
        (rng.random(n) < np.where(s == "a", 0.7, 0.2)).astype(float),  # binary
        np.full(n, 4.0),  # constant
    ])
    y = (rng.random(n) < 1 / (1 + np.exp(-X[:, 0]))).astype(np.int64)
    return X, y, s


def _gap(pred, s):
    rates = [pred[s == g].mean() for g in np.unique(s)]
    return max(rates) - min(rates)


def test_the_new_entries_are_registered_and_refuse_bad_params():
    assert {"correlation_remover", "grid_search", "disparate_impact_remover"} <= set(
        MITIGATIONS)
    for name, params, key in [
            ("correlation_remover", {"alpha": 1.5}, "alpha"),
            ("disparate_impact_remover", {"repair_level": -0.1}, "repair_level"),
            ("grid_search", {"constraint_weight": 2}, "constraint_weight"),
            ("grid_search", {"grid_size": 0}, "grid_size"),
            ("grid_search", {"grid_limit": 0}, "grid_limit"),
            ("grid_search", {"constraints": "true_negative_rate_parity"}, "constraints"),
            ("exponentiated_gradient", {"constraints": "false_negative_rate_parity"},
             "constraints"),
            ("threshold_optimizer", {"constraints": "error_rate_parity"}, "constraints")]:
        with pytest.raises(ParamError, match=f"^{key}: ") as info:
            make_mitigation(name, params)
        assert len(str(info.value).splitlines()) == 1
    with pytest.raises(ParamError, match="^tol: not supported with constraints: "
                                         "equalized_odds"):
        make_mitigation("threshold_optimizer", {"constraints": "equalized_odds", "tol": 0.1})
    for c in THRESHOLD_CONSTRAINTS:
        if c != "equalized_odds":
            make_mitigation("threshold_optimizer", {"constraints": c, "tol": 0.05})


# -- correlation remover ------------------------------------------------------------
def _indicators(s):
    return (s[:, None] == np.unique(s)[None, :]).astype(float)


@pytest.mark.parametrize("data", ["biased", "three_groups"])
def test_correlation_remover_at_alpha_1_leaves_no_correlation_with_any_group(data, request):
    X, y, s = request.getfixturevalue(data)
    m = make_mitigation("correlation_remover", {"alpha": 1.0}).fit(
        make_model("logistic_regression"), X, y, s)
    Z = m.transform(X, s)
    assert Z.shape == X.shape
    ind = _indicators(s)
    varying = [j for j in range(X.shape[1]) if np.ptp(X[:, j]) > 0]
    before = max(abs(np.corrcoef(X[:, j], ind[:, k])[0, 1])
                 for j in varying for k in range(ind.shape[1]))
    assert before > 0.3  # there was correlation to remove
    for j in varying:
        for k in range(ind.shape[1]):
            assert abs(np.corrcoef(Z[:, j], ind[:, k])[0, 1]) < 1e-8
    # By hand: projecting out the centred indicators moves each group's mean of each
    # column to the overall mean, x - mean_g(x) + mean(x).
    expected = X.copy()
    for g in np.unique(s):
        expected[s == g] += X.mean(axis=0) - X[s == g].mean(axis=0)
    np.testing.assert_allclose(Z, expected, rtol=0, atol=1e-10)


def test_correlation_remover_alpha_blends_and_matches_fairlearn(three_groups):
    X, y, s = three_groups
    full = make_mitigation("correlation_remover", {"alpha": 1.0}).fit(
        make_model("logistic_regression"), X, y, s).transform(X, s)
    none = make_mitigation("correlation_remover", {"alpha": 0.0}).fit(
        make_model("logistic_regression"), X, y, s)
    np.testing.assert_array_equal(none.transform(X, s), X)
    assert none.unchanged().startswith("alpha is 0") and none.effect() == {
        "max_feature_change": 0.0}
    # the untouched matrix reaches the estimator: same model as without a mitigation
    np.testing.assert_array_equal(none.predict(X, s),
                                  make_model("logistic_regression").fit(X, y).predict(X))
    half = make_mitigation("correlation_remover", {"alpha": 0.3}, seed=2).fit(
        make_model("logistic_regression", seed=2), X, y, s)
    np.testing.assert_allclose(half.transform(X, s), 0.3 * full + 0.7 * X, atol=1e-12)
    assert half.unchanged() is None
    assert half.effect()["max_feature_change"] == pytest.approx(np.abs(0.3 * (full - X)).max())
    # fairlearn run directly, with the group indicators appended as its sensitive columns
    direct = CorrelationRemover(sensitive_feature_ids=[4, 5, 6], alpha=0.3)
    Z = direct.fit_transform(np.hstack([X, _indicators(s)]))
    np.testing.assert_allclose(half.transform(X, s), Z, rtol=0, atol=1e-12)
    lr = LogisticRegression(max_iter=1000, random_state=2).fit(Z, y)
    np.testing.assert_array_equal(half.predict(X, s), lr.predict(Z))
    np.testing.assert_allclose(half.predict_score(X, s), lr.predict_proba(Z)[:, 1])
    # test rows go through the training projection (a subset transforms row by row)
    np.testing.assert_allclose(half.transform(X[:7], s[:7]), Z[:7], atol=1e-12)


def test_correlation_remover_reduces_disparity_and_refuses_bad_data(biased):
    X, y, s = biased
    m = make_mitigation("correlation_remover").fit(make_model("logistic_regression"), X, y, s)
    base = make_model("logistic_regression").fit(X, y).predict(X)
    assert _gap(base, s) > 0.25 and _gap(m.predict(X, s), s) < 0.1
    with pytest.raises(TrustlabError, match="'Q' was not seen"):
        m.predict(X[:3], np.array(["F", "M", "Q"]))
    with pytest.raises(TrustlabError, match="expected 5 columns"):
        m.predict(X[:, :4], s)
    with pytest.raises(TrustlabError, match="two groups"):
        make_mitigation("correlation_remover").fit(make_model("logistic_regression"), X, y,
                                                   np.full(len(y), "F"))


# -- disparate impact remover ---------------------------------------------------------
def test_midrank_knots_by_hand():
    values, q = midrank_knots(np.array([3.0, 1.0, 2.0, 2.0, 2.0, 5.0]))
    np.testing.assert_array_equal(values, [1, 2, 3, 5])
    # n = 6: 1 -> (0 + 1/2)/6, 2 -> (1 + 3/2)/6, 3 -> (4 + 1/2)/6, 5 -> (5 + 1/2)/6
    np.testing.assert_allclose(q, [0.5 / 6, 2.5 / 6, 4.5 / 6, 5.5 / 6])


def test_disparate_impact_remover_by_hand():
    """Three groups of two rows: quantiles 1/4 and 3/4 in each; the target at 3/4 is the
    median of 1, 2 and 10 (not their mean)."""
    X = np.array([[0.0], [1.0], [0.0], [2.0], [0.0], [10.0]])
    s = np.array(["a", "a", "b", "b", "c", "c"])
    y = np.array([0, 1, 0, 1, 0, 1])
    full = make_mitigation("disparate_impact_remover").fit(LogisticRegression(), X, y, s)
    np.testing.assert_allclose(full.transform(X, s)[:, 0], [0, 2, 0, 2, 0, 2])
    half = make_mitigation("disparate_impact_remover", {"repair_level": 0.5}).fit(
        LogisticRegression(), X, y, s)
    np.testing.assert_allclose(half.transform(X, s)[:, 0], [0, 1.5, 0, 2, 0, 6])
    assert full.effect() == {"max_feature_change": 8.0} and full.unchanged() is None
    assert half.effect() == {"max_feature_change": 4.0}
    zero = make_mitigation("disparate_impact_remover", {"repair_level": 0}).fit(
        LogisticRegression(), X, y, s)
    assert zero.unchanged().startswith("repair_level is 0")
    same = make_mitigation("disparate_impact_remover").fit(  # groups already alike
        LogisticRegression(), np.array([[0.0], [1.0], [0.0], [1.0]]), y[:4], s[[0, 1, 2, 3]])
    assert same.unchanged().startswith("every feature already")
    # Test rows: a's 0.5 sits at quantile 1/2, where a, b, c have 0.5, 1 and 5 (median 1);
    # c's 0.5 at 1/4 + 0.5/10 * 1/2 = 0.275, where they have 0.05, 0.1 and 0.5 (median
    # 0.1); values outside a group's training range take its end quantile.
    X_te = np.array([[0.5], [0.5], [-3.0], [99.0]])
    s_te = np.array(["a", "c", "b", "b"])
    np.testing.assert_allclose(full.transform(X_te, s_te)[:, 0], [1, 0.1, 0, 2])
    np.testing.assert_allclose(half.transform(X_te, s_te)[:, 0], [0.75, 0.3, -1.5, 50.5])


def test_disparate_impact_remover_ties_share_a_quantile():
    # a: 0,0,1,1 -> quantiles 1/4, 3/4; b: 0,1,1,1 -> 0 at 1/8, 1 at (1 + 3/2)/4 = 5/8.
    X = np.array([[0.0], [0.0], [1.0], [1.0], [0.0], [1.0], [1.0], [1.0]])
    s = np.array(["a"] * 4 + ["b"] * 4)
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    R = make_mitigation("disparate_impact_remover").fit(LogisticRegression(), X, y, s
                                                        ).transform(X, s)[:, 0]
    # a's 0 at u=1/4: Q_a = 0, Q_b = (1/4 - 1/8)/(1/2) = 1/4 -> 1/8.
    # a's 1 at u=3/4: Q_a = 1, Q_b = 1 -> 1.
    # b's 0 at u=1/8: Q_a = 0 (clamped), Q_b = 0 -> 0.  b's 1 at u=5/8: Q_a = 0.75, Q_b = 1.
    np.testing.assert_allclose(R, [1 / 8, 1 / 8, 1, 1, 0, 0.875, 0.875, 0.875])


def test_disparate_impact_remover_equalizes_group_distributions(three_groups):
    X, y, s = three_groups
    groups = np.unique(s)
    repaired = {lam: make_mitigation("disparate_impact_remover", {"repair_level": lam}).fit(
        make_model("logistic_regression"), X, y, s).transform(X, s) for lam in (0, 0.4, 1)}
    np.testing.assert_array_equal(repaired[0], X)  # repair level 0 changes nothing

    def worst_ks(Z, j):
        return max(ks_2samp(Z[s == g, j], Z[s == h, j]).statistic
                   for g in groups for h in groups if g < h)

    for j in (0, 1):  # continuous columns: the groups' distributions become one
        assert worst_ks(X, j) > 0.4
        # each group holds the median distribution at its own n_g mid-rank quantiles: the
        # empirical CDFs differ by at most about one step of the smallest group
        assert worst_ks(repaired[1], j) <= 2 / min((s == g).sum() for g in groups)
    # the constant column stays as it was; the binary one moves toward one distribution
    np.testing.assert_array_equal(repaired[1][:, 3], X[:, 3])
    means = lambda Z: [Z[s == g, 2].mean() for g in groups]  # noqa: E731
    assert np.ptp(means(repaired[1])) < 0.5 * np.ptp(means(X))
    # geometric repair: each level is the straight line from x to the full repair
    np.testing.assert_allclose(repaired[0.4], 0.6 * X + 0.4 * repaired[1], atol=1e-12)
    # rank order within each group is kept (strictly where the repair is partial)
    for g in groups:
        for j in (0, 1, 2):
            order = np.argsort(X[s == g, j], kind="stable")
            assert np.all(np.diff(repaired[1][s == g, j][order]) >= -1e-12)
            steps = np.diff(repaired[0.4][s == g, j][order])
            assert np.all(steps[np.diff(X[s == g, j][order]) > 0] > 0)


def test_disparate_impact_remover_equal_sized_groups_get_the_same_values():
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(size=(300, 2)), 2 + 3 * rng.normal(size=(300, 2))])
    s = np.repeat(["u", "v"], 300)
    y = rng.integers(0, 2, 600)
    R = make_mitigation("disparate_impact_remover").fit(LogisticRegression(), X, y, s
                                                        ).transform(X, s)
    for j in range(2):  # same positions (i + 1/2)/300 in both groups: identical values
        np.testing.assert_allclose(np.sort(R[s == "u", j]), np.sort(R[s == "v", j]),
                                   atol=1e-12)


def test_disparate_impact_remover_on_test_rows_and_disparity(biased):
    X, y, s = biased
    tr, te = np.arange(800), np.arange(800, len(y))
    m = make_mitigation("disparate_impact_remover").fit(
        make_model("logistic_regression"), X[tr], y[tr], s[tr])
    R = m.transform(X[te], s[te])
    F, M = s[te] == "F", s[te] == "M"
    assert ks_2samp(X[te][F, 0], X[te][M, 0]).statistic > 0.3
    assert ks_2samp(R[F, 0], R[M, 0]).statistic < 0.12  # training repair, unseen rows
    # the estimator sees the repaired rows
    lr = LogisticRegression(max_iter=1000, random_state=0).fit(m.transform(X[tr], s[tr]),
                                                               y[tr])
    np.testing.assert_array_equal(m.predict(X[te], s[te]), lr.predict(R))
    np.testing.assert_allclose(m.predict_score(X[te], s[te]), lr.predict_proba(R)[:, 1])
    base = make_model("logistic_regression").fit(X[tr], y[tr]).predict(X[te])
    assert _gap(base, s[te]) > 0.25 and _gap(m.predict(X[te], s[te]), s[te]) < 0.1


def test_disparate_impact_remover_refuses_bad_data(biased):
    X, y, s = biased
    m = make_mitigation("disparate_impact_remover").fit(LogisticRegression(), X, y, s)
    with pytest.raises(TrustlabError, match="'Q' was not seen"):
        m.predict(X[:3], np.array(["F", "M", "Q"]))
    with pytest.raises(TrustlabError, match="expected 5 columns"):
        m.predict(X[:, :3], s)
    with pytest.raises(TrustlabError, match="two groups"):
        make_mitigation("disparate_impact_remover").fit(LogisticRegression(), X, y,
                                                        np.full(len(y), "M"))
    X_nan = X.copy()
    X_nan[0, 1] = np.nan
    with pytest.raises(TrustlabError, match="missing or infinite"):
        make_mitigation("disparate_impact_remover").fit(LogisticRegression(), X_nan, y, s)


# -- fairlearn reductions: all constraints, grid search ------------------------------
@pytest.mark.parametrize("constraints", sorted(REDUCTION_CONSTRAINTS))
def test_exponentiated_gradient_every_constraint_matches_fairlearn(biased, constraints):
    X, y, s = biased
    ours = make_mitigation("exponentiated_gradient",
                           {"constraints": constraints, "max_iter": 10,
                            "difference_bound": 0.02}, seed=3).fit(
        make_model("logistic_regression"), X, y, s)
    moment = REDUCTION_CONSTRAINTS[constraints](difference_bound=0.02)
    direct = ExponentiatedGradient(LogisticRegression(max_iter=1000, random_state=3), moment,
                                   max_iter=10)
    direct.fit(X, y, sensitive_features=s)
    assert type(ours.mitigator_.constraints) is type(moment)
    assert ours.mitigator_.constraints.eps == 0.02
    np.testing.assert_array_equal(ours.predict(X, s), direct.predict(X, random_state=3))
    np.testing.assert_allclose(ours.predict_score(X, s),
                               np.clip(direct._pmf_predict(X)[:, 1], 0, 1))


@pytest.mark.parametrize("constraints", sorted(REDUCTION_CONSTRAINTS))
def test_grid_search_matches_fairlearn(biased, constraints):
    X, y, s = biased
    params = {"constraints": constraints, "grid_size": 7, "grid_limit": 3.0,
              "constraint_weight": 0.7}
    ours = make_mitigation("grid_search", params, seed=1).fit(
        make_model("logistic_regression"), X, y, s)
    direct = GridSearch(LogisticRegression(max_iter=1000, random_state=1),
                        REDUCTION_CONSTRAINTS[constraints](), constraint_weight=0.7,
                        grid_size=7, grid_limit=3.0)
    direct.fit(X, y, sensitive_features=s)
    assert ours.mitigator_.best_idx_ == direct.best_idx_
    assert len(ours.mitigator_.predictors_) == 7
    np.testing.assert_array_equal(ours.predict(X, s), direct.predict(X))
    score = ours.predict_score(X, s)
    assert score.dtype == np.float64
    np.testing.assert_allclose(score, direct.predict_proba(X)[:, 1])


def test_grid_search_reduces_disparity_and_handles_constant_predictors(biased):
    X, y, s = biased
    m = make_mitigation("grid_search", {"constraint_weight": 0.9}).fit(
        make_model("logistic_regression"), X, y, s)
    base = make_model("logistic_regression").fit(X, y).predict(X)
    assert _gap(m.predict(X, s), s) < 0.5 * _gap(base, s)
    # fairlearn fits a constant DummyClassifier where a grid point relabels every row
    # alike; its predict_proba then has one column
    for label in (0, 1):
        m.estimator_ = DummyClassifier(strategy="constant", constant=label).fit(
            X, np.full(len(y), label))
        np.testing.assert_array_equal(m.predict_score(X, s), np.full(len(y), float(label)))
        np.testing.assert_array_equal(m.predict(X, s), np.full(len(y), label))
    xgb = make_mitigation("grid_search", {"constraints": "equalized_odds"}).fit(
        make_model("xgboost", {"n_estimators": 10}), X, y, s)
    assert xgb.predict_score(X, s).dtype == np.float64


@pytest.mark.parametrize("constraints", THRESHOLD_CONSTRAINTS)
def test_threshold_optimizer_every_constraint_matches_fairlearn(biased, constraints):
    X, y, s = biased
    ours = make_mitigation("threshold_optimizer", {"constraints": constraints,
                                                   "grid_size": 200}, seed=4).fit(
        make_model("logistic_regression"), X, y, s)
    direct = ThresholdOptimizer(estimator=LogisticRegression(max_iter=1000, random_state=4),
                                constraints=constraints, objective="accuracy_score",
                                grid_size=200, predict_method="predict_proba")
    direct.fit(X, y, sensitive_features=s)
    np.testing.assert_array_equal(ours.predict(X, s),
                                  direct.predict(X, sensitive_features=s, random_state=4))
