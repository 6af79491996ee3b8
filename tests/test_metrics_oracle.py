"""Every audit metric against scikit-learn / fairlearn on real Adult predictions (1e-9)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as flm
from sklearn import metrics as skm

from trustlab import audit
from trustlab.errors import TrustlabError

TOL = 1e-9


def _fairlearn_frame(y, p, sf):
    return flm.MetricFrame(
        metrics={"count": flm.count, "selection_rate": flm.selection_rate,
                 "accuracy": skm.accuracy_score, "tpr": flm.true_positive_rate,
                 "fpr": flm.false_positive_rate,
                 "f1": lambda a, b: skm.f1_score(a, b, zero_division=0)},
        y_true=y, y_pred=p, sensitive_features=sf)


@pytest.mark.parametrize("columns", [["sex"], ["race"], ["sex", "race"], ["sex", "race", "age"]])
def test_group_metrics_equal_fairlearn(adult_predictions, columns):
    df = adult_predictions
    y, p, sf = df["label"], df["pred"], df[columns]
    result = audit(y, p, sf)
    frame = _fairlearn_frame(y, p, sf).by_group
    assert len(result.by_group) == len(frame)
    for idx, row in frame.iterrows():
        key = "|".join(map(str, idx if isinstance(idx, tuple) else (idx,)))
        ours = result.by_group[key]
        for metric in ("count", "selection_rate", "accuracy", "tpr", "fpr", "f1"):
            assert ours[metric] == pytest.approx(row[metric], abs=TOL), (key, metric)

    d = result.disparities
    kw = {"sensitive_features": sf}
    assert d["demographic_parity_difference"] == pytest.approx(
        flm.demographic_parity_difference(y, p, **kw), abs=TOL)
    assert d["demographic_parity_ratio"] == pytest.approx(
        flm.demographic_parity_ratio(y, p, **kw), abs=TOL)
    assert d["equalized_odds_difference"] == pytest.approx(
        flm.equalized_odds_difference(y, p, **kw), abs=TOL)
    assert d["equal_opportunity_difference"] == pytest.approx(
        flm.equal_opportunity_difference(y, p, **kw), abs=TOL)
    fpr = flm.MetricFrame(metrics=flm.false_positive_rate, y_true=y, y_pred=p, **kw)
    assert d["false_positive_rate_difference"] == pytest.approx(fpr.difference(), abs=TOL)
    assert d["worst_group_accuracy"] == pytest.approx(
        flm.accuracy_score_group_min(y, p, **kw), abs=TOL)
    assert d["accuracy_difference"] == pytest.approx(
        flm.accuracy_score_difference(y, p, **kw), abs=TOL)


def test_overall_metrics_equal_sklearn(adult_predictions):
    df = adult_predictions
    y, p = df["label"].to_numpy(), df["pred"].to_numpy()
    result = audit(y, p, df["sex"], y_score=df["score"])
    o = result.overall
    assert o["accuracy"] == pytest.approx(skm.accuracy_score(y, p), abs=TOL)
    assert o["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p), abs=TOL)
    assert o["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"), abs=TOL)
    assert o["precision"] == pytest.approx(skm.precision_score(y, p), abs=TOL)
    assert o["recall"] == pytest.approx(skm.recall_score(y, p), abs=TOL)
    assert o["f1"] == pytest.approx(skm.f1_score(y, p), abs=TOL)
    assert o["roc_auc"] == pytest.approx(skm.roc_auc_score(y, df["score"]), abs=TOL)
    assert o["confusion_matrix"]["matrix"] == skm.confusion_matrix(y, p).tolist()
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, p)
    for i, cls in enumerate(["0", "1"]):
        pc = o["per_class"][cls]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx(
            (prec[i], rec[i], f1[i], sup[i]), abs=TOL)
    for sex in ("Female", "Male"):
        mask = (df["sex"] == sex).to_numpy()
        assert result.by_group[sex]["roc_auc"] == pytest.approx(
            skm.roc_auc_score(y[mask], df["score"].to_numpy()[mask]), abs=TOL)


def test_privileged_contrast_hand_computed(adult_predictions):
    df = adult_predictions
    p = df["pred"].to_numpy()
    female = (df["sex"] == "Female").to_numpy()
    sel_f, sel_m = p[female].mean(), p[~female].mean()
    d = audit(df["label"], p, df["sex"], privileged="Male").disparities
    assert d["statistical_parity_difference"] == pytest.approx(sel_f - sel_m, abs=TOL)
    assert d["disparate_impact"] == pytest.approx(sel_f / sel_m, abs=TOL)
    assert d["zemel_metric"] == pytest.approx(sel_m - sel_f, abs=TOL)  # the income notebook's definition
    # An intersection is not a binary group: the contrast would be ambiguous.
    with pytest.raises(TrustlabError, match="exactly one binary group column"):
        audit(df["label"], p, df[["sex", "race"]], privileged="Male")


def test_multiclass_matches_sklearn(rng):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=0)
    pred = LogisticRegression(max_iter=200).fit(Xtr[:200], ytr[:200]).predict(Xte)
    groups = pd.DataFrame({"a": rng.choice(["x", "y"], len(yte)),
                           "b": rng.choice(["u", "v", "w"], len(yte))})
    result = audit(yte, pred, groups)
    o = result.overall
    assert o["accuracy"] == pytest.approx(skm.accuracy_score(yte, pred), abs=TOL)
    assert o["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(yte, pred), abs=TOL)
    assert o["macro_f1"] == pytest.approx(skm.f1_score(yte, pred, average="macro"), abs=TOL)
    prec, rec, f1, sup = skm.precision_recall_fscore_support(yte, pred, zero_division=0)
    for i in range(10):
        pc = o["per_class"][str(i)]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx(
            (prec[i], rec[i], f1[i], sup[i]), abs=TOL)
    assert o["confusion_matrix"]["matrix"] == skm.confusion_matrix(yte, pred).tolist()
    frame = flm.MetricFrame(metrics=skm.accuracy_score, y_true=yte, y_pred=pred,
                            sensitive_features=groups)
    for (a, b), acc in frame.by_group.items():
        assert result.by_group[f"{a}|{b}"]["accuracy"] == pytest.approx(acc, abs=TOL)
    assert result.disparities["worst_group_accuracy"] == pytest.approx(frame.group_min(), abs=TOL)
    assert "demographic_parity_difference" not in result.disparities


def test_string_labels_and_explicit_pos_label(rng):
    y = rng.choice(["no", "yes"], 500)
    p = rng.choice(["no", "yes"], 500)
    g = rng.choice(["a", "b"], 500)
    r = audit(y, p, g, pos_label="no")
    assert r.overall["pos_label"] == "no"
    assert r.overall["precision"] == pytest.approx(
        skm.precision_score(y, p, pos_label="no"), abs=TOL)
    for grp in ("a", "b"):
        m = g == grp
        assert r.by_group[grp]["selection_rate"] == pytest.approx((p[m] == "no").mean(), abs=TOL)


def test_zero_denominators_follow_sklearn():
    # group "b" has no positives: TPR 0 (zero_division), as fairlearn reports it
    y = np.array([1, 0, 1, 0, 0, 0])
    p = np.array([1, 1, 0, 0, 1, 0])
    g = np.array(["a", "a", "a", "a", "b", "b"])
    r = audit(y, p, g)
    assert r.by_group["b"]["tpr"] == 0.0
    assert r.by_group["b"]["fpr"] == pytest.approx(0.5)
    fl = flm.MetricFrame(metrics=flm.true_positive_rate, y_true=y, y_pred=p, sensitive_features=g)
    assert r.by_group["b"]["tpr"] == pytest.approx(fl.by_group["b"])


def test_bootstrap_ci_brackets_estimate_and_matches_row_bootstrap(adult_predictions):
    df = adult_predictions.iloc[:4000]
    r = audit(df["label"], df["pred"], df["sex"], privileged="Male", ci=0.9, n_boot=2000)
    lo, hi = r.ci["disparities"]["statistical_parity_difference"]
    est = r.disparities["statistical_parity_difference"]
    assert lo < est < hi
    # The count-level bootstrap must agree with the textbook row-resampling bootstrap,
    # stratified as ours is: rows are drawn with replacement within each group.
    rng = np.random.default_rng(1)
    p, s = df["pred"].to_numpy(), df["sex"].to_numpy()
    p_f, p_m = p[s == "Female"], p[s != "Female"]
    spd = []
    for _ in range(2000):
        spd.append(rng.choice(p_f, len(p_f)).mean() - rng.choice(p_m, len(p_m)).mean())
    ref_lo, ref_hi = np.percentile(spd, [5, 95])
    width = ref_hi - ref_lo
    assert abs(lo - ref_lo) < 0.1 * width and abs(hi - ref_hi) < 0.1 * width


def test_to_dict_shape_and_flat_names(adult_predictions):
    df = adult_predictions
    r = audit(df["label"], df["pred"], df["sex"], privileged="Male")
    d = r.to_dict()
    assert set(d) == {"n", "groups", "overall", "by_group", "disparities"}
    assert d["n"] == len(df)
    flat = r.flat_metrics()
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "demographic_parity_difference",
                 "statistical_parity_difference", "disparate_impact",
                 "equalized_odds_difference", "group.Female.selection_rate", "group.Male.tpr"):
        assert name in flat
    assert flat["group.Female.count"] + flat["group.Male.count"] == len(df)


def test_macro_f1_ignores_classes_no_row_has():
    # all labels and predictions 1: scikit-learn averages over the labels it sees
    y = np.ones(20, dtype=int)
    r = audit(y, y, np.array(["a", "b"] * 10))
    assert r.overall["macro_f1"] == pytest.approx(skm.f1_score(y, y, average="macro"))
    assert r.overall["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, y))
    # a model that predicts the other class everywhere is a valid 0/1 audit, not an error
    r = audit(y, 1 - y, np.array(["a", "b"] * 10))
    assert r.overall["accuracy"] == 0.0
    assert r.overall["macro_f1"] == pytest.approx(skm.f1_score(y, 1 - y, average="macro"))


@pytest.mark.parametrize("y, p, groups, needle", [
    (["yes", "no"], [0, 1], ["a", "b"], "no predicted value occurs among the labels"),
    ([5, 7], [0, 1], ["a", "b"], "no predicted value occurs among the labels"),
    ([0, 1], [0, 1], {"a": ["x|y", "x"], "b": ["z", "y|z"]}, "'|' joins"),
    ([0, 1], [0, 1], pd.DataFrame([["a", "a"], ["b", "b"]], columns=["g", "g"]), "more than once"),
])
def test_inconsistent_inputs_are_errors(y, p, groups, needle):
    with pytest.raises(TrustlabError, match=needle):
        audit(np.array(y), np.array(p), groups)


def test_non_numeric_scores_are_an_error():
    with pytest.raises(TrustlabError, match="scores must be numbers"):
        audit(np.array([0, 1]), np.array([0, 1]), np.array(["a", "b"]),
              y_score=np.array(["high", "low"], dtype=object))
