"""The deep training loop: determinism, per-epoch metrics against the audit engine,
early stopping, devices, and a real spurious-correlation check on colored_mnist."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import trustlab.metrics
from trustlab.errors import TrustlabError
from trustlab.registry import ParamError, check_params
from trustlab.training.deep import (
    EarlyStopping,
    TrainingOptions,
    build_method,
    evaluate,
    predict,
    predict_logits,
    resolve_device,
    split_tensors,
    train,
    train_network,
)


@pytest.fixture(scope="module")
def digits():
    from trustlab.data import load_dataset

    ds = load_dataset("digits")
    return split_tensors(ds, "train").subset(np.arange(500)), split_tensors(ds, "test")


def _run(tr, te, method, sampler, **hp):
    m = build_method(method, "small_cnn", tr, model_params={"width": 8}, hparams=hp, seed=7,
                     device="cpu")
    h = train(m, tr, te, epochs=2, batch_size=50, seed=7, sampler=sampler, device="cpu")
    return [{k: v for k, v in r.items() if k != "seconds"} for r in h.epochs], predict(m, te.x)


@pytest.mark.parametrize("method,sampler,hp", [
    ("erm", "balanced_batch", {}),
    ("adversarial_training", "oversample", {"attack": "pgd", "steps": 2, "epsilon": 0.05}),
])
def test_same_seed_same_history_and_predictions(digits, method, sampler, hp):
    tr, te = digits
    h1, p1 = _run(tr, te, method, sampler, **hp)
    h2, p2 = _run(tr, te, method, sampler, **hp)
    assert h1 == h2
    assert np.array_equal(p1, p2)
    m = build_method(method, "small_cnn", tr, model_params={"width": 8}, hparams=hp, seed=8)
    h3 = train(m, tr, te, epochs=2, batch_size=50, seed=8, sampler=sampler)
    assert [r["train_loss"] for r in h3.epochs] != [r["train_loss"] for r in h1]


def test_epoch_metrics_match_the_audit_engine(digits):
    tr, te = digits
    m = build_method("erm", "mlp", tr, model_params={"width": 16}, seed=0)
    h = train(m, tr, te, epochs=1, batch_size=64, seed=0)
    result = trustlab.metrics.audit(te.y.numpy(), predict(m, te.x),
                                    np.asarray(te.group_names)[te.g.numpy()])
    flat = result.flat_metrics()
    assert h.last["val_accuracy"] == pytest.approx(flat["accuracy"])
    assert h.last["val_worst_group_accuracy"] == pytest.approx(flat["worst_group_accuracy"])
    assert evaluate(m, te) == {"accuracy": h.last["val_accuracy"],
                               "worst_group_accuracy": h.last["val_worst_group_accuracy"],
                               "log_loss": h.last["val_log_loss"]}
    # log_loss is scikit-learn's on the softmax probabilities
    from sklearn.metrics import log_loss

    proba = torch.softmax(predict_logits(m, te.x).double(), 1).numpy()
    assert h.last["val_log_loss"] == pytest.approx(
        log_loss(te.y.numpy(), proba, labels=list(range(tr.n_classes))), rel=1e-9)


def test_training_flooding_floods_any_methods_whole_objective(digits):
    """|L - b| + b on the method's objective (CE + penalty), the same numbers as method
    flooding for ERM, and a training loss held near b."""
    tr, _ = digits
    runs = {}
    for name, hp, flooding in [("flooding", {"b": 0.4}, None), ("erm", {}, 0.4)]:
        m = build_method(name, "mlp", tr, model_params={"width": 32},
                         hparams={"lr": 0.01, **hp}, seed=0)
        runs[name] = train(m, tr, epochs=12, batch_size=64, seed=0, flooding=flooding)
    assert runs["flooding"].epochs == [
        {k: v for k, v in r.items() if k != "train_unflooded_loss"} | {"seconds": s}
        for r, s in zip(runs["erm"].epochs, (e["seconds"] for e in runs["flooding"].epochs))]
    free = train(build_method("erm", "mlp", tr, model_params={"width": 32},
                              hparams={"lr": 0.01}, seed=0), tr, epochs=12, batch_size=64,
                 seed=0)
    # unflooded the CE falls to ~0.06; flooded at 0.4 it stays near 0.4
    assert free.last["train_ce"] < 0.15
    assert all(0.3 < r["train_ce"] < 0.55 for r in runs["erm"].epochs[5:])
    # a penalised method: the flooded value is |CE + w * MMD - b| + b per batch
    m = build_method("mindiff", "mlp", tr, model_params={"width": 16},
                     hparams={"weight": 3.0}, seed=0)
    h = train(m, tr, epochs=1, batch_size=64, seed=0, flooding=5.0)
    assert h.last["train_loss"] == pytest.approx(
        10.0 - h.last["train_unflooded_loss"], rel=1e-6)  # every batch below b = 5
    assert h.last["train_unflooded_loss"] == pytest.approx(
        h.last["train_ce"] + 3.0 * h.last["train_mmd"], rel=1e-6)


def test_early_stopping_restores_the_best_epoch(digits):
    tr, te = digits
    # With lr 0.05 validation accuracy peaks then wobbles, so the patience runs out.
    m = build_method("erm", "mlp", tr, model_params={"width": 16}, hparams={"lr": 0.05},
                     seed=0)
    h = train(m, tr, te, epochs=15, batch_size=64, seed=0,
              early_stopping={"metric": "val_accuracy", "patience": 2})
    curve = [r["val_accuracy"] for r in h.epochs]
    assert h.stopped_early and len(curve) < 15
    assert h.best_epoch == int(np.argmax(curve)) + 1 == len(curve) - 2
    assert max(curve[-2:]) <= curve[h.best_epoch - 1]
    assert evaluate(m, te)["accuracy"] == max(curve)  # the best weights are back
    assert evaluate(m, te)["accuracy"] > curve[-1]
    with pytest.raises(TrustlabError, match="needs a validation split"):
        train(m, tr, None, epochs=1, batch_size=64, seed=0, early_stopping=EarlyStopping())
    with pytest.raises(TrustlabError, match="is not measured"):
        train(m, tr, te, epochs=1, batch_size=64, seed=0,
              early_stopping={"metric": "val_auc"})
    with pytest.raises(TrustlabError, match="early_stopping.mode: Input should be 'max'"):
        train(m, tr, te, epochs=1, batch_size=64, seed=0, early_stopping={"mode": "up"})
    with pytest.raises(TrustlabError, match="epochs: Input should be greater than"):
        train(m, tr, te, epochs=0, batch_size=64, seed=0)


def test_training_options_declare_the_loop_once():
    opts = TrainingOptions(epochs=3, val_fraction=0.2,
                           early_stopping={"metric": "val_accuracy", "patience": 2})
    assert isinstance(opts.early_stopping, EarlyStopping)
    assert opts.loop_kwargs() == {"epochs": 3, "batch_size": 128, "sampler": "shuffle",
                                  "balance_by": "group", "early_stopping": opts.early_stopping,
                                  "flooding": None, "device": "auto"}
    with pytest.raises(ParamError, match="early_stopping: 'val_accuracy' is a validation "
                                         "metric: set val_fraction > 0"):
        check_params(TrainingOptions, {"early_stopping": {"metric": "val_accuracy"}})
    # Early stopping on a training column needs no validation split.
    check_params(TrainingOptions, {"early_stopping": {"metric": "train_loss", "mode": "min"}})
    with pytest.raises(ParamError, match="val_fraction: Input should be less than 1"):
        check_params(TrainingOptions, {"val_fraction": 1.0})


def test_devices():
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(TrustlabError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(TrustlabError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_group_dro_beats_erm_worst_group_on_colored_mnist():
    """The spurious-correlation claim on real data: ERM learns the colour shortcut (worst
    group accuracy near 0); Group DRO's worst group does far better."""
    from trustlab.data import load_dataset

    ds = load_dataset("colored_mnist")
    rows = np.random.default_rng(0).permutation(len(ds.train_idx))[:2000]
    tr = split_tensors(ds, "train", "group").subset(rows)
    te = split_tensors(ds, "test", "group")
    worst = {}
    for method, hp in (("erm", {}), ("group_dro", {"eta": 0.05})):
        m = build_method(method, "mlp", tr, model_params={"width": 64}, hparams=hp, seed=0)
        h = train(m, tr, te, epochs=3, batch_size=100, seed=0)
        worst[method] = h.last["val_worst_group_accuracy"]
    assert worst["erm"] < 0.2
    assert worst["group_dro"] > worst["erm"] + 0.2


def test_train_network_from_a_dataset_with_a_validation_split():
    from trustlab.data import load_dataset

    ds = load_dataset("digits")
    ds = ds.with_split(ds.train_idx[:400], ds.test_idx)
    options = TrainingOptions(epochs=3, batch_size=32, val_fraction=0.25,
                              early_stopping={"metric": "val_accuracy", "patience": 1})
    trained = train_network(ds, "digit", network="mlp", network_params={"width": 16},
                            method="erm", method_params={"lr": 0.01}, options=options, seed=0)
    # A quarter of the 400 training rows (stratified by digit) is the validation split.
    assert trained.n_train == 300 and len(trained.y_test) == len(ds.test_idx)
    assert "val_accuracy" in trained.history.last
    metrics = trained.metrics()
    assert metrics["epochs_run"] == len(trained.history.epochs) <= 3
    assert metrics["n_params"] == 64 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    assert set(trained.artifacts(ds.groups_test["digit"])) == {"history.json",
                                                               "predictions.npz"}
