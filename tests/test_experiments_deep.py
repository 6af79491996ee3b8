"""The `deep` trial kind end to end: real training, metrics against an oracle, history and
report, validation before anything runs, and the same metrics on 1 or 2 workers."""

from __future__ import annotations

import json
import textwrap
import typing

import numpy as np
import pytest
import yaml
from fairlearn.metrics import MetricFrame
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from trustlab.cli import main
from trustlab.experiments.config import build_experiment, load_experiment
from trustlab.experiments.results import load_results
from trustlab.errors import TrustlabError

DIGITS = """
name: deep-{tag}
kind: deep
dataset: {{name: digits, group: digit, subsample: 600}}
model: {{name: mlp, params: {{width: 32}}}}
training: {{epochs: 4, batch_size: 32{extra}}}
seeds: [0]
grid:
  method:
    - {{name: erm, params: {{lr: 0.01}}}}
    - {{name: group_dro, params: {{eta: 0.05, lr: 0.01}}}}
"""


def write(tmp_path, tag="a", extra=""):
    path = tmp_path / f"{tag}.yaml"
    path.write_text(textwrap.dedent(DIGITS.format(tag=tag, extra=extra)))
    return path


def _metrics(out):
    return {t["trial_id"]: {k: v for k, v in t["metrics"].items() if k != "train_time_s"}
            for t in load_results(out).trials}


def test_deep_sweep_metrics_history_and_report(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(write(tmp_path)), "--out", str(out), "--workers", "1"]) == 0
    results = load_results(out)
    assert [t["status"] for t in results.trials] == ["ok", "ok"]
    for t in results.trials:
        m = t["metrics"]
        arrays = np.load(out / "trials" / t["trial_id"] / "predictions.npz")
        y, p, g = arrays["y_true"], arrays["y_pred"], arrays["group"]
        assert m["n_test"] == len(y) == 360 and m["n_train"] == 600  # digits: 20% test
        assert m["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p), abs=1e-12)
        frame = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=p, sensitive_features=g)
        assert m["worst_group_accuracy"] == pytest.approx(frame.group_min(), abs=1e-12)
        assert m["accuracy"] > 0.5  # it really learned: 10 classes, chance is 0.1
        history = json.loads((out / "trials" / t["trial_id"] / "history.json").read_text())
        assert len(history["epochs"]) == 4 == m["epochs_run"]
        assert m["final_train_loss"] == pytest.approx(history["epochs"][-1]["train_loss"])
        assert history["epochs"][1]["train_loss"] < history["epochs"][0]["train_loss"]
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Training curves" in page and "accuracy_difference" in page


WIDTHS = """
name: widths
kind: deep
dataset: {name: adult, group: sex, subsample: 400}
model: {name: mlp, params: {width: 2, depth: 1}}
training: {epochs: 3, batch_size: 64}
seeds: [0, 1]
grid:
  - model.params.width: [2, 64]
    method:
      - {name: erm, params: {lr: 0.01}}
      - {name: mindiff, params: {weight: 2.0, only_label: 0, lr: 0.01}}
  - model.params.width: [2, 64]
    method: [{name: mindiff, params: {weight: 2.0, only_label: 0, lr: 0.01}}]
    training.flooding: [0.4]
"""


