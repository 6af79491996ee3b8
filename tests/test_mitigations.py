"""Defining properties of each tabular mitigation, checked against hand computations,
brute force, or the library run directly (fairlearn, imbalanced-learn, scikit-learn)."""

from __future__ import annotations

import warnings

import itertools

import numpy as np
import pytest
from fairlearn.postprocessing import ThresholdOptimizer
from fairlearn.reductions import DemographicParity, ExponentiatedGradient
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from trustlab.errors import TrustlabError
from trustlab.mitigations import MITIGATIONS, make_mitigation
from trustlab.mitigations.group_thresholds import (group_candidates,
                                                   search_demographic_parity,
                                                   search_equalized_odds)
from trustlab.mitigations.massaging import massaging_flip_count
from trustlab.mitigations.reweighing import reweighing_weights
from trustlab.training.tabular_models import make_model


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Small repeated fits (fairlearn's reductions refit the model dozens of times) are
    # 10-20x slower when OpenBLAS threads fight over 2 busy cores.
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
    logit = 1.2 * X[:, 0] + 0.8 * X[:, 1] - 1.0 + 1.0 * (s == "M")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return X, y, s


def _rates(pred, s):
    return {g: float(pred[s == g].mean()) for g in np.unique(s)}


# -- registry --------------------------------------------------------------------
def test_registry_names_and_errors():
    assert set(MITIGATIONS) >= {
        "none", "reweighing", "massaging", "oversample", "undersample", "smote",
        "exponentiated_gradient", "threshold_optimizer", "group_thresholds"}
    with pytest.raises(TrustlabError, match="unknown mitigation"):
        make_mitigation("fairness_magic")
    with pytest.raises(TrustlabError, match="reweighing"):
        make_mitigation("reweighing", {"alpha": 1})
    with pytest.raises(TrustlabError, match="constraints"):
        make_mitigation("exponentiated_gradient", {"constraints": "parity"})
    with pytest.raises(TrustlabError, match="constraints"):
        make_mitigation("group_thresholds", {"constraints": "parity"})
    with pytest.raises(TrustlabError, match="sampling_strategy"):
        make_mitigation("smote", {"sampling_strategy": "auto"})
    with pytest.raises(TrustlabError, match="target"):
        make_mitigation("oversample", {"target": "more"})
    assert make_mitigation("smote", {"k_neighbors": 3}, seed=4).sampler_params == {
        "k_neighbors": 3}


@pytest.mark.parametrize("stage", ["mitigations", "models"])
def test_every_entry_declares_its_params_and_refuses_bad_values(stage):
    """Each mitigation and tabular model declares its parameters once (``Params``); a bad
    value or an unknown name is a one-line ParamError naming the key, through the entry's
    constructor and through the registry (as a config block's ``params.<key>``)."""
    from trustlab.registry import ParamError, get_registry

    reg = get_registry(stage)
    for name in reg:
        entry = reg.get(name)
        assert entry.name == name and entry.__doc__.strip()
        defaults = reg.resolve(name, {})  # every parameter has a valid default
        assert set(defaults) == {f.alias or n for n, f in entry.Params.model_fields.items()}
        bad = {key: [[]] for key in entry.Params.model_fields}
        bad["no_such_param"] = 1
        for key, value in bad.items():
            with pytest.raises(ParamError) as info:
                entry(seed=0, **{key: value})
            assert info.value.key == key and str(info.value).startswith(f"{key}: ")
            with pytest.raises(ParamError) as info:
                reg.resolve(name, {key: value})
            assert str(info.value).startswith(f"params.{key}: ")
            assert len(str(info.value).splitlines()) == 1


def test_declared_constraints_and_cross_field_rules():
    from trustlab.registry import ParamError
    from trustlab.training.tabular_models import MODELS

    with pytest.raises(ParamError, match=r"^tol: not supported with constraints: "
                                         r"equalized_odds"):
        make_mitigation("threshold_optimizer", {"constraints": "equalized_odds", "tol": 0.1})
    make_mitigation("threshold_optimizer", {"constraints": "demographic_parity", "tol": 0.1})
    for params, key in [({"max_disparity": 1.5}, "max_disparity"), ({"val_size": 1}, "val_size"),
                        ({"cv": 1}, "cv"), ({"grid_size": 0}, "grid_size")]:
        with pytest.raises(ParamError, match=f"^{key}: "):
            make_mitigation("group_thresholds", params)
    with pytest.raises(ParamError, match=r"^ranker: unknown tabular model 'svm'"):
        make_mitigation("massaging", {"ranker": "svm"})
    with pytest.raises(ParamError, match=r"^ranker_params.n_estimatorz: unknown parameter"):
        make_mitigation("massaging", {"ranker": "random_forest",
                                      "ranker_params": {"n_estimatorz": 3}})
    with pytest.raises(ParamError, match=r"^ranker_params: only for a named ranker"):
        make_mitigation("massaging", {"ranker": "same", "ranker_params": {"C": 1.0}})
    # pass-through parameters are checked against the wrapped library's own names
    with pytest.raises(ParamError, match=r"^params.n_estimatorz: unknown parameter .*did "
                                         r"you mean 'n_estimators'"):
        MODELS.resolve("random_forest", {"n_estimatorz": 3})
    assert MODELS.resolve("xgboost", {"max_depth": 3}) == {
        "n_jobs": 1, "tree_method": "hist", "eval_metric": "logloss", "max_depth": 3}
    with pytest.raises(ParamError, match=r"^k_neighbours: unknown parameter"):
        make_mitigation("smote", {"k_neighbours": 3})
    assert make_mitigation("undersample", {"replacement": True}).sampler_params == {
        "replacement": True}


def test_models_are_our_defaults_plus_the_estimators_arguments():
    lr = make_model("logistic_regression", seed=3)
    assert lr.get_params()["max_iter"] == 1000 and lr.get_params()["random_state"] == 3
    assert make_model("logistic_regression", {"C": 0.5, "max_iter": 10}).get_params()[
        "max_iter"] == 10
    rf = make_model("random_forest", {"max_depth": 4}, seed=1).get_params()
    assert (rf["n_estimators"], rf["n_jobs"], rf["max_depth"], rf["random_state"]) == (
        100, 1, 4, 1)
    xgb = make_model("xgboost", {"n_estimators": 7}, seed=2).get_params()
    assert (xgb["n_jobs"], xgb["tree_method"], xgb["eval_metric"], xgb["n_estimators"],
            xgb["random_state"]) == (1, "hist", "logloss", 7, 2)
    assert make_model("gradient_boosting", {"random_state": 9}, seed=2).random_state == 9


def test_bad_labels_are_user_errors(biased):
    X, y, s = biased
    with pytest.raises(TrustlabError, match="0/1"):
        make_mitigation("none").fit(make_model("logistic_regression"), X, y + 1, s)
    with pytest.raises(TrustlabError, match="lengths"):
        make_mitigation("reweighing").fit(make_model("logistic_regression"), X, y[:-1], s)


# -- reweighing ------------------------------------------------------------------
def test_reweighing_weights_by_hand():
    s = np.array(["a", "a", "a", "b", "b"])
    y = np.array([1, 1, 0, 0, 1])
    # n=5; n_a=3, n_b=2, n_1=3, n_0=2; w = n_s n_y / (n n_sy)
    expected = [3 * 3 / (5 * 2)] * 2 + [3 * 2 / (5 * 1), 2 * 2 / (5 * 1), 2 * 3 / (5 * 1)]
    np.testing.assert_allclose(reweighing_weights(y, s), expected, rtol=0, atol=1e-15)


def test_reweighing_makes_group_and_label_independent(biased):
    X, y, s = biased
    m = make_mitigation("reweighing").fit(make_model("logistic_regression"), X, y, s)
    w = m.sample_weight_ / m.sample_weight_.sum()
    for g in np.unique(s):
        for label in (0, 1):
            joint = w[(s == g) & (y == label)].sum()
            assert abs(joint - w[s == g].sum() * w[y == label].sum()) < 1e-12
    # Without weights the data is far from independent (so the check above means something).
    assert abs(np.mean((s == "F") & (y == 1)) - np.mean(s == "F") * np.mean(y == 1)) > 0.01
    # The weights reach the estimator: same fit as scikit-learn with sample_weight.
    direct = LogisticRegression(max_iter=1000, random_state=0).fit(
        X, y, sample_weight=m.sample_weight_)
    np.testing.assert_allclose(m.estimator_.coef_, direct.coef_, rtol=1e-10)


# -- massaging -------------------------------------------------------------------
def _gap(n_u, p_u, n_p, p_p, m):
    return abs((p_p - m) / n_p - (p_u + m) / n_u)


def test_massaging_flip_count_is_the_minimal_best_count():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n_u, n_p = rng.integers(5, 200, size=2)
        p_u = int(rng.integers(0, n_u // 2 + 1))
        p_p = int(rng.integers(0, n_p + 1))
        m = massaging_flip_count(n_u, p_u, n_p, p_p)
        bound = min(n_u - p_u, p_p)
        if (p_p / n_p) <= (p_u / n_u):
            assert m == 0
            continue
        gaps = [_gap(n_u, p_u, n_p, p_p, k) for k in range(bound + 1)]
        assert m == int(np.argmin(gaps))  # brute force, smallest on ties


def test_massaging_equalizes_training_rates_with_fewest_flips(biased):
    X, y, s = biased
    m = make_mitigation("massaging", {"privileged": "M"}).fit(
        make_model("logistic_regression"), X, y, s)
    y2 = m.y_massaged_
    priv, unpriv = s == "M", s == "F"
    n_p, n_u = int(priv.sum()), int(unpriv.sum())
    assert m.n_flips_ > 0 and len(m.promoted_) == len(m.demoted_) == m.n_flips_
    assert int((y2 != y).sum()) == 2 * m.n_flips_
    assert abs(y2[priv].mean() - y2[unpriv].mean()) <= max(1 / n_p, 1 / n_u)
    args = (n_u, int(y[unpriv].sum()), n_p, int(y[priv].sum()))
    assert _gap(*args, m.n_flips_ - 1) > _gap(*args, m.n_flips_)  # M-1 would not suffice
    assert _gap(*args, m.n_flips_ + 1) >= _gap(*args, m.n_flips_)
    # Borderline rows: promoted = top-ranked unprivileged negatives, demoted = lowest-ranked
    # privileged positives, by the default logistic-regression ranker.
    score = LogisticRegression(max_iter=1000, random_state=0).fit(X, y).predict_proba(X)[:, 1]
    others_neg = np.setdiff1d(np.flatnonzero(unpriv & (y == 0)), m.promoted_)
    others_pos = np.setdiff1d(np.flatnonzero(priv & (y == 1)), m.demoted_)
    assert score[m.promoted_].min() >= score[others_neg].max()
    assert score[m.demoted_].max() <= score[others_pos].min()
    assert np.all(y[m.promoted_] == 0) and np.all(y2[m.promoted_] == 1)
    assert np.all(s[m.promoted_] == "F") and np.all(s[m.demoted_] == "M")


def test_massaging_privileged_inference_and_direction(biased):
    X, y, s = biased
    inferred = make_mitigation("massaging").fit(make_model("logistic_regression"), X, y, s)
    assert inferred.privileged_ == "M"  # the group with the higher positive rate
    # Naming the group with the lower favorable rate as privileged: massaging follows the
    # data (promotes it) and says so, instead of silently flipping nothing.
    with pytest.warns(UserWarning, match="privileged group 'F' has the lower"):
        other_way = make_mitigation("massaging", {"privileged": "F"}).fit(
            make_model("logistic_regression"), X, y, s)
    assert other_way.promoted_group_ == "privileged" and other_way.n_flips_ == inferred.n_flips_
    assert np.all(s[other_way.promoted_] == "F") and np.all(s[other_way.demoted_] == "M")
    y2 = other_way.y_massaged_
    assert abs(y2[s == "M"].mean() - y2[s == "F"].mean()) < abs(
        y[s == "M"].mean() - y[s == "F"].mean()) / 10
    same = make_mitigation("massaging", {"ranker": "same"}).fit(
        make_model("random_forest", {"n_estimators": 5}), X, y, s)
    assert same.n_flips_ == inferred.n_flips_  # the count depends on counts only
    with pytest.raises(TrustlabError, match="privileged value"):
        make_mitigation("massaging", {"privileged": "X"}).fit(
            make_model("logistic_regression"), X, y, s)


# -- resampling ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["oversample", "undersample", "smote"])
def test_samplers_balance_the_cells(biased, name):
    X, y, s = biased
    m = make_mitigation(name, {}, seed=3)
    X2, y2, s2 = m.fit_resample(X, y, s)
    counts = [int(((s2 == g) & (y2 == label)).sum()) for g in ("F", "M") for label in (0, 1)]
    before = [int(((s == g) & (y == label)).sum()) for g in ("F", "M") for label in (0, 1)]
    assert len(set(counts)) == 1  # every cell the same size
    assert counts[0] == (max(before) if name != "undersample" else min(before))
    if name == "smote":
        # imbalanced-learn keeps the original rows first, then appends synthetic ones.
        np.testing.assert_array_equal(X2[:len(X)], X)
        np.testing.assert_array_equal(y2[:len(X)], y)
        np.testing.assert_array_equal(s2[:len(X)], s)
    else:
        idx = m.sample_indices_
        np.testing.assert_array_equal(X2, X[idx])
        np.testing.assert_array_equal(y2, y[idx])
        np.testing.assert_array_equal(s2, s[idx])


@pytest.mark.parametrize("name", ["oversample", "undersample"])
def test_samplers_independent_target(biased, name):
    X, y, s = biased
    _, y2, s2 = make_mitigation(name, {"target": "independent"}).fit_resample(X, y, s)
    n = len(y2)
    for g in ("F", "M"):
        for label in (0, 1):
            joint = np.mean((s2 == g) & (y2 == label))
            cell = ((s2 == g) & (y2 == label)).sum()
            # independent up to rounding each cell to a whole number of rows
            assert abs(joint - np.mean(s2 == g) * np.mean(y2 == label)) <= 2 / n + 1 / cell
    # the overall label rate is kept (up to rounding)
    assert abs(y2.mean() - y.mean()) < 0.01


def test_sampler_errors_are_user_errors(biased):
    X, y, s = biased
    s_bad = s.copy()
    s_bad[:3] = "Z"
    y_bad = y.copy()
    y_bad[:3] = 1
    with pytest.raises(TrustlabError, match="'Z' and label 0"):
        make_mitigation("oversample").fit_resample(X, y_bad, s_bad)
    s_tiny = s.copy()
    s_tiny[np.flatnonzero(y == 0)[:3]] = "Z"
    s_tiny[np.flatnonzero(y == 1)[:3]] = "Z"
    # an explicit k_neighbors larger than a cell allows is a user error, not a traceback
    with pytest.raises(TrustlabError, match="smote"):
        make_mitigation("smote", {"k_neighbors": 5}).fit_resample(X, y, s_tiny)


# -- fairlearn -------------------------------------------------------------------
def test_exponentiated_gradient_matches_fairlearn_and_reduces_disparity(biased):
    X, y, s = biased
    ours = make_mitigation("exponentiated_gradient", {"max_iter": 20}, seed=5).fit(
        make_model("logistic_regression"), X, y, s)
    direct = ExponentiatedGradient(LogisticRegression(max_iter=1000, random_state=5),
                                   DemographicParity(), max_iter=20)
    direct.fit(X, y, sensitive_features=s)
    pred = ours.predict(X, s)
    np.testing.assert_array_equal(pred, direct.predict(X, random_state=5))
    base = make_model("logistic_regression").fit(X, y).predict(X)
    gap = lambda p: abs(np.subtract(*_rates(p, s).values()))  # noqa: E731
    assert gap(base) > 0.15 and gap(pred) < 0.06
    score = ours.predict_score(X, s)
    assert score.dtype == np.float64 and np.all((score >= 0) & (score <= 1))


def test_threshold_optimizer_matches_fairlearn(biased):
    X, y, s = biased
    ours = make_mitigation("threshold_optimizer", {}, seed=2).fit(
        make_model("logistic_regression"), X, y, s)
    direct = ThresholdOptimizer(estimator=LogisticRegression(max_iter=1000, random_state=2),
                                constraints="demographic_parity",
                                objective="accuracy_score", predict_method="predict_proba")
    direct.fit(X, y, sensitive_features=s)
    pred = ours.predict(X, s)
    np.testing.assert_array_equal(pred, direct.predict(X, sensitive_features=s,
                                                       random_state=2))
    rates = _rates(pred, s)
    assert abs(rates["F"] - rates["M"]) < 0.05


def test_threshold_optimizer_runs_on_xgboost_float32_scores(biased):
    # fairlearn 0.15 + pandas 3 fail on XGBoost's float32 probabilities; the adapter fixes it.
    X, y, s = biased
    m = make_mitigation("threshold_optimizer", {"constraints": "equalized_odds"}).fit(
        make_model("xgboost", {"n_estimators": 10}), X, y, s)
    assert set(np.unique(m.predict(X, s))) <= {0, 1}
    assert m.predict_score(X, s).dtype == np.float64


# -- group thresholds --------------------------------------------------------------
def _brute_force(scores, y, groups, bound, equalized_odds):
    """Best number of correct decisions over every combination of per-group thresholds."""
    per_group = []
    for g in np.unique(groups):
        sc, yy = scores[groups == g], y[groups == g]
        options = []
        for t in np.r_[np.unique(sc), np.inf]:
            p = sc >= t
            options.append((int((p == yy).sum()), p.mean(), p[yy == 1].mean(),
                            p[yy == 0].mean()))
        per_group.append(options)
    best = -1
    for combo in itertools.product(*per_group):
        sel, tpr, fpr = (np.array([c[k] for c in combo]) for k in (1, 2, 3))
        spread = np.ptp(sel) if not equalized_odds else max(np.ptp(tpr), np.ptp(fpr))
        if spread <= bound + 1e-12:
            best = max(best, sum(c[0] for c in combo))
    return best


@pytest.mark.parametrize("equalized_odds", [False, True])
def test_group_threshold_search_matches_brute_force(equalized_odds):
    rng = np.random.default_rng(7)
    for trial in range(25):
        n_groups = 2 + trial % 2
        sizes = rng.integers(4, 9, size=n_groups)
        groups = np.repeat(np.arange(n_groups), sizes)
        # rounded scores create ties, which the candidates must handle
        scores = np.round(rng.random(len(groups)), 1)
        y = (rng.random(len(groups)) < 0.3 + 0.4 * scores).astype(np.int64)
        y[np.cumsum(sizes) - 1] = 1 - y[np.cumsum(sizes) - 2]  # both labels in each group
        y[np.cumsum(sizes) - 2] = 1 - y[np.cumsum(sizes) - 1]
        bound = [0.0, 0.1, 0.25, 0.5][trial % 4]
        cands = [group_candidates(scores[groups == g], y[groups == g])
                 for g in range(n_groups)]
        search = search_equalized_odds if equalized_odds else search_demographic_parity
        picks = search(cands, bound)
        got = sum(int(c.correct[i]) for c, i in zip(cands, picks))
        assert got == _brute_force(scores, y, groups, bound, equalized_odds)
        # the picked thresholds really reproduce the counted decisions and meet the bound
        pred = np.zeros(len(y), dtype=bool)
        for g, c, i in zip(range(n_groups), cands, picks):
            pred[groups == g] = scores[groups == g] >= c.thresholds[i]
        assert int((pred == y).sum()) == got
        rates = [pred[groups == g].mean() for g in range(n_groups)]
        if not equalized_odds:
            assert np.ptp(rates) <= bound + 1e-12


def test_group_thresholds_meet_the_bound_on_validation_and_are_deterministic(biased):
    X, y, s = biased
    params = {"max_disparity": 0.02, "val_size": 0.3}
    a = make_mitigation("group_thresholds", params, seed=11).fit(
        make_model("xgboost", {"n_estimators": 20}), X, y, s)
    b = make_mitigation("group_thresholds", params, seed=11).fit(
        make_model("xgboost", {"n_estimators": 20}), X, y, s)
    np.testing.assert_array_equal(a.predict(X, s), b.predict(X, s))
    assert a.thresholds_ == b.thresholds_
    # Rebuild the validation split independently and check the constraint there.
    cell = np.unique(s, return_inverse=True)[1] * 2 + y
    _, val = train_test_split(np.arange(len(y)), test_size=0.3, random_state=11,
                              stratify=cell)
    pred = a.predict(X[val], s[val])
    rates = _rates(pred, s[val])
    assert abs(rates["F"] - rates["M"]) <= 0.02 + 1e-12
    assert abs(np.mean(pred == y[val]) - a.val_accuracy_) < 1e-12
    base_rates = _rates(a.estimator_.predict(X[val]), s[val])
    assert abs(base_rates["F"] - base_rates["M"]) > 0.1  # the thresholds did the work


def test_group_thresholds_equalized_odds_and_cross_fitting(biased):
    X, y, s = biased
    m = make_mitigation("group_thresholds", {"constraints": "equalized_odds",
                                             "max_disparity": 0.03, "cv": 3}, seed=1).fit(
        make_model("logistic_regression"), X, y, s)
    assert m.val_disparity_ <= 0.03 + 1e-12
    # cross-fitting chose the thresholds on out-of-fold scores of every row
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cell = np.unique(s, return_inverse=True)[1] * 2 + y
    folds = StratifiedKFold(3, shuffle=True, random_state=1).split(X, cell)
    oof = cross_val_predict(LogisticRegression(max_iter=1000, random_state=1), X, y,
                            cv=list(folds), method="predict_proba")[:, 1]
    pred = oof >= np.array([m.thresholds_[g] for g in s])
    tpr = [pred[(s == g) & (y == 1)].mean() for g in ("F", "M")]
    fpr = [pred[(s == g) & (y == 0)].mean() for g in ("F", "M")]
    assert max(abs(tpr[0] - tpr[1]), abs(fpr[0] - fpr[1])) <= 0.03 + 1e-12
    assert abs(np.mean(pred == y) - m.val_accuracy_) < 1e-12
    with pytest.raises(TrustlabError, match="not seen"):
        m.predict(X[:3], np.array(["F", "M", "Q"]))


def test_smote_shrinks_k_to_the_smallest_cell_and_balances_it():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = rng.integers(0, 2, 300)
    s = np.array(["a"] * 290 + ["b"] * 10)
    y[-10:] = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]  # cell (b, 1) has 3 rows: k must drop to 2
    m = make_mitigation("smote", {}, 0).fit(LogisticRegression(), X, y, s)
    assert m.sampler_.k_neighbors == 2
    assert len(set(m.cell_counts_.tolist())) == 1  # every (group, label) cell equal
    y[-10:] = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # (b, 1) has a single row: nothing to pair
    with pytest.raises(TrustlabError, match="single row"):
        make_mitigation("smote", {}, 0).fit(LogisticRegression(), X, y, s)


@pytest.mark.parametrize("privileged", ["Male", "Female"])
def test_massaging_cuts_compas_sex_parity_whichever_value_is_named(privileged):
    """On COMPAS, label 1 (no recidivism) is more frequent for women: naming Male privileged
    used to flip nothing. Either name now cuts the demographic parity difference."""
    from trustlab.data import load_dataset
    from trustlab.metrics import audit
    from trustlab.training.tabular_models import encode_features

    ds = load_dataset("compas")
    drop = ds.meta["sensitive_features"]["sex"]
    X_tr, X_te, _ = encode_features(ds.X_train.drop(columns=drop), ds.X_test.drop(columns=drop))
    s_tr = ds.groups_train["sex"].to_numpy()
    s_te = ds.groups_test["sex"].to_numpy()

    def dp(m):
        return audit(ds.y_test, m.predict(X_te, s_te), s_te).disparities[
            "demographic_parity_difference"]

    base = make_mitigation("none").fit(make_model("logistic_regression"), X_tr, ds.y_train, s_tr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Male case warns on purpose
        m = make_mitigation("massaging", {"privileged": privileged}).fit(
            make_model("logistic_regression"), X_tr, ds.y_train, s_tr)
    assert m.n_flips_ > 0 and m.unchanged() is None
    assert np.all(s_tr[m.promoted_] == "Male")  # the group with the lower favorable rate
    # logistic regression without the sex column: 0.126 -> 0.112 (with Male named
    # privileged, nothing was flipped before and the gap stayed 0.126)
    assert dp(m) < dp(base) - 0.01


def test_a_mitigation_that_changes_nothing_is_recorded_and_warns():
    from trustlab.experiments.kinds.tabular import _mitigation_effect

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = np.tile([0, 1], 40)
    s = np.repeat(["a", "b"], 40)  # each group: half positive, so nothing to correct
    for name, key in (("reweighing", "mitigation.max_weight_change"),
                      ("massaging", "mitigation.flips"),
                      ("oversample", "mitigation.rows_added")):
        m = make_mitigation(name).fit(make_model("logistic_regression"), X, y, s)
        with pytest.warns(UserWarning, match=f"mitigation '{name}' changed nothing"):
            metrics = _mitigation_effect(m)
        assert metrics[key] == 0.0 and metrics["mitigation.changed"] == 0.0
    y_biased = np.r_[np.tile([0, 1], 20), np.tile([1, 1, 1, 0], 10)]
    m = make_mitigation("reweighing").fit(make_model("logistic_regression"), X, y_biased, s)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a mitigation that acted does not warn
        metrics = _mitigation_effect(m)
    assert metrics["mitigation.changed"] == 1.0 and metrics["mitigation.max_weight_change"] > 0
