"""The `backdoor` trial kind end to end through the CLI (tiny digits sweep), its report
section, config validation before anything runs, the data-dependent checks when a trial
starts, and a defense added from code as one class and one registry line."""

from __future__ import annotations

import copy
import textwrap
from typing import ClassVar

import numpy as np
import pytest
from pydantic import Field

from trustlab import registry
from conftest import assert_fits_in_chromium, section_titles
from trustlab.cli import main
from trustlab.defenses import DEFENSES, Defense, DefenseOutcome, finetune
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
    # figures are the report's job: the trial stores the npz only
    assert not (out / "trials" / trials["neural_cleanse"]["trial_id"] / "nc_triggers.png"
                ).exists()
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
    titles = section_titles(page)
    assert titles[:2] == ["Findings", "Backdoor: detection and repair"]
    assert not any(t.startswith("Accuracy vs fairness") for t in titles)  # no fairness axis
    assert_fits_in_chromium(out / "report.html", 1400, tmp_path)

    # a damaged artifact leaves its figures out and is named; the report is still written
    npz = out / "trials" / trials["neural_cleanse"]["trial_id"] / "nc_triggers.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Backdoor: detection and repair" in page and "could not be read" in page
    assert f"trials/{trials['neural_cleanse']['trial_id']}/nc_triggers.npz" in page


