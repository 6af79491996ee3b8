"""Experiment files: validation, --set overrides, grid expansion, trial ids, bad input."""

from __future__ import annotations

import textwrap

import pytest

from trustlab.cli import main
from trustlab.errors import TrustlabError
from trustlab.experiments.config import build_experiment, load_experiment, trial_id

BASE = """
name: income-fairness
kind: tabular
dataset: {name: adult, sensitive: sex, privileged: Male}
model: {name: logistic_regression}
mitigation: {name: none}
seeds: [0, 1, 2]
grid:
  model.name: [logistic_regression, xgboost]
"""


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_grid_times_seeds_with_stable_unique_ids(tmp_path):
    exp = load_experiment(write(tmp_path, BASE))
    assert exp.name == "income-fairness" and exp.kind == "tabular"
    assert len(exp.trials) == 2 * 3
    assert len({t.trial_id for t in exp.trials}) == 6
    assert [(t.config["model"]["name"], t.seed) for t in exp.trials] == [
        (m, s) for m in ("logistic_regression", "xgboost") for s in (0, 1, 2)]
    # defaults are resolved into the config (so they are part of the id)
    t0 = exp.trials[0]
    assert t0.config["dataset"]["use_sensitive_as_feature"] is False
    assert t0.params["model.name"] == "logistic_regression" and t0.params["seed"] == 0
    # the id is a hash of (kind, resolved config, seed): recomputable and stable across loads
    assert t0.trial_id == trial_id("tabular", t0.config, 0)
    again = load_experiment(write(tmp_path, BASE, "again.yaml"))
    assert [t.trial_id for t in again.trials] == [t.trial_id for t in exp.trials]
    # key order in the YAML does not matter
    reordered = BASE.replace("dataset: {name: adult, sensitive: sex, privileged: Male}",
                             "dataset: {privileged: Male, sensitive: sex, name: adult}")
    assert [t.trial_id for t in load_experiment(write(tmp_path, reordered, "r.yaml")).trials] \
        == [t.trial_id for t in exp.trials]


def test_set_overrides_hydra_style(tmp_path):
    path = write(tmp_path, BASE)
    exp = load_experiment(path, ["dataset.name=compas", "dataset.privileged=Caucasian",
                                 "dataset.sensitive=race_binary", "seeds=[0]",
                                 "model.name=logistic_regression", "model.params.C=1e-3"])
    assert len(exp.trials) == 1
    cfg = exp.trials[0].config
    assert cfg["dataset"]["name"] == "compas"
    # YAML 1.2 float, not the string "1e-3"; the model's declared defaults are filled in
    assert cfg["model"]["params"] == {"max_iter": 1000, "C": 0.001}
    # overriding a gridded key pins it; grid.<key>= replaces an axis
    pinned = load_experiment(path, ["model.name=xgboost"])
    assert {t.config["model"]["name"] for t in pinned.trials} == {"xgboost"}
    assert len(pinned.trials) == 3
    axis = load_experiment(path, ["grid.model.name=[random_forest]", "seeds=[5]"])
    assert [(t.config["model"]["name"], t.seed) for t in axis.trials] == [("random_forest", 5)]


@pytest.mark.parametrize("text, overrides, needle", [
    (BASE + "colour: red\n", [], "unknown key 'colour'"),
    (BASE.replace("model: {name: logistic_regression}",
                  "model: {name: logistic_regression, nme: x}"), [], "unknown key 'model.nme'"),
    (BASE.replace("seeds: [0, 1, 2]", "seeds: zero"), [], "seeds"),
    (BASE.replace("seeds: [0, 1, 2]", "seeds: [true]"), [], "seeds: must be integers (got a boolean)"),
    (BASE.replace("dataset: {name: adult,", "dataset: {subsample: lots, name: adult,"), [],
     "dataset.subsample"),
    (BASE.replace("[logistic_regression, xgboost]", "[logistic_regression, nope]"), [],
     "unknown tabular model 'nope'"),
    (BASE.replace("name: adult", "name: nosuchdata"), [], "unknown dataset 'nosuchdata'"),
    (BASE.replace("sensitive: sex", "sensitive: shoe_size"), [], "shoe_size"),
    (BASE.replace("mitigation: {name: none}", "mitigation: {name: magic}"), [],
     "unknown mitigation 'magic'"),
    (BASE.replace("[logistic_regression, xgboost]", "[]"), [], "grid.model.name: empty list"),
    (BASE.replace("[logistic_regression, xgboost]", "xgboost"), [], "must be a list"),
    (BASE.replace("kind: tabular", "kind: quantum"), [], "unknown trial kind 'quantum'"),
    (BASE.replace("model: {name: logistic_regression}",
                  "model: {name: logistic_regression, params: {bogus: 1}}"), [], "bogus"),
    (BASE, ["seeds"], "bad --set 'seeds'"),
    (BASE.replace("grid:\n", "grid:\n  mitigation: [{name: none}, {name: smote}]\n"),
     ["mitigation.params.k_neighbors=3"], "'mitigation' is a grid axis"),
    (BASE, ["=3"], "bad --set"),
    (BASE, ["seeds=[0, 1"], "--set seeds: invalid YAML"),
    (BASE, ["dataset.name.x=1"], "is not a mapping"),
    (BASE, ["grid.seed=[1, 2]"], "cannot sweep an engine key"),
    (BASE.replace("name: income-fairness", "name: ../escape"), [], "name"),
    ("name: x\nkind: tabular\ndataset: [1, 2\n", [], "invalid YAML"),
])
def test_bad_experiment_one_line_nonzero_nothing_written(tmp_path, capsys, text, overrides,
                                                         needle):
    path = write(tmp_path, text)
    with pytest.raises(TrustlabError, match=None) as info:
        load_experiment(path, overrides)
    assert needle in str(info.value)
    out = tmp_path / "out"
    args = ["run", str(path), "--out", str(out)]
    for o in overrides:
        args += ["--set", o]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("trustlab: error: ") and needle in lines[0]
    assert "Traceback" not in err
    assert not out.exists()  # nothing written to the store


