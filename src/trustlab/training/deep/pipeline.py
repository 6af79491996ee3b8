"""Train a registered network with a registered method on a dataset's training split and
predict its test split: what the deep trial kinds share.

    ds = numeric_features(load_dataset("german"), "sex", keep_group=False)
    trained = train_network(ds, "sex", network="mlp", network_params={"width": 16},
                            method="group_dro", method_params={"eta": 0.05},
                            options=TrainingOptions(epochs=3), seed=0)
    trained.metrics(), trained.artifacts(ds.groups_test["sex"])
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from trustlab.registry import ParamError
from trustlab.training.deep.options import TrainingOptions


def check_dataset(name: str, options: dict[str, Any], group: str | None = None):
    """The spec of dataset ``name`` once its loader ``options`` and its ``group`` column
    (if given) are checked, before any data is read. A missing group column is a
    :class:`~trustlab.registry.ParamError` on key ``group``."""
    from trustlab.data import get_spec
    from trustlab.data.registry import check_options

    spec = get_spec(name)
    check_options(spec, options)
    if group is not None and group not in spec.groups:
        raise ParamError("group", f"{spec.name!r} has no group column {group!r}; "
                                  f"choose one of: {', '.join(spec.groups)}")
    return spec


def numeric_features(ds, group: str, keep_group: bool):
    """Tabular datasets: drop the group's own columns (unless ``keep_group``) and one-hot
    encode, fitted on the training rows; images pass through."""
    if ds.is_image:
        return ds
    from trustlab.training.tabular_models import encode_features

    X = ds.X
    if not keep_group:
        drop = ds.meta.get("sensitive_features", {}).get(group, [group])
        X = X.drop(columns=[c for c in drop if c in X.columns])
    X_train, X_test, _ = encode_features(X.iloc[ds.train_idx], X.iloc[ds.test_idx])
    dense = np.zeros((ds.n_rows, X_train.shape[1]), dtype=np.float32)
    dense[ds.train_idx], dense[ds.test_idx] = X_train, X_test
    return replace(ds, X=dense, meta=dict(ds.meta))


def split_validation(ds, train_idx: np.ndarray, group: str, fraction: float, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``train_idx`` split into (fit, validation) rows, stratified by ``group`` when every
    group is large enough, both sorted."""
    from sklearn.model_selection import train_test_split

    strata = ds.groups[group].astype(str).to_numpy()[train_idx]
    try:
        fit_idx, val_idx = train_test_split(train_idx, test_size=fraction,
                                            random_state=seed, stratify=strata)
    except ValueError:  # a group too small to stratify: fall back to a plain split
        fit_idx, val_idx = train_test_split(train_idx, test_size=fraction, random_state=seed)
    return np.sort(fit_idx), np.sort(val_idx)


@dataclass
class Trained:
    """What :func:`train_network` returns: test labels and predictions, the history, sizes."""

    y_test: np.ndarray
    y_pred: np.ndarray
    history: Any
    n_params: int
    n_train: int
    train_time_s: float
    train_rows: np.ndarray | None = None   # the rows fitted (training split minus validation)
    y_train: np.ndarray | None = None
    y_pred_train: np.ndarray | None = None
    train_log_loss: float = float("nan")   # final model, eval mode, no penalty
    test_log_loss: float = float("nan")

    def metrics(self) -> dict[str, float]:
        """The last epoch's training loss and accuracy, epochs run, sizes and time, and the
        final model's mean cross-entropy on the fitted rows (``train.log_loss``) and on the
        test rows (``log_loss``)."""
        last = self.history.last
        return {
            "final_train_loss": float(last.get("train_loss", float("nan"))),
            "final_train_accuracy": float(last.get("train_accuracy", float("nan"))),
            "epochs_run": float(len(self.history.epochs)),
            "n_params": float(self.n_params),
            "n_train": float(self.n_train),
            "n_test": float(len(self.y_test)),
            "train_time_s": self.train_time_s,
            "train.log_loss": self.train_log_loss,
            "log_loss": self.test_log_loss,
        }

    def artifacts(self, groups, train_groups=None) -> dict[str, bytes]:
        """``history.json`` and ``predictions.npz`` (test labels, predictions, ``groups``;
        with ``train_groups`` also ``train_y_true``, ``train_y_pred``, ``train_group`` of
        the fitted rows)."""
        arrays = {"y_true": self.y_test.astype(np.int16), "y_pred": self.y_pred.astype(np.int16),
                  "group": np.asarray(groups).astype(str)}
        if train_groups is not None and self.y_train is not None:
            arrays.update(train_y_true=self.y_train.astype(np.int16),
                          train_y_pred=self.y_pred_train.astype(np.int16),
                          train_group=np.asarray(train_groups).astype(str))
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return {"history.json": json.dumps(self.history.to_dict()).encode(),
                "predictions.npz": buf.getvalue()}


def train_network(ds, group: str, *, network: str, network_params: dict[str, Any] | None,
                  method: str, method_params: dict[str, Any] | None,
                  options: TrainingOptions, seed: int) -> Trained:
    """Train ``method`` on ``network`` over ``ds``'s training rows (minus a validation part
    of ``options.val_fraction``, stratified by ``group``) and predict its test rows.
    ``ds`` must be numeric (see :func:`numeric_features`); ``group`` is the column methods
    and samplers use."""
    from trustlab.training.deep.models import count_parameters
    from trustlab.training.deep.data import split_tensors
    from trustlab.training.deep.trainer import (build_method, mean_log_loss, predict_logits,
                                                train)

    train_idx, val = ds.train_idx, None
    if options.val_fraction > 0:
        train_idx, val_idx = split_validation(ds, train_idx, group, options.val_fraction, seed)
        val = split_tensors(ds, "train", group_column=group, indices=val_idx)
    tr = split_tensors(ds, "train", group_column=group, indices=train_idx)
    te = split_tensors(ds, "test", group_column=group)

    fitted = build_method(method, network, tr, model_params=network_params,
                          hparams=method_params, seed=seed, device=options.device)
    t0 = time.perf_counter()
    history = train(fitted, tr, val, seed=seed, **options.loop_kwargs())
    train_time_s = time.perf_counter() - t0
    # The fitted rows are predicted too: a gap that closes on them and not on the test
    # split is MinDiff's "illusion of fairness". One forward pass per split.
    logits_te, logits_tr = predict_logits(fitted, te.x), predict_logits(fitted, tr.x)
    return Trained(y_test=te.y.numpy(), y_pred=logits_te.argmax(1).numpy(), history=history,
                   n_params=count_parameters(fitted.model), n_train=len(tr),
                   train_time_s=train_time_s, train_rows=np.asarray(train_idx),
                   y_train=tr.y.numpy(), y_pred_train=logits_tr.argmax(1).numpy(),
                   train_log_loss=mean_log_loss(logits_tr, tr.y),
                   test_log_loss=mean_log_loss(logits_te, te.y))


__all__ = ["Trained", "check_dataset", "numeric_features", "split_validation",
           "train_network"]
