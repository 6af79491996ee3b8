"""Shared pieces of the training-set filters (``spectral_signatures``,
``activation_clustering``): the backdoored model's penultimate representation of the
training rows, retraining without the flagged rows, and the detection metrics.

A filter scores every training row of ``case.poisoned`` (higher = more suspicious), removes
some rows and retrains a fresh model the same way on the rest (``case.retrain``). Its
metrics, under its prefix:

* ``auc``: ROC AUC of the scores, poisoned vs clean training rows (NaN without both);
* ``auc_target_label``: the same among the rows labelled with the attack's target (the
  label every poisoned row carries), i.e. how well the filter ranks rows inside the one
  label where the poison is — what the papers plot;
* ``n_removed``, ``flagged_fraction`` (``n_removed / n`` training rows), ``precision`` and
  ``recall`` of the removed rows against ``is_poison`` (0 when undefined, as scikit-learn's
  ``zero_division=0``).

The ground truth (``is_poison``, ``target``) serves these metrics only, never the filter.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from trustlab.defenses.base import Defense, DefenseOutcome, scores_npz
from trustlab.errors import TrustlabError

if TYPE_CHECKING:
    from trustlab.attacks.backdoor import BackdoorCase


def model_on(model, device: Any):
    """``model`` itself when it already lives on ``device`` (resolved), else a copy moved
    there (the case's model is never moved in place)."""
    from trustlab.training.deep import resolve_device

    dev = resolve_device(device)
    params = next(model.parameters(), None)
    if params is None or params.device == dev:
        return model, dev
    return copy.deepcopy(model).to(dev), dev


def penultimate_features(model, x: np.ndarray, device: Any = None,
                         batch_size: int = 512) -> np.ndarray:
    """``model.features(x)`` (the representation the classifier reads), float64 (N, D), in
    eval mode and batched on ``device`` (None: where the model is)."""
    import torch

    if not hasattr(model, "features"):
        raise TrustlabError("this defense needs a network with a features(x) method "
                            "(its penultimate representation), e.g. small_cnn")
    if device is not None:
        model, dev = model_on(model, device)
    else:
        dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    try:
        with torch.inference_mode():
            parts = [model.features(xt[i:i + batch_size].to(dev)).flatten(1).double().cpu()
                     for i in range(0, len(xt), batch_size)]
    finally:
        model.train(was_training)
    if not parts:
        return np.zeros((0, 0))
    return torch.cat(parts).numpy()


def check_training_set(case: BackdoorCase, name: str) -> None:
    if case.poisoned is None or len(case.poisoned.y) == 0:
        raise TrustlabError(f"{name} filters the training set: this backdoor case does not "
                            "carry it (case.poisoned)")


def retrain_without(case: BackdoorCase, removed: np.ndarray):
    """A fresh model trained like the backdoored one on the training rows not ``removed``
    (bool per row). With nothing removed that is the backdoored model's own training run
    (same data, same seed): a copy of it is returned instead of training again."""
    removed = np.asarray(removed, dtype=bool)
    if not removed.any():
        return copy.deepcopy(case.model)
    keep = ~removed
    if not keep.any():
        raise TrustlabError("the filter flagged every training row: nothing left to retrain "
                            "on")
    p = case.poisoned
    return case.retrain(p.x[keep], p.y[keep], p.is_poison[keep])


def _auc(truth: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(truth, dtype=bool)
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, scores))


def filter_metrics(prefix: str, scores: np.ndarray, removed: np.ndarray,
                   case: BackdoorCase) -> dict[str, float]:
    """The metrics of the module docstring, named ``<prefix>.<metric>``."""
    from sklearn.metrics import precision_score, recall_score

    truth = np.asarray(case.poisoned.is_poison, dtype=bool)
    removed = np.asarray(removed, dtype=bool)
    in_target = np.asarray(case.poisoned.y) == case.target
    n_removed = int(removed.sum())
    return {
        f"{prefix}.auc": _auc(truth, scores),
        f"{prefix}.auc_target_label": _auc(truth[in_target], scores[in_target]),
        f"{prefix}.n_removed": float(n_removed),
        f"{prefix}.flagged_fraction": n_removed / len(truth),
        f"{prefix}.precision": float(precision_score(truth, removed, zero_division=0)),
        f"{prefix}.recall": float(recall_score(truth, removed, zero_division=0)),
    }


class TrainingSetFilter(Defense):
    """Base of the defenses that score every training row from the backdoored model's
    penultimate features, remove the rows they flag and retrain (spectral signatures,
    activation clustering). A subclass implements :meth:`flag`, which sets ``removed_``
    (bool per row) and returns the per-row scores (higher = more suspicious), and may add
    metrics in :meth:`extra_metrics`; its ``Params`` declare ``batch_size``."""

    def flag(self, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def extra_metrics(self) -> dict[str, float]:
        return {}

    def defend(self, case: BackdoorCase) -> DefenseOutcome:
        check_training_set(case, self.name)
        p = case.poisoned
        feats = penultimate_features(case.model, p.x, self.device or case.device,
                                     self.batch_size)
        scores = self.flag(feats, p.y)
        metrics = filter_metrics(self.name, scores, self.removed_, case)
        metrics.update(self.extra_metrics())
        return DefenseOutcome(metrics=metrics, model=retrain_without(case, self.removed_),
                              artifacts={f"{self.name}_scores.npz": scores_npz(
                                  scores, p.is_poison)})


__all__ = ["TrainingSetFilter", "check_training_set", "filter_metrics", "model_on",
           "penultimate_features", "retrain_without"]
