"""The tabular trial kind against an independent scikit-learn/fairlearn oracle, and the
same sweep on the local and Dask executors giving identical metrics per trial id."""

from __future__ import annotations

import io
import textwrap

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from trustlab.data import load_dataset
from trustlab.experiments.config import load_experiment
from trustlab.experiments.runner import run_experiment
from trustlab.experiments.store import Store
from trustlab.training.tabular_models import encode_features
from trustlab.errors import TrustlabError

GERMAN = """
name: german-{tag}
dataset: {{name: german, sensitive: sex, privileged: male{extra}}}
model: {{name: logistic_regression}}
seeds: {seeds}
grid:
  model.name: {models}
"""


def write(tmp_path, tag="t", seeds="[0]", models="[logistic_regression]", extra=""):
    path = tmp_path / f"{tag}.yaml"
    path.write_text(textwrap.dedent(GERMAN.format(tag=tag, seeds=seeds, models=models,
                                                  extra=extra)))
    return path


def test_tabular_trial_matches_sklearn_and_fairlearn(tmp_path):
    exp = load_experiment(write(tmp_path))
    out = tmp_path / "out"
    summary = run_experiment(exp, out, progress=False)
    assert summary.ok and summary.n_ok == 1
    with Store(out) as store:
        (trial,) = store.trials()
    m = trial["metrics"]

    # oracle: the same pipeline written out by hand with scikit-learn
    ds = load_dataset("german", seed=0)
    Xtr = ds.X_train.drop(columns=["sex"])
    Xte = ds.X_test.drop(columns=["sex"])
    A, B, _ = encode_features(Xtr, Xte)
    clf = LogisticRegression(max_iter=1000, random_state=0).fit(A, ds.y_train)
    pred = clf.predict(B)
    sex = ds.groups_test["sex"].to_numpy()
    assert m["n_train"] == len(ds.y_train) == 700 and m["n_test"] == 300
    assert m["accuracy"] == pytest.approx(accuracy_score(ds.y_test, pred), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(ds.y_test, pred), abs=1e-12)
    assert m["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(ds.y_test, pred, sensitive_features=sex), abs=1e-12)
    assert m["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(ds.y_test, pred, sensitive_features=sex), abs=1e-12)
    spd = pred[sex == "female"].mean() - pred[sex == "male"].mean()
    assert m["statistical_parity_difference"] == pytest.approx(spd, abs=1e-12)
    assert m["group.female.selection_rate"] == pytest.approx(pred[sex == "female"].mean())
    assert m["train_time_s"] > 0

    # the predictions artifact is the oracle's predictions
    art = out / "trials" / trial["trial_id"] / "predictions.npz"
    saved = np.load(io.BytesIO(art.read_bytes()))
    np.testing.assert_array_equal(saved["y_pred"], pred)
    np.testing.assert_allclose(saved["y_score"], clf.predict_proba(B)[:, 1], rtol=1e-6)


def test_subsample_and_sensitive_as_feature(tmp_path):
    exp = load_experiment(write(tmp_path, tag="s", extra=", subsample: 200, "
                                "use_sensitive_as_feature: true"))
    out = tmp_path / "out"
    assert run_experiment(exp, out, progress=False).ok
    with Store(out) as store:
        (trial,) = store.trials()
    assert trial["metrics"]["n_train"] == 200 and trial["metrics"]["n_test"] == 300


def test_bad_privileged_value_is_rejected_before_anything_runs(tmp_path):
    with pytest.raises(TrustlabError, match="dataset.privileged: 'martian' is not a value"):
        load_experiment(write(tmp_path, tag="p"), ["dataset.privileged=martian"])
    with pytest.raises(TrustlabError, match="needs a binary sensitive attribute"):
        load_experiment(write(tmp_path, tag="q"),
                        ["dataset.name=compas", "dataset.sensitive=race",
                         "dataset.privileged=Caucasian"])


def _metrics(out):
    with Store(out) as store:
        return {t["trial_id"]: {k: v for k, v in t["metrics"].items()
                                if not k.endswith("_time_s")}  # timings are not results
                for t in store.trials() if t["status"] == "ok"}


def test_local_and_dask_give_identical_metrics(tmp_path):
    path = write(tmp_path, tag="d", seeds="[0, 1]", models="[logistic_regression, xgboost]",
                 extra=", subsample: 0.5")
    exp = load_experiment(path)
    runs = {}
    for name, executor, workers in (("inproc", "local", 1), ("local2", "local", 2),
                                    ("dask2", "dask", 2)):
        summary = run_experiment(exp, tmp_path / name, executor=executor, workers=workers,
                                 progress=False)
        assert summary.ok and summary.n_ok == 4
        runs[name] = _metrics(tmp_path / name)
    assert set(runs["inproc"]) == {t.trial_id for t in exp.trials}
    assert runs["local2"] == runs["inproc"]
    assert runs["dask2"] == runs["inproc"]
    # the seeds matter (subsample and xgboost differ), so equality is not vacuous
    accs = {round(m["accuracy"], 12) for m in runs["inproc"].values()}
    assert len(accs) > 1


def test_mitigation_gets_the_datasets_privileged_value_and_model_is_saved(tmp_path):
    """Massaging declares `privileged`: the kind passes dataset.privileged unless the
    mitigation's own params set it; model.save pickles the fitted mitigation."""
    import pickle

    exp = load_experiment(write(tmp_path, tag="m", seeds="[0]"), [
        "mitigation={name: massaging}", "model.save=true",
        "grid.dataset.privileged=[male, female]"])
    assert exp.trials[0].config["mitigation"]["params"] == {
        "privileged": None, "ranker": "logistic_regression", "ranker_params": None}
    assert exp.trials[0].config["model"]["params"] == {"max_iter": 1000}
    out = tmp_path / "out"
    assert run_experiment(exp, out, progress=False).ok
    with Store(out) as store:
        trials = {t["params"]["dataset.privileged"]: t for t in store.trials()}
    fitted = {p: pickle.loads((out / "trials" / t["trial_id"] / "model.pkl").read_bytes())
              for p, t in trials.items()}
    assert fitted["male"].privileged_ == "male" and fitted["male"].n_flips_ > 0
    # naming the disadvantaged group privileged: massaging still promotes that group
    female = fitted["female"]
    assert female.privileged_ == "female" and female.promoted_group_ == "privileged"
    assert female.n_flips_ == fitted["male"].n_flips_
    m = trials["female"]["metrics"]
    assert m["mitigation.flips"] == female.n_flips_ and m["mitigation.changed"] == 1.0


def test_bad_model_and_mitigation_params_name_the_key(tmp_path):
    with pytest.raises(TrustlabError, match=r"model.params.n_estimatorz: unknown parameter "
                                            r"\(not an argument of RandomForestClassifier; "
                                            r"did you mean 'n_estimators'\?\)"):
        load_experiment(write(tmp_path, tag="b", models="[random_forest]"),
                        ["model.params={n_estimatorz: 3}"])
    with pytest.raises(TrustlabError, match=r"mitigation.params.max_disparity: .*less than "
                                            r"or equal to 1"):
        load_experiment(write(tmp_path, tag="c"), [
            "mitigation={name: group_thresholds, params: {max_disparity: 2}}"])
    with pytest.raises(TrustlabError, match=r"dataset.options.test_size: .*valid number"):
        load_experiment(write(tmp_path, tag="o"), ["dataset.options={test_size: '0.3'}"])
    with pytest.raises(TrustlabError, match=r"dataset.name: dataset 'mnist' is not tabular "
                                            r"\(image\)"):
        load_experiment(write(tmp_path, tag="i"), ["dataset.name=mnist"])