def test_missing_file_and_bad_executor(tmp_path, capsys):
    assert main(["run", str(tmp_path / "absent.yaml")]) == 2
    assert "experiment file not found" in capsys.readouterr().err
    path = write(tmp_path, BASE)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--executor", "spark"]) == 2
    assert "'spark' is not one of 'local', 'dask'" in capsys.readouterr().err
    assert main(["run", str(path), "--out", str(out), "--workers", "-1"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert not out.exists()


def test_generic_kind_and_duplicate_grid_points_collapse():
    exp = build_experiment({
        "name": "g", "kind": "test_value", "seeds": [0, 1],
        "params": {"a": 1},
        "grid": {"params.a": [1, 2, 1]},  # 1 twice: the same trials, kept once
    })
    assert len(exp.trials) == 4
    assert [t.point for t in exp.trials[::2]] == [{"params.a": 1}, {"params.a": 2}]
    with pytest.raises(TrustlabError, match="unknown key 'extra'"):
        build_experiment({"name": "g", "kind": "test_value", "extra": 1})
    with pytest.raises(TrustlabError, match="unknown trial kind 'no_such_module_xyz:fn'"):
        build_experiment({"name": "g", "kind": "no_such_module_xyz:fn"})


def test_a_list_of_grids_is_the_union_of_their_products():
    """As scikit-learn's ParameterGrid: sweep an axis only where it matters."""
    from sklearn.model_selection import ParameterGrid

    grid = [{"params.a": [1, 2], "params.b": [10]},
            {"params.a": [3], "params.b": [20, 30]}]
    exp = build_experiment({"name": "g", "kind": "test_value", "seeds": [0],
                            "params": {"a": 0}, "grid": grid})
    expected = [{"params.a": p["params.a"], "params.b": p["params.b"]}
                for p in ParameterGrid(grid)]
    assert sorted(map(str, (t.point for t in exp.trials))) == sorted(map(str, expected))
    assert exp.grid_keys == ["params.a", "params.b"]
    # grid.<key>= sets the axis in every part; pinning a key drops it from every part
    raw = {"name": "g", "kind": "test_value", "params": {"a": 0}, "grid": grid}
    axis = build_experiment(raw, overrides=["grid.params.a=[7]"])
    assert {t.point["params.a"] for t in axis.trials} == {7}
    pinned = build_experiment(raw, overrides=["params.b=5"])
    assert {t.config["params"]["b"] for t in pinned.trials} == {5}
    assert {t.config["params"]["a"] for t in pinned.trials} == {1, 2, 3}
    for bad, needle in [([], "grid: empty list"), ([{"params.a": []}], "grid.params.a: empty"),
                        ([{"params.a": [1]}, 3], "or a list of such mappings"),
                        ([{"seed": [1]}], "cannot sweep an engine key")]:
        with pytest.raises(TrustlabError, match=needle):
            build_experiment({"name": "g", "kind": "test_value", "grid": bad})


@pytest.mark.parametrize("kind", ["os:system", "subprocess:run", "trustlab.experiments.kinds.tabular:KIND"])
def test_a_yaml_cannot_import_modules_through_kind(tmp_path, capsys, kind):
    """`kind:` names a registered kind only: a shared YAML cannot import and call code."""
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: evil\nkind: '{kind}'\nparams: {{a: 1}}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"trustlab: error: evil.yaml: kind: unknown trial kind '{kind}'")
    assert "tabular" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