@pytest.mark.parametrize("override, needle", [
    ("defense.name=spectral", "unknown defense 'spectral'"),
    ("attack.trigger=star", "attack.trigger: unknown backdoor attack 'star'"),
    ("attack.position=middle", "attack.position: unknown position 'middle'"),
    ("attack.alpha=0.5", "attack.alpha: unknown parameter"),   # not one of patch's
    ("attack.size=0", "attack.size: Input should be greater than or equal to 1"),
    ("attack.poison_rate=1.5", "attack.poison_rate"),
    ("defense.clean_fraction=0", "defense.clean_fraction"),
    ("defense.params={nc: {steps: 3}}", "defense.params.nc: unknown parameter"),
    ("training.device=tpu", "training.device: unknown device 'tpu'"),
    ("model.name=resnet9000", "unknown network"),
    ("dataset.name=adult", "need an image dataset"),
    ("defense.params={stepz: 3}", "defense.params.stepz"),
    ("model.params={depth: 2}", "model.params.depth"),
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


def test_shipped_backdoor_experiment_resolves_defaults_once():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "backdoor_mnist.yaml"
    cfg = {t.params["defense.name"]: t.config for t in load_experiment(path).trials}
    assert cfg["none"]["attack"] == {"trigger": "patch", "size": 4, "position": "bottom_right",
                                     "target": 0, "poison_rate": 0.1}
    assert cfg["unlearning"]["defense"]["params"]["nc"]["init_cost"] == 1e-3
    assert cfg["unlearning"]["defense"]["params"]["fallback"] == "lowest_l1"
    assert cfg["fine_pruning"]["defense"]["clean_fraction"] == 0.1
    assert cfg["none"]["training"]["device"] == "auto"


@pytest.mark.parametrize("attack, needle", [
    ({"size": 9}, "attack.position: a 9x9 trigger at .* does not fit in a 8x8 image"),
    ({"position": [6, 0], "size": 3}, "attack.position: a 3x3 trigger at .6, 0. does not fit"),
    ({"target": 10}, "attack.target: 10 is not a class of the dataset .0..9."),
])
def test_data_dependent_attack_errors_name_the_key(attack, needle):
    from trustlab.experiments.kinds import TrialContext
    from trustlab.experiments.kinds import backdoor as kind

    cfg = kind.BackdoorConfig(dataset={"name": "digits", "subsample": 100},
                              attack=attack, training={"device": "cpu"})
    with pytest.raises(TrustlabError, match=needle):
        kind.run(cfg, 0, TrialContext(trial_id="t", threads=1))


def test_same_config_and_seed_give_same_metrics_without_the_model_cache():
    from trustlab.attacks.backdoor import clear_model_cache
    from trustlab.experiments.kinds import TrialContext
    from trustlab.experiments.kinds import backdoor as kind

    cfg = kind.BackdoorConfig(
        dataset={"name": "digits", "subsample": 500}, model={"params": {"width": 8}},
        training={"epochs": 3, "device": "cpu"}, attack={"size": 2},
        defense={"name": "unlearning", "params": {"nc": {"steps": 30, "batch_size": 8}}})
    runs = []
    for _ in range(2):
        clear_model_cache()   # retrain from scratch: the cache must not hide drift
        out = kind.run(cfg, 3, TrialContext(trial_id="t", threads=1))
        runs.append({k: v for k, v in out.metrics.items() if not k.endswith("time_s")})
    assert runs[0] == runs[1]
    assert {"repaired.attack_success_rate", "nc.l1.9", "unlearn.label"} <= set(runs[0])


class ShrinkLastLayer(Defense):
    """Toy repair: fine-tune on the defender's clean rows after scaling the classifier."""

    name: ClassVar[str] = "shrink_last_layer"

    class Params(registry.Params):
        scale: float = Field(0.5, gt=0, le=1, description="factor on the last layer")
        epochs: int = Field(1, ge=1, description="fine-tuning epochs")

    def defend(self, case):
        import torch

        model = copy.deepcopy(case.model)
        with torch.no_grad():
            model.classifier.weight.mul_(self.scale)
        model = finetune(model, case.x_clean, case.y_clean, epochs=self.epochs, lr=1e-3,
                         batch_size=32, seed=self.seed, n_classes=case.n_classes,
                         device=self.device)
        metrics = {"shrink.scale": self.scale, "shrink.n_clean": float(len(case.y_clean)),
                   "shrink.n_poison_seen": float(case.poisoned.is_poison.sum())}
        return DefenseOutcome(metrics=metrics, model=model, artifacts={"shrink.txt": b"done"})


TOY = """
name: bd-toy-defense
kind: backdoor
dataset: {name: digits, subsample: 400}
model: {name: small_cnn, params: {width: 4}}
training: {epochs: 1, device: cpu}
attack: {trigger: pattern, size: 2, target: 1, poison_rate: 0.1}
seeds: [0]
grid:
  defense:
    - {name: none}
    - {name: shrink_last_layer, params: {scale: 0.25}}
"""


def test_a_defense_is_one_class_and_one_registry_line(tmp_path):
    from trustlab.experiments.runner import run_experiment

    DEFENSES.register(ShrinkLastLayer)
    try:
        with pytest.raises(TrustlabError, match="defense.params.scale"):
            load_experiment(_write(tmp_path, TOY.replace("0.25", "2"), "bad.yaml"))
        exp = load_experiment(_write(tmp_path, TOY, "toy.yaml"))
        out = tmp_path / "out"
        run_experiment(exp, out, executor="local", workers=1, progress=False)
        trials = {t["params"]["defense.name"]: t for t in load_results(out).trials}
        assert all(t["status"] == "ok" for t in trials.values()), trials
        m = trials["shrink_last_layer"]["metrics"]
        assert m["shrink.scale"] == 0.25 and m["shrink.n_clean"] == m["n_clean_defender"]
        assert m["shrink.n_poison_seen"] == m["n_poison"] > 0
        assert {"repaired.clean_accuracy", "repaired.attack_success_rate",
                "defense_time_s"} <= set(m)
        assert m["clean_accuracy"] == trials["none"]["metrics"]["clean_accuracy"]
        tid = trials["shrink_last_layer"]["trial_id"]
        assert (out / "trials" / tid / "shrink.txt").read_bytes() == b"done"
    finally:
        DEFENSES.unregister("shrink_last_layer")
    assert "shrink_last_layer" not in DEFENSES
