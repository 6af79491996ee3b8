"""Attack4Good (S4): the poisoning kind against scikit-learn/fairlearn oracles, on German
credit (1,000 real rows) with small forests so the file stays fast."""

from __future__ import annotations

import io
import json
import re
import textwrap

import numpy as np
import pytest
from fairlearn.metrics import (demographic_parity_difference,
                               false_positive_rate_difference)
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score

from trustlab.attacks.fairness_poisoning import PoisonSet, attack
from trustlab.errors import TrustlabError
from trustlab.experiments.kinds import TrialContext
from trustlab.experiments.kinds.poisoning import (PoisoningConfig, make_objective, prepare,
                                                  run)

N_TREES = 15


def config(**attack_kw) -> PoisoningConfig:
    a = {"optimizer": "bayesian", "n_points": 10, "n_trials": 12, **attack_kw}
    return PoisoningConfig(
        dataset={"name": "german", "sensitive": "sex", "privileged": "male"},
        victim={"name": "random_forest", "params": {"n_estimators": N_TREES}}, attack=a)


@pytest.fixture(scope="module")
def german():
    cfg = config()
    return cfg, prepare(cfg, 0)


def oracle_gaps(y, pred, g):
    return {"accuracy": accuracy_score(y, pred),
            "fpr_difference": false_positive_rate_difference(y, pred, sensitive_features=g),
            "demographic_parity_difference":
                demographic_parity_difference(y, pred, sensitive_features=g)}


def oracle_forest(X_fit, y_fit, poison: PoisonSet | None, seed: int):
    X, y = X_fit, y_fit
    if poison is not None:
        X, y = np.vstack([X_fit, poison.X]), np.concatenate([y_fit, poison.y])
    return RandomForestClassifier(n_estimators=N_TREES, random_state=seed,
                                  n_jobs=1).fit(X, y)


def test_poison_points_stay_in_the_feature_box(german):
    import optuna

    cfg, data = german
    space, X_fit = data["space"], data["X_fit"]
    lo, hi = X_fit.min(axis=0), X_fit.max(axis=0)
    names = data["feature_names"]
    # the one-hot blocks, recovered independently from the encoder's feature names
    sex_cols = [i for i, n in enumerate(names) if n.startswith("sex_")]
    assert [names[i] for i in sex_cols] == ["sex_female", "sex_male"]
    candidates = [space.random(np.random.default_rng(s)) for s in range(3)]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(3):
        candidates.append(space.suggest(study.ask()))
    for p in candidates:
        assert p.X.shape == (10, X_fit.shape[1])
        assert np.all(p.X >= lo - 1e-12) and np.all(p.X <= hi + 1e-12)
        for block in space.box.all_blocks():
            assert np.all(p.X[:, block].sum(axis=1) == 1)
            assert set(np.unique(p.X[:, block])) <= {0.0, 1.0}
        # group unprivileged (female) is written into the sex block, label fixed at 1
        assert np.all(p.X[:, sex_cols[0]] == 1) and np.all(p.group == "female")
        assert np.all(p.y == 1)
        assert space.box.contains(p.X)
    # numeric columns really vary (the box is searched, not collapsed)
    num = space.box.numeric
    assert np.ptp(np.vstack([p.X for p in candidates])[:, num], axis=0).min() > 0


def test_objective_matches_sklearn_and_fairlearn(german):
    cfg, data = german
    objective = make_objective(cfg, data, seed=0)
    poison = data["space"].random(np.random.default_rng(7))
    ev = objective.evaluate(poison)
    model = oracle_forest(data["X_fit"], data["y_fit"], poison, seed=0)
    expected = oracle_gaps(data["y_val"], model.predict(data["X_val"]), data["g_val"])
    assert ev.accuracy == pytest.approx(expected["accuracy"], abs=1e-12)
    assert ev.fpr_difference == pytest.approx(expected["fpr_difference"], abs=1e-12)
    assert ev.demographic_parity_difference == pytest.approx(
        expected["demographic_parity_difference"], abs=1e-12)
    assert ev.objective == ev.gap == pytest.approx(expected["fpr_difference"], abs=1e-12)
    # hand check of |FPR_female - FPR_male| on the validation split
    pred, y, g = model.predict(data["X_val"]), data["y_val"], data["g_val"]
    fpr = {v: pred[(g == v) & (y == 0)].mean() for v in ("female", "male")}
    assert ev.fpr_difference == pytest.approx(abs(fpr["female"] - fpr["male"]), abs=1e-12)

    # an accuracy floor above the candidate's accuracy adds the penalty, below it does not
    floored = make_objective(config(accuracy_floor=0.99), data, seed=0).evaluate(poison)
    assert floored.objective == pytest.approx(ev.gap + 1.0 + (0.99 - ev.accuracy))
    assert make_objective(config(accuracy_floor=0.1), data, seed=0).evaluate(
        poison).objective == pytest.approx(ev.gap)


@pytest.mark.parametrize("optimizer", ["bayesian", "random", "gradient"])
def test_budget_and_determinism(german, optimizer):
    cfg, data = german
    runs = [attack(make_objective(cfg, data, seed=3), data["space"], optimizer=optimizer,
                   n_trials=6, seed=3) for _ in range(2)]
    for r in runs:
        assert r.n_evaluations == 6
        values = [e.objective for e in r.trace]
        assert r.best_evaluation.objective == min(values)
        assert data["space"].box.contains(r.best.X)
    np.testing.assert_array_equal(runs[0].best.X, runs[1].best.X)
    np.testing.assert_array_equal(runs[0].best.y, runs[1].best.y)
    assert [e.objective for e in runs[0].trace] == [e.objective for e in runs[1].trace]
    # another seed searches elsewhere
    other = attack(make_objective(cfg, data, seed=4), data["space"], optimizer=optimizer,
                   n_trials=2, seed=4)
    assert not np.array_equal(other.best.X, runs[0].best.X)


