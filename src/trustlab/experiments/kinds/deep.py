"""The ``deep`` trial kind (S5): train a PyTorch network with an in-processing method and
audit it per group on the test split.

    kind: deep
    dataset: {name: colored_mnist, group: group}       # group: the column methods use
    model: {name: mlp, params: {width: 128}}
    method: {name: group_dro, params: {eta: 0.05, lr: 1e-3}}   # method + optimizer hparams
    training: {epochs: 5, batch_size: 128, sampler: shuffle}

Metrics are the audit's flat names on the test split (``accuracy``, ``worst_group_accuracy``,
``group.<g>.accuracy``, ...) plus the last epoch's training loss (MinDiff's "illusion of
fairness" shows there), ``epochs_run``, ``n_params`` and ``train_time_s``. The per-epoch
history is the trial's ``history.json`` artifact; the report draws it as training curves.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from trustlab.data.registry import check_options
from trustlab.errors import TrustlabError
from trustlab.experiments.kinds.common import (StrictConfig, Subsample, load_dataset_cached,
                                               subsample_rows)
from trustlab.experiments.kinds import TrialContext, TrialKind, TrialOutput


class DeepDatasetConfig(StrictConfig):
    name: str
    # The group column the methods balance/reweigh and the audit reports on
    # (default: the dataset's first group column).
    group: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    subsample: Subsample = None  # training rows to keep (fraction or count)
    # Tabular data only: keep the group's own columns among the features.
    use_group_as_feature: bool = False


class DeepModelConfig(StrictConfig):
    name: str = "mlp"
    params: dict[str, Any] = Field(default_factory=dict)


class MethodConfig(StrictConfig):
    name: str = "erm"
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingConfig(StrictConfig):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=1)
    sampler: str = "shuffle"
    balance_by: str = "group"
    # Fraction of the training rows held out (stratified by group) as the validation
    # split that early stopping watches; 0 = none.
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    early_stopping: dict[str, Any] | None = None
    device: str = "auto"  # auto = cuda when available, else cpu


class DeepConfig(StrictConfig):
    dataset: DeepDatasetConfig
    model: DeepModelConfig = Field(default_factory=DeepModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)


def validate_dataset(name: str, options: dict[str, Any], group: str | None):

    from trustlab.data import get_spec

    spec = get_spec(name)
    check_options(spec, options)
    if group is not None and group not in spec.groups:
        raise TrustlabError(f"dataset.group: {spec.name!r} has no group column "
                            f"{group!r}; choose one of: {', '.join(spec.groups)}")
    return spec


def validate_training(model: DeepModelConfig, method: MethodConfig, t: TrainingConfig) -> None:
    """Network, method, hyper-parameters and loop options, checked before anything runs."""
    from trustlab.training.deep import METHODS, MODELS, SAMPLERS, resolve_hparams

    if model.name not in MODELS:
        raise TrustlabError(f"model.name: unknown network {model.name!r}; choose one of: "
                            f"{', '.join(MODELS)}")
    if method.name not in METHODS:
        raise TrustlabError(f"method.name: unknown training method {method.name!r}; "
                            f"choose one of: {', '.join(METHODS)}")
    resolve_hparams(method.name, method.params)
    if t.sampler not in SAMPLERS:
        raise TrustlabError(f"training.sampler must be one of {', '.join(SAMPLERS)}, "
                            f"got {t.sampler!r}")
    if t.balance_by not in ("group", "class"):
        raise TrustlabError(f"training.balance_by must be group or class, got {t.balance_by!r}")
    metric = (t.early_stopping or {}).get("metric", "val_worst_group_accuracy")
    if t.early_stopping is not None and str(metric).startswith("val_") and t.val_fraction == 0:
        raise TrustlabError("training.early_stopping watches a validation metric: set "
                            "training.val_fraction > 0 (the test split is never used for it)")


def validate(cfg: DeepConfig) -> None:
    """Name checks before anything runs (torch is imported: the sweep will need it)."""
    validate_dataset(cfg.dataset.name, cfg.dataset.options, cfg.dataset.group)
    validate_training(cfg.model, cfg.method, cfg.training)


def _numeric(ds, group: str, keep_group: bool):
    """Tabular datasets: drop the group's own columns (unless asked) and one-hot encode,
    fitted on the training rows; images pass through."""
    if ds.is_image:
        return ds
    from dataclasses import replace

    from trustlab.training.tabular_models import encode_features

    X = ds.X
    if not keep_group:
        drop = ds.meta.get("sensitive_features", {}).get(group, [group])
        X = X.drop(columns=[c for c in drop if c in X.columns])
    X_train, X_test, _ = encode_features(X.iloc[ds.train_idx], X.iloc[ds.test_idx])
    dense = np.zeros((ds.n_rows, X_train.shape[1]), dtype=np.float32)
    dense[ds.train_idx], dense[ds.test_idx] = X_train, X_test
    return replace(ds, X=dense, meta=dict(ds.meta))


def _split_validation(ds, train_idx: np.ndarray, group: str, fraction: float, seed: int):
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
    """What :func:`train_on` returns: test labels and predictions, the history, sizes."""

    y_test: np.ndarray
    y_pred: np.ndarray
    history: Any
    n_params: int
    n_train: int
    train_time_s: float


def train_on(ds, group: str, model: DeepModelConfig, method_cfg: MethodConfig,
             t: TrainingConfig, seed: int, subsample: Subsample = None) -> Trained:
    """Train ``method_cfg`` on ``ds``'s training split (optionally subsampled, minus a
    validation part) and predict its test split. Shared by the deep-based kinds."""
    from trustlab.experiments.executors import seed_everything
    from trustlab.training.deep import build_method, count_parameters, predict, split_tensors
    from trustlab.training.deep import train as train_method

    seed_everything(seed)  # torch is loaded now
    train_idx = subsample_rows(ds.train_idx, subsample, seed)
    val = None
    if t.val_fraction > 0:
        train_idx, val_idx = _split_validation(ds, train_idx, group, t.val_fraction, seed)
        val = split_tensors(ds, "train", group_column=group, indices=val_idx)
    tr = split_tensors(ds, "train", group_column=group, indices=train_idx)
    te = split_tensors(ds, "test", group_column=group)

    method = build_method(method_cfg.name, model.name, tr, model_params=model.params,
                          hparams=method_cfg.params, seed=seed, device=t.device)
    t0 = time.perf_counter()
    history = train_method(method, tr, val, epochs=t.epochs, batch_size=t.batch_size,
                           seed=seed, device=t.device, sampler=t.sampler,
                           balance_by=t.balance_by, early_stopping=t.early_stopping)
    return Trained(y_test=te.y.numpy(), y_pred=predict(method, te.x), history=history,
                   n_params=count_parameters(method.model), n_train=len(tr),
                   train_time_s=time.perf_counter() - t0)


def training_metrics(trained: Trained) -> dict[str, float]:
    last = trained.history.last
    return {
        "final_train_loss": float(last.get("train_loss", float("nan"))),
        "final_train_accuracy": float(last.get("train_accuracy", float("nan"))),
        "epochs_run": float(len(trained.history.epochs)),
        "n_params": float(trained.n_params),
        "n_train": float(trained.n_train),
        "n_test": float(len(trained.y_test)),
        "train_time_s": trained.train_time_s,
    }


def prediction_artifacts(trained: Trained, groups) -> dict[str, bytes]:
    buf = io.BytesIO()
    np.savez_compressed(buf, y_true=trained.y_test.astype(np.int16),
                        y_pred=trained.y_pred.astype(np.int16),
                        group=groups.astype(str).to_numpy(dtype=str))
    return {"history.json": json.dumps(trained.history.to_dict()).encode(),
            "predictions.npz": buf.getvalue()}


def run(cfg: DeepConfig, seed: int, ctx: TrialContext) -> TrialOutput:
    from trustlab.metrics import audit

    d = cfg.dataset
    ds = load_dataset_cached(d.name, seed, d.options)
    group = d.group or ds.groups.columns[0]
    ds = _numeric(ds, group, d.use_group_as_feature)
    trained = train_on(ds, group, cfg.model, cfg.method, cfg.training, seed, d.subsample)
    metrics = audit(trained.y_test, trained.y_pred,
                    ds.groups_test[group].astype(str)).flat_metrics()
    metrics.update(training_metrics(trained))
    return TrialOutput(metrics=metrics,
                       artifacts=prediction_artifacts(trained, ds.groups_test[group]))


KIND = TrialKind(
    name="deep",
    run=run,
    config_model=DeepConfig,
    validate=validate,
    summary_metrics=["accuracy", "balanced_accuracy", "worst_group_accuracy",
                     "accuracy_difference", "final_train_loss", "epochs_run", "train_time_s"],
    fairness_metrics=["accuracy_difference", "demographic_parity_difference"],
)


def _register_report_sections() -> None:
    from trustlab.report import register_section
    from trustlab.report.deep import training_curves_section

    register_section("deep", training_curves_section)


_register_report_sections()