def test_width_study_train_split_fairness_and_report(tmp_path):
    """MinDiff's study: the audit on the fitted training rows under train.*, equal to
    fairlearn on the stored training predictions; the report's width section."""
    from fairlearn.metrics import false_positive_rate

    path = tmp_path / "widths.yaml"
    path.write_text(textwrap.dedent(WIDTHS))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 0
    results = load_results(out)
    assert len(results.trials) == 12 and all(t["status"] == "ok" for t in results.trials)
    for t in results.trials:
        m = t["metrics"]
        arrays = np.load(out / "trials" / t["trial_id"] / "predictions.npz")
        y, p, g = arrays["train_y_true"], arrays["train_y_pred"], arrays["train_group"]
        assert len(y) == m["n_train"] == 400
        assert m["train.accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
        fpr = MetricFrame(metrics=false_positive_rate, y_true=y, y_pred=p,
                          sensitive_features=g)
        assert m["train.false_positive_rate_difference"] == pytest.approx(fpr.difference(),
                                                                          abs=1e-12)
        history = json.loads((out / "trials" / t["trial_id"] / "history.json").read_text())
        assert m["train.log_loss"] == pytest.approx(history["epochs"][-1]["train_log_loss"])
    widths = {t["params"]["model.params.width"]: t["metrics"]["n_params"]
              for t in results.trials}
    # one hidden layer: (d + 1) * w + (w + 1) * 2 parameters, so d is the same for both
    d = [(n - 2 - 2 * w) / w - 1 for w, n in widths.items()]
    assert d[0] == d[1] and d[0] == int(d[0])
    flooded = [t for t in results.trials if t["params"]["training.flooding"] == 0.4]
    assert len(flooded) == 4
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Fairness against width" in page and "false_positive_rate_difference" in page
    from conftest import section_titles

    titles = section_titles(page)
    assert titles[0] == "Findings" and "Worst-group test accuracy" in page
    scatter = next(i for i, t in enumerate(titles) if t.startswith("Accuracy vs fairness"))
    assert titles.index("Fairness against width") < scatter  # the study's own figure first
    from conftest import assert_fits_in_chromium

    assert_fits_in_chromium(out / "report.html", 1400, tmp_path)
    assert "Within a gap bound, the lowest test error" in page


def test_same_metrics_on_one_or_two_workers(tmp_path):
    assert main(["run", str(write(tmp_path, "d")), "--out", str(tmp_path / "one"),
                 "--workers", "1"]) == 0
    assert main(["run", str(write(tmp_path, "d")), "--out", str(tmp_path / "two"),
                 "--workers", "2"]) == 0
    assert _metrics(tmp_path / "one") == _metrics(tmp_path / "two")


@pytest.mark.parametrize("override, needle", [
    ("method.name=magic", "unknown training method 'magic'"),
    ("model.name=resnet9000", "unknown network"),
    ("method.params={eta: 0.1}", "method.params.eta: unknown parameter"),
    ("method={name: group_dro, params: {eta: -1}}", "method.params.eta: Input should be"),
    ("model.params={depth: -1}", "model.params.depth: Input should be"),
    ("training.sampler=random", "training.sampler: Input should be 'shuffle'"),
    ("dataset.group=colour", "dataset.group: 'digits' has no group column 'colour'"),
    ("training.early_stopping={metric: val_accuracy}",
     "training.early_stopping: 'val_accuracy' is a validation metric: set val_fraction > 0"),
    ("training.early_stopping={metric: val_accuracy, patience: 0}",
     "training.early_stopping.patience"),
    ("training.epochs=0", "training.epochs"),
    ("training.flooding=-0.1", "training.flooding"),
])
def test_bad_deep_configs_are_rejected_before_running(tmp_path, override, needle):
    path = write(tmp_path, "bad")
    text = path.read_text().split("grid:")[0]
    path.write_text(text)
    with pytest.raises(TrustlabError, match=needle):
        load_experiment(path, [override])


def test_method_flooding_with_training_flooding_is_refused(tmp_path):
    path = write(tmp_path, "flood")
    path.write_text(path.read_text().split("grid:")[0])
    with pytest.raises(TrustlabError, match="training.flooding: method flooding floods"):
        load_experiment(path, ["method={name: flooding, params: {b: 0.1}}",
                               "training.flooding=0.2"])


def _bad_value(field):
    """A value the declaration refuses: outside a bound, not a choice, or not a number."""
    if typing.get_origin(field.annotation) is typing.Literal:
        return "no-such-choice"
    for meta in field.metadata:
        for attr, shift in (("ge", -1), ("gt", -1), ("le", 1), ("lt", 1)):
            bound = getattr(meta, attr, None)
            if bound is not None:
                return bound + shift
    return "not-a-number"


def _entry_params():
    from trustlab.training.deep import METHODS, NETWORKS

    for block, registry in (("model", NETWORKS), ("method", METHODS)):
        for name, entry in registry.items():
            if name in registry.runtime_entries():  # registered by another test
                continue
            for field_name, field in entry.Params.model_fields.items():
                yield block, name, field.alias or field_name, _bad_value(field)


@pytest.mark.parametrize("block, name, key, bad", list(_entry_params()))
def test_every_network_and_method_parameter_rejects_a_bad_value(block, name, key, bad):
    raw = yaml.safe_load(textwrap.dedent(DIGITS.format(tag="p", extra="")).split("grid:")[0])
    raw[block] = {"name": name, "params": {key: bad}}
    with pytest.raises(TrustlabError) as info:
        build_experiment(raw, where="x.yaml")
    line = str(info.value)
    assert line.startswith(f"x.yaml: {block}.params.{key}: ") and "\n" not in line


SEARCH = """
name: search
kind: deep
dataset: {name: colored_mnist, group: group, subsample: 600}
model: {name: mlp, params: {width: 32}}
method: {name: group_dro, params: {weight_decay: 0.0}}
training: {epochs: 2, batch_size: 64, val_fraction: 0.25}
hparam_search: {n: 3, select_by: val_worst_group_accuracy, fixed: [weight_decay]}
seeds: [0]
"""


def test_hparam_search_selects_on_validation_only(tmp_path):
    """Random search as DomainBed does it: n candidates from the method's declared space
    (written hyper-parameters fixed), the best validation score kept; same seed, same
    candidates."""
    path = tmp_path / "search.yaml"
    path.write_text(textwrap.dedent(SEARCH))
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 0
        (t,) = load_results(out).trials
        log = json.loads((out / "trials" / t["trial_id"] / "hparam_search.json").read_text())
        outs.append((t, log))
    (t, log), (_, again) = outs
    assert log["candidates"] == again["candidates"]  # same seed, same draws and scores
    scores = [c["val_worst_group_accuracy"] for c in log["candidates"]]
    assert len(scores) == 3 and log["score"] == max(scores)
    best = log["candidates"][scores.index(max(scores))]["params"]
    assert log["selected"] == best
    assert set(best) == {"lr", "eta"}  # weight_decay is fixed, so it is not searched
    m = t["metrics"]
    assert m["hparam.lr"] == pytest.approx(best["lr"]) and m["hparam.eta"] == best["eta"]
    assert 1e-4 <= best["lr"] <= 1e-2 and 1e-3 <= best["eta"] <= 1e-1
    # a search without a validation split is refused before anything runs
    with pytest.raises(TrustlabError, match="training.val_fraction: hparam_search selects"):
        load_experiment(path, ["training.val_fraction=0.0"])
    with pytest.raises(TrustlabError, match="hparam_search.fixed: 'momentum' is not searched"):
        load_experiment(path, ["hparam_search.fixed=[momentum]"])


def test_every_methods_search_space_names_its_parameters():
    from trustlab.training.deep import METHODS
    from trustlab.training.deep.search import distributions

    for name, entry in METHODS.items():
        if name in METHODS.runtime_entries():
            continue
        declared = {f.alias or n for n, f in entry.Params.model_fields.items()}
        assert set(entry.search_space) <= declared, name
        assert set(distributions(entry, {})) == set(entry.search_space)
