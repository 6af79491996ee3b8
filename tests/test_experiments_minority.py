"""The `minority_class` kind: induced minority, its accuracy, where its errors go."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from sklearn.metrics import recall_score

from conftest import assert_fits_in_chromium, section_titles
from trustlab.cli import main
from trustlab.data import load_dataset
from trustlab.errors import TrustlabError
from trustlab.experiments.config import load_experiment
from trustlab.experiments.results import load_results

EXPERIMENT = """
name: minority
kind: minority_class
dataset: {name: digits}
model: {name: mlp, params: {width: 32}}
method: {name: erm, params: {lr: 0.01}}
training: {epochs: 3, batch_size: 32}
minority: {label: 3, target_percentage: 10}
seeds: [0]
grid:
  minority:
    - {full: true}
    - {label: 3, target_percentage: 10}
    - {label: 3, target_percentage: 50}
    - {label: 7, target_percentage: 10}
"""


def test_minority_sweep_metrics_and_heatmaps(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(EXPERIMENT))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 0
    ds = load_dataset("digits", seed=0)
    train_counts = np.bincount(ds.y_train, minlength=10)
    results = load_results(out)
    assert len(results.ok()) == 4
    for t in results.ok():
        p, m = t["params"], t["metrics"]
        arrays = np.load(out / "trials" / t["trial_id"] / "predictions.npz")
        y, pred = arrays["y_true"], arrays["y_pred"]
        if p.get("minority.full"):
            # the balanced baseline: every class cut to the smallest class
            assert m["train_rows"] == 10 * train_counts.min()
            assert "minority_accuracy" not in m
            continue
        label, pct = p["minority.label"], p["minority.target_percentage"]
        assert m["minority_train_rows"] == max(1, int(train_counts[label] * pct // 100))
        assert m["train_rows"] == train_counts.sum() - train_counts[label] + \
            m["minority_train_rows"]
        assert m["minority_accuracy"] == pytest.approx(
            recall_score(y, pred, labels=[label], average="macro"), abs=1e-12)
        absorbed = sum(v for k, v in m.items() if k.startswith("absorbed."))
        assert absorbed + m["minority_accuracy"] == pytest.approx(1.0)
        rows = y == label
        others = np.bincount(pred[rows], minlength=10).astype(float)
        others[label] = -1
        assert m["top_absorber"] == int(np.argmax(others))
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Minority classes" in page
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert any("minority-accuracy-heatmap" in f for f in figures)
    assert any("change-vs-baseline" in f for f in figures)
    assert any("absorbing-classes" in f for f in figures)


@pytest.mark.parametrize("override, needle", [
    ("minority.label=12", "has no class 12"),
    ("minority={target_percentage: 5}", "label is required unless full"),
    ("minority.target_percentage=0", "target_percentage"),
    ("minority.target_percentage=150", "target_percentage"),
])
def test_bad_minority_configs_fail_before_running(tmp_path, override, needle):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(EXPERIMENT).split("grid:")[0])
    with pytest.raises(TrustlabError, match=needle):
        load_experiment(path, [override])


DEFENSES = """
name: minority-defenses
kind: minority_class
dataset: {name: digits}
model: {name: mlp, params: {width: 32}}
method: {name: erm, params: {lr: 0.01}}
training: {epochs: 2, batch_size: 32}
minority: {label: 3, target_percentage: 10}
seeds: [0, 1]
grid:
  - minority: [{full: true}]
  - minority: &cells [{label: 3, target_percentage: 10}, {label: 7, target_percentage: 10}]
    method: [{name: erm, params: {lr: 0.01}}, {name: reweight, params: {by: class, lr: 0.01}}]
  - minority: *cells
    training.sampler: [oversample]
    training.balance_by: [class]
"""


def test_defense_axis_gets_a_restored_accuracy_section(tmp_path):
    from trustlab.report.minority_class import NO_DEFENSE, _table

    path = tmp_path / "d.yaml"
    path.write_text(textwrap.dedent(DEFENSES))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 0
    frame = _table(load_results(out))
    assert set(frame["defense"]) == {NO_DEFENSE, "reweight", "oversample (class)"}
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Minority classes: defenses" in page and "restored accuracy heatmap" in page
    titles = section_titles(page)
    assert titles[:3] == ["Findings", "Minority classes", "Minority classes: defenses"]
    assert "Best defense at 10%" in page and "suffer most" in page
    assert_fits_in_chromium(out / "report.html", 1400, tmp_path)
    # the class x percentage heatmap uses the undefended runs only
    assert "Means over seeds of" in page
