"""The one PyTorch training loop. It knows nothing about methods: it batches the data,
calls ``method.update(batch)`` and measures, after every epoch, the train loss and the
accuracy and worst-group accuracy of the train and validation splits.

Determinism: the model is built after ``torch.manual_seed(seed)`` (:func:`build_method`),
the loader's order comes from the seed and runs in-process (``num_workers=0``), so on CPU
the same seed gives the same history and predictions.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from trustlab.errors import TrustlabError
from trustlab.registry import check_params
from trustlab.training.deep.data import SplitTensors, make_loader
from trustlab.training.deep.methods import Method, make_method
from trustlab.training.deep.models import make_model
from trustlab.training.deep.options import EarlyStopping, LoopOptions


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: cuda when available, else cpu."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise TrustlabError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrustlabError("device 'cuda' was asked for but no CUDA GPU is available")
    return dev


def build_method(method: str, model: str, data: SplitTensors, *,
                 model_params: dict[str, Any] | None = None,
                 hparams: dict[str, Any] | None = None, seed: int = 0,
                 device: str | torch.device | None = None) -> Method:
    """A fresh model wrapped in a method, initialised from ``seed``, on ``device``."""
    torch.manual_seed(seed)
    net = make_model(model, data.input_shape, data.n_classes, **(model_params or {}))
    return make_method(method, net, data.n_classes, data.n_groups, hparams).to(
        resolve_device(device))


@dataclass
class History:
    """Per-epoch records (``epoch``, ``train_loss``, ``train_ce``, ``train_accuracy``,
    ``train_worst_group_accuracy``, ``val_*`` with a validation split, ``seconds``, and
    ``train_<name>``: the epoch mean of every other value the method logs)."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    # val_* of the final model when the method changed it after the last epoch
    # (embedding SMOTE's head refit); empty otherwise
    after_finish: dict[str, float] = field(default_factory=dict)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.epochs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def last(self) -> dict[str, float]:
        return self.epochs[-1] if self.epochs else {}