def test_gradient_variant_lowers_the_gap_of_a_logistic_victim():
    cfg = PoisoningConfig(dataset={"name": "german", "sensitive": "sex",
                                   "privileged": "male"},
                          victim={"name": "logistic_regression"},
                          attack={"optimizer": "gradient", "n_points": 20, "n_trials": 12})
    data = prepare(cfg, 0)
    objective = make_objective(cfg, data, seed=0)
    clean = objective.evaluate(None).objective
    r = attack(objective, data["space"], optimizer="gradient", n_trials=12, seed=0)
    # the first evaluation is the random start; the descent must improve on it and on clean
    assert r.best_evaluation.objective < r.trace[0].objective
    assert r.best_evaluation.objective < clean


def test_trial_reports_what_its_saved_poison_reproduces(german):
    cfg, data = german
    out = run(cfg, 0, TrialContext("t", 1))
    m = out.metrics
    trace = json.loads(out.artifacts["trace.json"])
    values = [e["objective"] for e in trace["evaluations"]]
    assert m["n_evaluations"] == len(values) == 12
    assert m["best_validation_objective"] == min(values)
    assert m["best_validation_objective"] <= m["clean_validation_objective"]

    saved = np.load(io.BytesIO(out.artifacts["poison.npz"]))
    poison = PoisonSet(X=saved["X"], y=saved["y"].astype(np.int64), group=saved["group"])
    assert poison.X.shape == (10, data["X_fit"].shape[1])
    assert list(saved["feature_names"]) == data["feature_names"]
    y, g = data["y_test"], data["g_test"]
    for prefix, p in (("clean", None), ("poisoned", poison)):
        model = oracle_forest(data["X_fit"], data["y_fit"], p, seed=0)
        expected = oracle_gaps(y, model.predict(data["X_test"]), g)
        for name, value in expected.items():
            assert m[f"{prefix}_{name}"] == pytest.approx(value, abs=1e-12), (prefix, name)
    assert m["fairness_gain"] == pytest.approx(
        m["clean_fpr_difference"] - m["poisoned_fpr_difference"])
    # the flattened audit describes the poisoned model (the generic scatter's point)
    assert m["accuracy"] == m["poisoned_accuracy"]
    assert m["demographic_parity_difference"] == pytest.approx(
        m["poisoned_demographic_parity_difference"])
    spd = m["group.female.selection_rate"] - m["group.male.selection_rate"]
    assert m["statistical_parity_difference"] == pytest.approx(spd)
    # the validation objective of the best poison is reproduced too
    model = oracle_forest(data["X_fit"], data["y_fit"], poison, seed=0)
    assert oracle_gaps(data["y_val"], model.predict(data["X_val"]), data["g_val"])[
        "fpr_difference"] == pytest.approx(m["best_validation_objective"], abs=1e-12)


EXPERIMENT = """
name: a4g-test
kind: poisoning
dataset: {name: german, sensitive: sex, privileged: male}
victim: {name: random_forest, params: {n_estimators: 10}}
attack: {optimizer: bayesian, n_points: 5, n_trials: 4}
seeds: [0]
grid:
  attack.optimizer: [bayesian, random]
"""


def test_cli_run_results_and_report(tmp_path, capsys):
    from trustlab.cli import main

    path = tmp_path / "a4g.yaml"
    path.write_text(textwrap.dedent(EXPERIMENT))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["results", str(out), "--format", "json"]) == 0
    trials = json.loads(capsys.readouterr().out)
    assert len(trials) == 2 and all(t["status"] == "ok" for t in trials)
    assert {t["params"]["attack.optimizer"] for t in trials} == {"bayesian", "random"}
    for t in trials:
        assert t["metrics"]["n_evaluations"] == 4
        assert (out / "trials" / t["trial_id"] / "poison.npz").is_file()
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Fairness poisoning: before → after" in page
    assert "Fairness poisoning: optimization trace" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) >= 3


@pytest.mark.parametrize("override, message", [
    ("attack.optimizer=annealing", "attack.optimizer: unknown optimizer 'annealing'"),
    ("victim.name=svm", "victim.name: unknown victim 'svm'"),
    ("attack.objective=accuracy", "attack.objective: unknown objective 'accuracy'"),
    ("attack.poison_label=2", "attack.poison_label must be 0, 1 or optimize"),
    ("attack.poison_group=women", "attack.poison_group must be"),
    ("attack.n_trials=0", "attack.n_trials"),
    ("attack.budget=3", "attack.budget"),
    ("dataset.sensitive=age;dataset.privileged='>25'",
     "not a categorical feature column of its own"),
    ("dataset.privileged=martian", "dataset.privileged: 'martian' is not a value"),
])
def test_bad_configs_give_one_line_errors(tmp_path, capsys, override, message):
    from trustlab.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(EXPERIMENT))
    sets = [arg for o in override.split(";") for arg in ("--set", o)]
    code = main(["run", str(path), "--out", str(tmp_path / "o"), *sets])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_poison_group_needs_privileged():
    from trustlab.experiments.kinds.poisoning import validate

    cfg = PoisoningConfig(dataset={"name": "german", "sensitive": "sex"},
                          victim={"name": "random_forest"})
    with pytest.raises(TrustlabError, match="needs dataset.privileged"):
        validate(cfg)
    validate(PoisoningConfig(dataset={"name": "german", "sensitive": "sex"},
                             attack={"poison_group": "optimize"}))
