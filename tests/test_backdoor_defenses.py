"""Backdoor defenses on real models: a BadNets backdoor really takes (MNIST), Neural Cleanse
finds it, unlearning and fine-pruning behave as specified (a small CNN on 8x8 digits, to
stay fast), and each defense's ``defend(case)`` gives what its lower-level API gives.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustlab.attacks.backdoor import (
    BackdoorCase,
    backdoor_metrics,
    evaluate_backdoor,
    make_trigger,
    poison,
    predict_labels,
)
from trustlab.data import load_dataset
from trustlab.defenses import DEFENSES, apply_defense, make_defense
from trustlab.defenses.fine_pruning import FinePruning, channel_activity
from trustlab.defenses.neural_cleanse import NeuralCleanse
from trustlab.defenses.unlearning import Unlearning
from trustlab.registry import ParamError
from trustlab.training.deep import SplitTensors, build_method, train

TARGET = 0
# An 8x8 digits model converges in few mini-batches: a short epoch lets the cost schedule
# (which moves once per epoch) run its course within the test's budget.
NC_PARAMS = {"steps": 400, "steps_per_epoch": 2, "batch_size": 16}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Oversubscribed threads on a shared 2-core box are ~10x slower for these tiny nets.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _backdoored(name, n_train, size, epochs, width, seed=0, n_clean=300, rate=0.1):
    ds = load_dataset(name, seed=seed)
    X = np.asarray(ds.X, dtype=np.float32)
    y = np.asarray(ds.y).astype(np.int64)
    perm = np.random.default_rng(seed).permutation(np.asarray(ds.train_idx))
    clean_idx, fit_idx = perm[:n_clean], perm[n_clean:n_clean + n_train]
    trig = make_trigger("patch", X.shape[1:], size=size, position="bottom_right")
    p = poison(X[fit_idx], y[fit_idx], trig, TARGET, rate, seed=seed)
    data = SplitTensors(torch.tensor(p.x), torch.tensor(p.y), torch.tensor(p.is_poison * 1),
                        ["clean", "poisoned"], 10)
    method = build_method("erm", "small_cnn", data, model_params={"width": width},
                          hparams={"lr": 3e-3}, seed=seed, device="cpu")
    train(method, data, epochs=epochs, batch_size=64, seed=seed, device="cpu",
          eval_train=False)
    te = np.asarray(ds.test_idx)
    return {"model": method.model, "trigger": trig, "x_test": X[te], "y_test": y[te],
            "x_clean": X[clean_idx], "y_clean": y[clean_idx]}


@pytest.fixture(scope="module")
def digits_bd():
    return _backdoored("digits", n_train=1100, size=2, epochs=10, width=16)


def test_backdoor_on_mnist_takes_and_metrics_match_predictions():
    # 2,000 MNIST digits + 20% poisoned copies, 4 epochs: ASR 0.95-0.99 and clean accuracy
    # 0.87-0.90 on seeds 0-2 when measured (10% poison needs more data/epochs to be as sure).
    bd = _backdoored("mnist", n_train=2000, size=4, epochs=4, width=16, seed=2, rate=0.2)
    model, trig = bd["model"], bd["trigger"]
    m = evaluate_backdoor(model, bd["x_test"], bd["y_test"], trig.apply, TARGET)
    assert m["attack_success_rate"] > 0.9 and m["clean_accuracy"] > 0.8, m
    # the same numbers from raw predictions, by hand
    y = bd["y_test"]
    with torch.no_grad():
        model.eval()
        clean = model(torch.tensor(bd["x_test"])).argmax(1).numpy()
        trig_pred = model(torch.tensor(trig.apply(bd["x_test"]))).argmax(1).numpy()
    nt = y != TARGET
    assert m["clean_accuracy"] == pytest.approx(np.mean(clean == y))
    assert m["attack_success_rate"] == pytest.approx(np.mean(trig_pred[nt] == TARGET))
    assert m["robust_accuracy"] == pytest.approx(np.mean(trig_pred[nt] == y[nt]))
    assert m == backdoor_metrics(y, predict_labels(model, bd["x_test"]),
                                 predict_labels(model, trig.apply(bd["x_test"])), TARGET)


@pytest.fixture(scope="module")
def digits_nc(digits_bd):
    return NeuralCleanse(**NC_PARAMS, seed=0, device="cpu").fit(
        digits_bd["model"], digits_bd["x_clean"], n_classes=10)


def test_neural_cleanse_batched_masks_and_detection(digits_bd, digits_nc):
    nc = digits_nc
    assert nc.masks_.shape == (10, 8, 8) and nc.patterns_.shape == (10, 1, 8, 8)
    assert nc.masks_.min() >= 0 and nc.masks_.max() <= 1
    assert nc.patterns_.min() >= 0 and nc.patterns_.max() <= 1
    np.testing.assert_allclose(nc.l1_norms_, nc.masks_.reshape(10, -1).sum(1), rtol=1e-6)
    # the backdoored model's target needs by far the smallest trigger, and is flagged
    assert int(np.argmin(nc.l1_norms_)) == TARGET, nc.l1_norms_
    assert nc.flagged_ == [TARGET] and nc.detected_label_ == TARGET
    assert nc.anomaly_index_[TARGET] > 2
    # the kept reversed trigger really flips clean inputs to the target
    x = digits_bd["x_clean"]
    stamped = (1 - nc.masks_[TARGET][None, None]) * x + \
        (nc.masks_[TARGET] * nc.patterns_[TARGET])[None]
    flipped = np.mean(predict_labels(digits_bd["model"], stamped) == TARGET)
    assert flipped > 0.9


def test_unlearning_removes_backdoor_and_keeps_accuracy(digits_bd, digits_nc):
    bd, nc = digits_bd, digits_nc
    before = evaluate_backdoor(bd["model"], bd["x_test"], bd["y_test"], bd["trigger"].apply,
                               TARGET)
    un = Unlearning(fraction=0.2, epochs=5, lr=1e-3, batch_size=32, seed=0, device="cpu").fit(
        bd["model"], bd["x_clean"], bd["y_clean"], nc.masks_[TARGET], nc.patterns_[TARGET],
        n_classes=10)
    after = evaluate_backdoor(un.model_, bd["x_test"], bd["y_test"], bd["trigger"].apply,
                              TARGET)
    assert len(un.stamped_idx_) == round(0.2 * len(bd["x_clean"]))
    assert before["attack_success_rate"] > 0.9
    assert after["attack_success_rate"] < 0.3, (before, after)
    assert after["clean_accuracy"] > before["clean_accuracy"] - 0.05, (before, after)
    # the original model is untouched (the defense works on a copy)
    again = evaluate_backdoor(bd["model"], bd["x_test"], bd["y_test"], bd["trigger"].apply,
                              TARGET)
    assert again == before


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_fine_pruning_masks_exactly_the_requested_channels(digits_bd, fraction):
    model = digits_bd["model"]
    activity = channel_activity(model, digits_bd["x_clean"])
    n_channels = model.last_conv.out_channels
    assert activity.shape == (n_channels,)
    fp = FinePruning(prune_fraction=fraction, epochs=0, seed=0, device="cpu").fit(
        model, digits_bd["x_clean"], digits_bd["y_clean"], n_classes=10)
    k = round(fraction * n_channels)
    assert len(fp.pruned_) == k and (~fp.keep_mask_).sum() == k
    # the pruned ones are the least active on clean data
    assert set(fp.pruned_) == set(np.argsort(activity, kind="stable")[:k])
    # ...and are really silent in the pruned model, even after fine-tuning
    fp2 = FinePruning(prune_fraction=fraction, epochs=1, seed=0, device="cpu").fit(
        model, digits_bd["x_clean"], digits_bd["y_clean"], n_classes=10)
    for f in (fp, fp2):
        act = channel_activity(f.model_, digits_bd["x_test"])
        assert np.all(act[f.pruned_] == 0) and np.all(act[f.keep_mask_] >= 0)
        assert (act[f.keep_mask_] > 0).sum() > 0


def _case(bd):
    return BackdoorCase(model=bd["model"], n_classes=10, x_clean=bd["x_clean"],
                        y_clean=bd["y_clean"], x_test=bd["x_test"], y_test=bd["y_test"],
                        trigger=bd["trigger"], target=TARGET, seed=0, device="cpu")


def test_neural_cleanse_as_a_defense_gives_its_fit_metrics_and_npz(digits_bd, digits_nc):
    case = _case(digits_bd)
    nc = make_defense("neural_cleanse", NC_PARAMS, seed=0, device="cpu")
    metrics, artifacts = apply_defense(nc, case)
    np.testing.assert_array_equal(nc.masks_, digits_nc.masks_)   # same numerics as fit()
    assert metrics["nc.detected_label"] == TARGET and metrics["nc.flagged_target"] == 1.0
    assert metrics["nc.n_flagged"] == len(digits_nc.flagged_)
    assert [metrics[f"nc.l1.{k}"] for k in range(10)] == digits_nc.l1_norms_.tolist()
    assert metrics["nc.min_l1_label"] == TARGET
    assert not any(k.startswith("repaired.") for k in metrics)   # detection only
    assert set(artifacts) == {"nc_triggers.npz"}
    import io

    z = np.load(io.BytesIO(artifacts["nc_triggers.npz"]))
    assert set(z.files) == {"masks", "patterns", "l1", "anomaly_index", "flagged", "target",
                            "true_mask", "true_pattern", "anomaly_threshold"}
    np.testing.assert_array_equal(z["true_mask"], digits_bd["trigger"].mask)
    assert int(z["target"]) == TARGET and z["flagged"].tolist() == digits_nc.flagged_


def test_repairs_as_defenses_return_the_repaired_model(digits_bd):
    case = _case(digits_bd)
    fp = FinePruning(prune_fraction=0.5, epochs=0, seed=0, device="cpu")
    metrics, artifacts = apply_defense(fp, case)
    assert artifacts == {}
    assert metrics["fp.pruned_channels"] == round(0.5 * metrics["fp.channels"])
    assert metrics["repaired.clean_accuracy"] == case.evaluate(fp.model_)["clean_accuracy"]
    # unlearning with fallback none and a detector that flags nothing: no repair
    un = make_defense("unlearning", {"nc": {"steps": 1, "anomaly_threshold": 1e9},
                                     "fallback": "none"}, seed=0, device="cpu")
    metrics, _ = apply_defense(un, case)
    assert metrics["unlearn.applied"] == 0.0 and metrics["unlearn.label"] == -1.0
    before = case.evaluate(case.model)
    assert {k: metrics[f"repaired.{k}"] for k in before} == before


@pytest.mark.parametrize("name, params, key", [
    ("neural_cleanse", {"steps": 0}, "steps"),
    ("neural_cleanse", {"cost_multiplier": 1.0}, "cost_multiplier"),
    ("neural_cleanse", {"attack_threshold": 1.5}, "attack_threshold"),
    ("unlearning", {"fraction": 1.2}, "fraction"),
    ("unlearning", {"nc": {"lr": 0}}, "nc.lr"),
    ("unlearning", {"fallback": "random"}, "fallback"),
    ("fine_pruning", {"epochs": -1}, "epochs"),
    ("fine_pruning", {"prune_fraction": 2}, "prune_fraction"),
    ("none", {"steps": 3}, "steps"),
    ("strip", {"frr": 2}, "frr"),
    ("strip", {"n_overlays": 0}, "n_overlays"),
    ("strip", {"blend": "multiply"}, "blend"),
    ("spectral_signatures", {"expected_poison_fraction": 0}, "expected_poison_fraction"),
    ("spectral_signatures", {"removal_factor": -1}, "removal_factor"),
    ("activation_clustering", {"size_threshold": 0.7}, "size_threshold"),
    ("activation_clustering", {"reduce": "tsne"}, "reduce"),
    ("activation_clustering", {"n_components": 0}, "n_components"),
])
def test_defense_parameters_are_declared_once_and_checked(name, params, key):
    with pytest.raises(ParamError) as err:
        make_defense(name, params)
    assert err.value.key == key
    with pytest.raises(ParamError, match=f"params.{key}"):
        DEFENSES.resolve(name, params)


def test_lower_level_constructors_keep_their_keywords_and_defaults():
    nc = NeuralCleanse(steps=150, batch_size=16, seed=3, device="cpu")
    assert (nc.steps, nc.batch_size, nc.lr, nc.seed, nc.device) == (150, 16, 0.1, 3, "cpu")
    un = Unlearning(fraction=0.3)
    assert (un.fraction, un.epochs, un.fallback, un.nc.steps) == (0.3, 5, "lowest_l1", 500)
    assert FinePruning().prune_fraction == 0.5
