"""Attack4Good (fairness poisoning): the attack package and the poisoning kind against
scikit-learn/fairlearn oracles, on German credit (1,000 real rows) with small forests so
the file stays fast."""

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

from trustlab.attacks.fairness_poisoning import (OPTIMIZERS, AttackResult, Optimizer,
                                                 PoisonSet, attack, make_objective, prepare)
from trustlab.attacks.fairness_poisoning.optimizers import GradientSearch
from trustlab.data import load_dataset
from trustlab.errors import TrustlabError
from trustlab.experiments.kinds import TrialContext
from trustlab.experiments.kinds.poisoning import PoisoningConfig, run
from trustlab import registry
from trustlab.registry import ParamError
from trustlab.training.tabular_models import make_model

N_TREES = 15


def config(**attack_kw) -> PoisoningConfig:
    a = {"optimizer": "bayesian", "n_points": 10, "n_trials": 12, **attack_kw}
    return PoisoningConfig(
        dataset={"name": "german", "sensitive": "sex", "privileged": "male"},
        victim={"name": "random_forest", "params": {"n_estimators": N_TREES}}, attack=a)


def german_data(seed: int = 0, n_points: int = 10):
    """What a trial of ``config()`` with this seed prepares (no subsample)."""
    ds = load_dataset("german", seed=seed)
    return prepare(ds, "sex", privileged="male", val_fraction=0.3, n_points=n_points,
                   poison_label=1, poison_group="unprivileged", seed=seed)


def objective_for(data, seed: int, victim: str = "random_forest", params=None, **kw):
    params = {"n_estimators": N_TREES} if params is None else params
    kw.setdefault("objective", "fpr_difference")
    return make_objective(data, lambda: make_model(victim, params, seed=seed), **kw)


@pytest.fixture(scope="module")
def german():
    return config(), german_data(0)


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
    space, X_fit = data.space, data.fit.X
    lo, hi = X_fit.min(axis=0), X_fit.max(axis=0)
    names = data.feature_names
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
    objective = objective_for(data, seed=0)
    poison = data.space.random(np.random.default_rng(7))
    ev = objective.evaluate(poison)
    model = oracle_forest(data.fit.X, data.fit.y, poison, seed=0)
    val = data.validation
    expected = oracle_gaps(val.y, model.predict(val.X), val.group)
    assert ev.accuracy == pytest.approx(expected["accuracy"], abs=1e-12)
    assert ev.fpr_difference == pytest.approx(expected["fpr_difference"], abs=1e-12)
    assert ev.demographic_parity_difference == pytest.approx(
        expected["demographic_parity_difference"], abs=1e-12)
    assert ev.objective == ev.gap == pytest.approx(expected["fpr_difference"], abs=1e-12)
    # hand check of |FPR_female - FPR_male| on the validation split
    pred, y, g = model.predict(val.X), val.y, val.group
    fpr = {v: pred[(g == v) & (y == 0)].mean() for v in ("female", "male")}
    assert ev.fpr_difference == pytest.approx(abs(fpr["female"] - fpr["male"]), abs=1e-12)

    # an accuracy floor above the candidate's accuracy adds the penalty, below it does not
    floored = objective_for(data, seed=0, accuracy_floor=0.99).evaluate(poison)
    assert floored.objective == pytest.approx(ev.gap + 1.0 + (0.99 - ev.accuracy))
    assert objective_for(data, seed=0, accuracy_floor=0.1).evaluate(
        poison).objective == pytest.approx(ev.gap)


@pytest.mark.parametrize("optimizer", ["bayesian", "random", "gradient"])
def test_budget_and_determinism(german, optimizer):
    cfg, data = german
    runs = [attack(objective_for(data, seed=3), data.space, optimizer=optimizer,
                   n_trials=6, seed=3) for _ in range(2)]
    for r in runs:
        assert r.n_evaluations == 6
        values = [e.objective for e in r.trace]
        assert r.best_evaluation.objective == min(values)
        assert data.space.box.contains(r.best.X)
    np.testing.assert_array_equal(runs[0].best.X, runs[1].best.X)
    np.testing.assert_array_equal(runs[0].best.y, runs[1].best.y)
    assert [e.objective for e in runs[0].trace] == [e.objective for e in runs[1].trace]
    # another seed searches elsewhere
    other = attack(objective_for(data, seed=4), data.space, optimizer=optimizer,
                   n_trials=2, seed=4)
    assert not np.array_equal(other.best.X, runs[0].best.X)


