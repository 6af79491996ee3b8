"""The deep training loop: determinism, per-epoch metrics against the audit engine,
early stopping, devices, and a real spurious-correlation check on colored_mnist."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import trustlab.metrics
from trustlab.errors import TrustlabError
from trustlab.training.deep import (
    EarlyStopping,
    build_method,
    evaluate,
    predict,
    resolve_device,
    split_tensors,
    train,
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
                               "worst_group_accuracy": h.last["val_worst_group_accuracy"]}


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


def test_devices():
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(TrustlabError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(TrustlabError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_group_dro_beats_erm_worst_group_on_colored_mnist():
    """The S5 claim on real data: ERM learns the colour shortcut (worst training group
    accuracy near 0); Group DRO's worst group does far better."""
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