@torch.no_grad()
def predict_logits(method: Method, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits for ``x`` in eval mode (batched, on the method's device), returned on CPU."""
    device = next(method.parameters()).device
    was_training = method.training
    method.eval()
    try:
        parts = [method.predict(x[i:i + batch_size].to(device)).cpu()
                 for i in range(0, len(x), batch_size)]
    finally:
        method.train(was_training)
    return torch.cat(parts) if parts else torch.empty(0, method.n_classes)


def predict(method: Method, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Predicted class indices."""
    return predict_logits(method, x, batch_size).argmax(1).numpy()


def group_accuracies(y_true: np.ndarray, y_pred: np.ndarray, g: np.ndarray,
                     n_groups: int) -> np.ndarray:
    """Accuracy per group id (NaN for a group with no rows)."""
    correct = np.bincount(g, weights=(y_true == y_pred).astype(float), minlength=n_groups)
    counts = np.bincount(g, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)


def evaluate(method: Method, data: SplitTensors, batch_size: int = 1024) -> dict[str, float]:
    """Accuracy, worst-group accuracy and mean cross-entropy (``log_loss``, in eval mode,
    no penalty) of ``method`` on a split."""
    logits = predict_logits(method, data.x, batch_size)
    pred = logits.argmax(1).numpy()
    y, g = data.y.numpy(), data.g.numpy()
    per_group = group_accuracies(y, pred, g, data.n_groups)
    return {"accuracy": float((pred == y).mean()),
            "worst_group_accuracy": float(np.nanmin(per_group)),
            "log_loss": mean_log_loss(logits, data.y)}


def mean_log_loss(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy of ``logits`` (in float64) against ``y``; NaN with no rows."""
    if not len(y):
        return float("nan")
    return float(torch.nn.functional.cross_entropy(logits.double(), y).item())


def train(method: Method, train_data: SplitTensors, val_data: SplitTensors | None = None, *,
          epochs: int, batch_size: int, seed: int, device: str | torch.device | None = None,
          sampler: str | None = None, balance_by: str | None = None,
          early_stopping: EarlyStopping | dict[str, Any] | None = None,
          flooding: float | None = None, eval_train: bool = True,
          on_epoch: Callable[[dict[str, float]], None] | None = None) -> History:
    """Train ``method`` in place for up to ``epochs`` epochs and return its history.

    The options are those of :class:`~trustlab.training.deep.options.LoopOptions`, checked
    against it (None: its default): ``sampler`` is one of
    :data:`~trustlab.training.deep.options.SAMPLERS`; ``balance_by`` picks the strata it
    balances (``group`` or ``class``); ``early_stopping`` (an :class:`EarlyStopping` or its
    mapping) needs ``val_data`` when its metric is a ``val_*`` column; ``flooding`` (a
    flood level) floods the method's whole objective at every step. ``on_epoch``
    receives each record (e.g. to drive a progress bar).
    """
    given = {"epochs": epochs, "batch_size": batch_size, "sampler": sampler,
             "balance_by": balance_by, "early_stopping": early_stopping,
             "flooding": flooding}
    loop = check_params(LoopOptions, {k: v for k, v in given.items() if v is not None})
    early_stopping = loop.early_stopping
    if early_stopping is not None and early_stopping.metric.startswith("val_") \
            and val_data is None:
        raise TrustlabError(f"early stopping on {early_stopping.metric!r} needs a "
                            "validation split")
    dev = resolve_device(device)
    method.to(dev)
    torch.manual_seed(seed)  # dropout masks, PGD starts
    fit_data = method.training_set(train_data, seed, loop.batch_size)  # JTT reshapes it
    loader = make_loader(fit_data, loop.batch_size, seed, loop.sampler, loop.balance_by)
    method.prepare(fit_data.y, fit_data.g)
    method.bind_data(fit_data.x, fit_data.y, fit_data.g, seed)

    history = History()
    best_value: float | None = None
    best_state: dict[str, Any] | None = None
    stale = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        method.train()
        sums: dict[str, float] = {}
        n_seen = 0
        for x, y, g in loader:
            logs = method.update((x.to(dev), y.to(dev), g.to(dev)), flooding=loop.flooding)
            n = len(y)
            n_seen += n
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value * n
        record: dict[str, float] = {"epoch": epoch}
        record.update({f"train_{k}": v / max(n_seen, 1) for k, v in sums.items()})
        if eval_train:
            record.update({f"train_{k}": v for k, v in evaluate(method, train_data).items()})
        if val_data is not None:
            record.update({f"val_{k}": v for k, v in evaluate(method, val_data).items()})
        record["seconds"] = time.perf_counter() - start
        history.epochs.append(record)
        if on_epoch is not None:
            on_epoch(record)

        if early_stopping is not None:
            if early_stopping.metric not in record:
                raise TrustlabError(f"early stopping metric {early_stopping.metric!r} is not "
                                    f"measured; choose one of: "
                                    f"{', '.join(k for k in record if k != 'epoch')}")
            value = record[early_stopping.metric]
            if early_stopping.improved(value, best_value):
                best_value, stale, history.best_epoch = value, 0, epoch
                if early_stopping.restore_best:
                    best_state = copy.deepcopy(method.state_dict())
            else:
                stale += 1
                if stale >= early_stopping.patience:
                    history.stopped_early = epoch < epochs
                    break
    if best_state is not None:
        method.load_state_dict(best_state)
    method.finish(fit_data, seed)  # e.g. embedding SMOTE's head refit
    if type(method).finish is not Method.finish and val_data is not None:
        history.after_finish = {f"val_{k}": v for k, v in evaluate(method, val_data).items()}
    return history


def fit_erm(model: torch.nn.Module, data: SplitTensors, *, epochs: int, batch_size: int,
            seed: int, hparams: dict[str, Any] | None = None,
            device: str | torch.device | None = None) -> Method:
    """Train ``model`` in place with plain ERM on ``data`` through the one loop (no
    per-epoch evaluation) and return the ERM method wrapping it. ``hparams`` are the
    optimizer's (``lr``, ``optimizer``, ``weight_decay``, ``momentum``). What the repairs'
    fine-tuning, JTT's first model and embedding SMOTE's head refit share."""
    torch.manual_seed(seed)
    method = make_method("erm", model, data.n_classes, data.n_groups, hparams)
    train(method, data, epochs=int(epochs), batch_size=int(batch_size), seed=seed,
          device=device, eval_train=False)
    return method