def test_gradient_variant_lowers_the_gap_of_a_logistic_victim():
    data = german_data(0, n_points=20)
    objective = objective_for(data, seed=0, victim="logistic_regression", params={})
    clean = objective.evaluate(None).objective
    r = attack(objective, data.space, optimizer="gradient", n_trials=12, seed=0)
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
    assert poison.X.shape == (10, data.fit.X.shape[1])
    assert list(saved["feature_names"]) == data.feature_names
    y, g = data.test.y, data.test.group
    for prefix, p in (("clean", None), ("poisoned", poison)):
        model = oracle_forest(data.fit.X, data.fit.y, p, seed=0)
        expected = oracle_gaps(y, model.predict(data.test.X), g)
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
    model = oracle_forest(data.fit.X, data.fit.y, poison, seed=0)
    val = data.validation
    assert oracle_gaps(val.y, model.predict(val.X), val.group)["fpr_difference"] == \
        pytest.approx(m["best_validation_objective"], abs=1e-12)


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
    from conftest import assert_fits_in_chromium, section_titles
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
    titles = section_titles(page)
    assert titles[:2] == ["Findings", "Fairness poisoning: before → after"]
    assert "test FPR gap" in page
    assert_fits_in_chromium(out / "report.html", 1400, tmp_path)


