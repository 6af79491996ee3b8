"""AIF360's metrics (signed unprivileged - privileged, inequality indices, smoothed EDF)
against AIF360 itself on real Adult predictions (1e-9), the stratified bootstrap on a
tiny group, and the audit's refusals (predictions that are no label, --ci 0)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from trustlab import audit
from trustlab.cli import main
from trustlab.errors import TrustlabError

TOL = 1e-9
SIGNED = ("statistical_parity_difference", "disparate_impact", "true_positive_rate_difference",
          "false_positive_rate_difference", "false_discovery_rate_difference",
          "false_omission_rate_difference", "error_rate_difference", "average_odds_difference",
          "average_abs_odds_difference")
INDICES = ("generalized_entropy_index", "theil_index", "coefficient_of_variation",
           "between_group_generalized_entropy_index", "between_group_theil_index",
           "between_group_coefficient_of_variation")


@pytest.fixture(scope="module")
def aif360_metrics():
    logging.getLogger().setLevel(logging.ERROR)  # AIF360 logs missing optional extras
    pytest.importorskip("aif360")
    from aif360.datasets import BinaryLabelDataset
    from aif360.metrics import BinaryLabelDatasetMetric, ClassificationMetric

    def make(df: pd.DataFrame, columns: list[str], privileged: dict | None):
        codes = {c: pd.factorize(df[c], sort=True) for c in columns}
        frame = pd.DataFrame({c: codes[c][0].astype(float) for c in columns})
        frame["label"] = df["label"].to_numpy(dtype=float)
        truth = BinaryLabelDataset(df=frame, label_names=["label"],
                                   protected_attribute_names=columns,
                                   favorable_label=1.0, unfavorable_label=0.0)
        classified = truth.copy(deepcopy=True)
        classified.labels = df["pred"].to_numpy(dtype=float).reshape(-1, 1)
        groups = {}
        if privileged:
            col, value = next(iter(privileged.items()))
            code = float(list(codes[col][1]).index(value))
            groups = {"privileged_groups": [{col: code}],
                      "unprivileged_groups": [{col: 1.0 - code}]}
        return (ClassificationMetric(truth, classified, **groups),
                BinaryLabelDatasetMetric(classified, **groups))
    return make


def test_signed_metrics_and_indices_equal_aif360(adult_predictions, aif360_metrics):
    df = adult_predictions
    ours = audit(df["label"], df["pred"], df["sex"], privileged="Male").disparities
    theirs, on_predictions = aif360_metrics(df, ["sex"], {"sex": "Male"})
    for name in SIGNED + INDICES:
        assert ours[name] == pytest.approx(getattr(theirs, name)(), abs=TOL), name
    assert ours["smoothed_empirical_differential_fairness"] == pytest.approx(
        on_predictions.smoothed_empirical_differential_fairness(), abs=TOL)
    # the convention: unprivileged (Female) minus privileged (Male), so a model that selects
    # fewer women has a negative statistical parity difference
    assert ours["statistical_parity_difference"] < 0
    # AIF360's equal_opportunity_difference is our signed true_positive_rate_difference;
    # ours keeps fairlearn's unsigned max - min under fairlearn's name
    assert ours["equal_opportunity_difference"] == pytest.approx(
        abs(theirs.equal_opportunity_difference()), abs=TOL)


@pytest.mark.parametrize("columns", [["sex"], ["sex", "race"], ["sex", "race", "age"]])
def test_all_group_indices_and_edf_equal_aif360(adult_predictions, aif360_metrics, columns):
    df = adult_predictions
    ours = audit(df["label"], df["pred"], df[columns]).disparities
    theirs, on_predictions = aif360_metrics(df, columns, None)
    for name in ("generalized_entropy_index", "theil_index", "coefficient_of_variation"):
        assert ours[name] == pytest.approx(getattr(theirs, name)(), abs=TOL), name
    for name in ("generalized_entropy_index", "theil_index", "coefficient_of_variation"):
        assert ours[f"between_all_groups_{name}"] == pytest.approx(
            getattr(theirs, f"between_all_groups_{name}")(), abs=TOL), name
    assert ours["smoothed_empirical_differential_fairness"] == pytest.approx(
        on_predictions.smoothed_empirical_differential_fairness(), abs=TOL)


def test_indices_hand_computed():
    # benefits b = yhat - y + 1: FN -> 0, right -> 1, FP -> 2
    y = np.array([1, 1, 0, 0, 1, 0])
    p = np.array([0, 1, 1, 0, 1, 1])
    b = p - y + 1.0
    mu = b.mean()
    ge2 = np.mean((b / mu) ** 2 - 1) / 2
    theil = np.mean([v / mu * np.log(v / mu) if v > 0 else 0.0 for v in b])
    d = audit(y, p, np.array(list("aabbab"))).disparities
    assert d["generalized_entropy_index"] == pytest.approx(ge2, abs=TOL)
    assert d["theil_index"] == pytest.approx(theil, abs=TOL)
    assert d["coefficient_of_variation"] == pytest.approx(np.sqrt(2 * ge2), abs=TOL)


def test_a_three_row_group_keeps_its_interval(adult_predictions):
    df = adult_predictions.iloc[:2000]
    y = np.r_[df["label"].to_numpy(), [1, 0, 1]]
    p = np.r_[df["pred"].to_numpy(), [1, 0, 1]]  # the tiny group is always right
    g = np.r_[df["sex"].to_numpy().astype(object), ["tiny"] * 3]
    r = audit(y, p, g, ci=0.95, n_boot=500)
    assert r.ci["by_group"]["tiny"]["accuracy"] == [1.0, 1.0]
    lo, hi = r.ci["disparities"]["worst_group_accuracy"]
    worst = r.disparities["worst_group_accuracy"]
    assert lo > worst - 0.05 and lo <= worst <= hi  # not dragged to 0 by empty draws


def test_predictions_that_are_no_label_are_refused_unless_multiclass(capsys, tmp_path):
    y, p, g = np.array([0, 1, 0, 1]), np.array([0, 1, 2, 1]), np.array(list("abab"))
    with pytest.raises(TrustlabError, match=r"not labels \(2;.*--multiclass"):
        audit(y, p, g)
    r = audit(y, p, g, multiclass=True)
    assert r.classes == [0, 1, 2] and r.pos_label is None
    path = tmp_path / "preds.csv"
    pd.DataFrame({"y": y, "p": p, "g": g}).to_csv(path, index=False)
    assert main(["audit", str(path), "--label", "y", "--pred", "p", "--group", "g"]) == 2
    assert "--multiclass" in capsys.readouterr().err
    assert main(["audit", str(path), "--label", "y", "--pred", "p", "--group", "g",
                 "--multiclass", "--format", "json"]) == 0
    capsys.readouterr()
    assert main(["audit", str(path), "--label", "y", "--pred", "y", "--group", "g",
                 "--ci", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ci must be a confidence level between 0 and 1" in err[0]


def test_json_says_what_the_disparities_are_relative_to(adult_predictions):
    df = adult_predictions
    d = audit(df["label"], df["pred"], df["sex"], privileged="Male").to_dict()
    assert d["groups"] == {"columns": ["sex"], "privileged": {"column": "sex", "value": "Male"}}
    d = audit(df["label"], df["pred"], df[["sex", "race"]]).to_dict()
    assert d["groups"] == {"columns": ["sex", "race"], "privileged": None}
