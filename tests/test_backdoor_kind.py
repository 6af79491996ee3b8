"""The `backdoor` trial kind end to end through the CLI (tiny digits sweep), its report
section, and config validation before anything runs."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from trustlab.cli import main
from trustlab.errors import TrustlabError
from trustlab.experiments.config import load_experiment
from trustlab.experiments.results import load_results

TINY = """
name: bd-tiny
kind: backdoor
dataset: {name: digits, subsample: 900}
model: {name: small_cnn, params: {width: 8}}
training: {epochs: 6, batch_size: 64, lr: 0.005}
attack: {trigger: patch, size: 2, position: bottom_right, target: 0, poison_rate: 0.1}
defense: {clean_fraction: 0.2}
seeds: [0]
grid:
  defense:
    - {name: none, clean_fraction: 0.2}
    - {name: neural_cleanse, clean_fraction: 0.2, params: {steps: 80, batch_size: 16}}
    - {name: unlearning, clean_fraction: 0.2,
       params: {nc: {steps: 80, batch_size: 16}, epochs: 3}}
    - {name: fine_pruning, clean_fraction: 0.2, params: {prune_fraction: 0.5, epochs: 3}}
"""


def _write(tmp_path, text=TINY, name="bd.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_tiny_backdoor_sweep_and_report(tmp_path):
    path = _write(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--workers", "1"]) == 0
    results = load_results(out)
    trials = {t["params"]["defense.name"]: t for t in results.trials}
    assert set(trials) == {"none", "neural_cleanse", "unlearning", "fine_pruning"}
    assert all(t["status"] == "ok" for t in trials.values())
    # every defense starts from the same backdoored model (same seed): identical "before"
    before = {k: trials["none"]["metrics"][k] for k in
              ("clean_accuracy", "attack_success_rate", "robust_accuracy")}
    for t in trials.values():
        assert {k: t["metrics"][k] for k in before} == before
    m_nc = trials["neural_cleanse"]["metrics"]
    l1 = np.array([m_nc[f"nc.l1.{k}"] for k in range(10)])
    z = np.load(out / "trials" / trials["neural_cleanse"]["trial_id"] / "nc_triggers.npz")
    np.testing.assert_allclose(z["l1"], l1)
    assert z["masks"].shape == (10, 8, 8) and 0 <= z["masks"].min() <= z["masks"].max() <= 1
    assert m_nc["nc.max_anomaly_index"] == pytest.approx(np.max(z["anomaly_index"]))
    assert m_nc["nc.flagged_target"] == float(0 in z["flagged"].tolist())
    assert (out / "trials" / trials["neural_cleanse"]["trial_id"] / "nc_triggers.png").is_file()
    for name in ("unlearning", "fine_pruning"):
        assert "repaired.attack_success_rate" in trials[name]["metrics"]
    assert "repaired.clean_accuracy" not in trials["none"]["metrics"]
    n_pruned = trials["fine_pruning"]["metrics"]["fp.pruned_channels"]
    assert n_pruned == round(0.5 * trials["fine_pruning"]["metrics"]["fp.channels"])

    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Backdoor: detection and repair" in page
    assert "reversed triggers" in page and "L1 norms" in page
    assert "attack_success_rate (after)" in page


@pytest.mark.parametrize("override, needle", [
    ("defense.name=spectral", "unknown defense 'spectral'"),
    ("attack.trigger=star", "unknown trigger 'star'"),
    ("attack.position=middle", "unknown position 'middle'"),
    ("model.name=resnet9000", "unknown network"),
    ("dataset.name=adult", "need an image dataset"),
    ("defense.params={stepz: 3}", "defense.params.stepz"),
])
def test_bad_backdoor_configs_are_rejected_before_running(tmp_path, override, needle):
    text = TINY.split("grid:")[0].replace("defense: {clean_fraction: 0.2}",
                                          "defense: {name: neural_cleanse}")
    path = _write(tmp_path, text, "bad.yaml")
    with pytest.raises(TrustlabError, match=needle):
        load_experiment(path, [override])


def test_shipped_backdoor_experiment_validates():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "backdoor_mnist.yaml"
    exp = load_experiment(path)
    assert exp.kind == "backdoor" and len(exp.trials) == 8   # 4 defenses x 2 seeds
    names = {t.params["defense.name"] for t in exp.trials}
    assert names == {"none", "neural_cleanse", "unlearning", "fine_pruning"}


def test_same_config_and_seed_give_same_metrics_without_the_model_cache():
    from trustlab.experiments.kinds import TrialContext
    from trustlab.experiments.kinds import backdoor as kind

    cfg = kind.BackdoorConfig(
        dataset={"name": "digits", "subsample": 500}, model={"params": {"width": 8}},
        training={"epochs": 3, "device": "cpu"}, attack={"size": 2},
        defense={"name": "unlearning", "params": {"nc": {"steps": 30, "batch_size": 8}}})
    runs = []
    for _ in range(2):
        kind._MODEL_CACHE.clear()   # retrain from scratch: the cache must not hide drift
        out = kind.run(cfg, 3, TrialContext(trial_id="t", threads=1))
        runs.append({k: v for k, v in out.metrics.items() if not k.endswith("time_s")})
    assert runs[0] == runs[1]
    assert {"repaired.attack_success_rate", "nc.l1.9", "unlearn.label"} <= set(runs[0])