@pytest.mark.parametrize("override, message", [
    ("attack.optimizer=annealing", "attack.optimizer: unknown poisoning optimizer 'annealing'"),
    ("victim.name=svm", "victim.name: unknown victim 'svm'"),
    ("attack.objective=accuracy", "attack.objective: Input should be 'fpr_difference' or"),
    ("attack.poison_label=2", "attack.poison_label: Input should be 0, 1 or 'optimize'"),
    ("attack.poison_label=true", "attack.poison_label: expected a number"),
    ("attack.poison_group=women", "attack.poison_group: Input should be 'unprivileged'"),
    ("attack.n_trials=0", "attack.n_trials"),
    ("attack.budget=3", "attack.budget: unknown parameter"),
    # an optimizer's parameters are checked against the chosen optimizer
    ("attack.learning_rate=0.1", "attack.learning_rate: unknown parameter"),
    ("attack.optimizer=gradient;attack.learning_rate=0",
     "attack.learning_rate: Input should be greater than 0"),
    ("attack.optimizer=gradient;attack.inner_steps=0", "attack.inner_steps"),
    ("dataset.sensitive=age;dataset.privileged='>25'",
     "dataset.use_sensitive_as_feature: the sensitive attribute 'age' of 'german' is not a "
     "categorical feature column of its own"),
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


# -- the optimizers registry ---------------------------------------------------------------
def test_optimizers_declare_their_parameters_once():
    assert OPTIMIZERS.names() == ["bayesian", "random", "gradient"]
    for name, entry in OPTIMIZERS.items():
        assert issubclass(entry, Optimizer) and entry.name == name
        assert (entry.__doc__ or "").strip().splitlines()[0]
    assert set(OPTIMIZERS.params("bayesian").model_fields) == {"batch_size"}
    g = GradientSearch()
    assert (g.learning_rate, g.inner_steps, g.inner_lr) == (0.3, 20, 1.0)
    assert GradientSearch(learning_rate=0.05).params.to_dict() == {
        "learning_rate": 0.05, "inner_steps": 20, "inner_lr": 1.0}
    for bad, key in [({"learning_rate": 0}, "learning_rate"), ({"inner_steps": 0}, "inner_steps"),
                     ({"inner_lr": -1.0}, "inner_lr"), ({"inner_steps": True}, "inner_steps")]:
        with pytest.raises(ParamError, match=f"^{key}: ") as err:
            GradientSearch(**bad)
        assert err.value.key == key
    with pytest.raises(ParamError, match="learning_rate: unknown parameter"):
        OPTIMIZERS.get("bayesian")(learning_rate=0.1)


def test_attack_api_errors(german):
    _, data = german
    objective = objective_for(data, seed=0)
    with pytest.raises(TrustlabError, match="unknown poisoning optimizer 'annealing'"):
        attack(objective, data.space, optimizer="annealing", n_trials=2, seed=0)
    with pytest.raises(TrustlabError, match="n_trials must be an integer >= 1"):
        attack(objective, data.space, optimizer="random", n_trials=0, seed=0)
    with pytest.raises(ParamError, match="inner_steps"):
        attack(objective, data.space, optimizer="gradient", n_trials=2, seed=0, inner_steps=0)


def test_gradient_parameters_written_flat_in_the_attack_block():
    cfg = config(optimizer="gradient", learning_rate=0.1, inner_steps=3)
    assert cfg.attack.entry is GradientSearch
    assert cfg.attack.entry_params == {"learning_rate": 0.1, "inner_steps": 3, "inner_lr": 1.0}
    dumped = cfg.model_dump()["attack"]
    assert dumped["optimizer"] == "gradient" and dumped["inner_steps"] == 3
    assert config().attack.entry_params == {"batch_size": 4}  # bayesian's own default
    # the victim block is a models-registry choice restricted to the victims
    assert cfg.victim.name == "random_forest" and cfg.victim.params["n_estimators"] == N_TREES


class FirstDraws(Optimizer):
    """Toy optimizer: uniform draws from the poison space."""

    name = "first_draws"

    class Params(registry.Params):
        spread: int = 1

    def search(self, objective, space, *, n_trials, seed, threads=1):
        self._check_budget(n_trials)
        rng = np.random.default_rng(seed + self.spread)
        candidates = [space.random(rng) for _ in range(n_trials)]
        return AttackResult.of(candidates, [objective.evaluate(p) for p in candidates])


def test_an_optimizer_is_one_class_and_one_registry_line(german):
    OPTIMIZERS.register(FirstDraws)
    try:
        cfg = config(optimizer="first_draws", n_trials=3, spread=2)
        assert cfg.attack.entry_params == {"spread": 2}
        out = run(cfg, 0, TrialContext("t", 1))
        trace = json.loads(out.artifacts["trace.json"])
        assert trace["optimizer"] == "first_draws" and len(trace["evaluations"]) == 3
        assert out.metrics["n_evaluations"] == 3
    finally:
        OPTIMIZERS.unregister("first_draws")
    assert "first_draws" not in OPTIMIZERS


def test_prepare_takes_plain_arguments_and_names_bad_ones():
    ds = load_dataset("german", seed=0)
    kw = dict(val_fraction=0.3, n_points=4, poison_label="optimize", poison_group="optimize",
              seed=0)
    data = prepare(ds, "sex", use_sensitive_as_feature=False, **kw)
    assert (data.unprivileged, data.privileged) == ("female", "male")  # sorted, no privileged
    assert not any(n.startswith("sex_") for n in data.feature_names)
    assert data.space.box.group_columns == {} and data.space.group == "optimize"
    assert len(data.fit) + len(data.validation) == len(ds.train_idx)
    assert len(data.test) == len(ds.test_idx)
    with pytest.raises(ParamError, match="'martian' is not a value of 'sex'") as err:
        prepare(ds, "sex", privileged="martian", **kw)
    assert err.value.key == "privileged"
    with pytest.raises(ParamError) as err:
        prepare(ds, "age", privileged=">25", **kw)
    assert err.value.key == "use_sensitive_as_feature"


# -- protocols, the robust objective, the batched search --------------------------------------
def test_attack4good_protocol_scores_on_test_rows_and_is_labelled(german, tmp_path):
    _, data = german
    leaky = objective_for(data, 0, protocol="attack4good")
    assert np.array_equal(leaky.X_val, data.test.X) and np.array_equal(leaky.y_val, data.test.y)
    poison = data.space.random(np.random.default_rng(3))
    ev = leaky.evaluate(poison)
    model = oracle_forest(data.fit.X, data.fit.y, poison, 0)
    want = oracle_gaps(data.test.y, model.predict(data.test.X), data.test.group)
    assert ev.fpr_difference == pytest.approx(want["fpr_difference"], abs=1e-12)
    assert ev.accuracy == pytest.approx(want["accuracy"], abs=1e-12)
    # a trial with the protocol says so in its metrics, its trace and its report
    out = run(config(protocol="attack4good", n_trials=4), 0, TrialContext("t", 1))
    assert out.metrics["protocol_leaky"] == 1.0
    trace = json.loads(out.artifacts["trace.json"])
    assert trace["protocol"] == "attack4good" and "TEST" in trace["scored_on"]
    assert run(config(n_trials=4), 0, TrialContext("t", 1)).metrics["protocol_leaky"] == 0.0
    with pytest.raises(ParamError, match="robust.folds"):
        objective_for(data, 0, protocol="attack4good", robust={"folds": 2})


def test_robust_objective_is_the_mean_of_its_parts(german):
    from sklearn.model_selection import StratifiedKFold

    _, data = german
    robust = {"refits": 2, "folds": 3, "spread_penalty": 0.5}
    obj = make_objective(data, lambda seed=0: make_model("random_forest",
                                                          {"n_estimators": N_TREES}, seed=seed),
                         objective="fpr_difference", robust=robust, seed=7)
    poison = data.space.random(np.random.default_rng(1))
    ev = obj.evaluate(poison)
    # by hand: pool the attacker's rows, 3 stratified folds, 2 victim seeds per fold
    X = np.vstack([data.fit.X, data.validation.X])
    y = np.concatenate([data.fit.y, data.validation.y])
    g = np.concatenate([data.fit.group, data.validation.group])
    gaps = []
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=7).split(X, y):
        for victim_seed in (7 * 1009 + 1, 7 * 1009 + 2):
            model = oracle_forest(X[tr], y[tr], poison, victim_seed)
            gaps.append(oracle_gaps(y[te], model.predict(X[te]), g[te])["fpr_difference"])
    assert ev.n_refits == 6 and len(obj.parts) == 6
    assert ev.gap == pytest.approx(np.mean(gaps), abs=1e-12)
    assert ev.gap_spread == pytest.approx(np.std(gaps), abs=1e-12)
    assert ev.objective == pytest.approx(np.mean(gaps) + 0.5 * np.std(gaps), abs=1e-12)


@pytest.mark.parametrize("optimizer", ["bayesian", "random"])
def test_parallel_search_finds_what_the_sequential_one_finds(german, optimizer):
    _, data = german
    obj = objective_for(data, 0)
    runs = [attack(obj, data.space, optimizer=optimizer, n_trials=8, seed=3, threads=t,
                   batch_size=4) for t in (1, 4)]
    assert [e.objective for e in runs[0].trace] == [e.objective for e in runs[1].trace]
    assert np.array_equal(runs[0].best.X, runs[1].best.X)
    if optimizer == "random":  # the random sampler ignores the history: batches change nothing
        one_by_one = attack(obj, data.space, optimizer="random", n_trials=8, seed=3,
                            batch_size=1)
        assert np.array_equal(one_by_one.best.X, runs[0].best.X)


def test_budget_curve_in_the_report(tmp_path, capsys):
    from trustlab.cli import main

    path = tmp_path / "budget.yaml"
    path.write_text(textwrap.dedent(f"""
        name: budget
        kind: poisoning
        dataset: {{name: german, sensitive: sex, privileged: male}}
        victim: {{name: random_forest, params: {{n_estimators: {N_TREES}}}}}
        attack: {{optimizer: random, n_trials: 2}}
        seeds: [0, 1]
        grid:
          attack.n_points: [2, 6]
          attack.protocol: [leak_free, attack4good]
    """))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 0
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Fairness poisoning: budget curve" in page and "poisoning budget curve" in page
    assert "use the Attack4Good protocol" in page and "LEAKY: searched on test" in page
