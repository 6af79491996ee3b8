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
from functools import lru_cache
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from trustlab.errors import TrustlabError
from trustlab.experiments.kinds import TrialContext, TrialKind, TrialOutput


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeepDatasetConfig(_Strict):
    name: str
    # The group column the methods balance/reweigh and the audit reports on
    # (default: the dataset's first group column).
    group: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    subsample: int | float | None = None  # training rows to keep (fraction or count)
    # Tabular data only: keep the group's own columns among the features.
    use_group_as_feature: bool = False

    @field_validator("subsample")
    @classmethod
    def _subsample_range(cls, v):
        if v is None:
            return v
        if isinstance(v, bool) or v <= 0 or (isinstance(v, float) and v > 1):
            raise ValueError("must be a fraction in (0, 1] or a row count >= 1")
        return v


class DeepModelConfig(_Strict):
    name: str = "mlp"
    params: dict[str, Any] = Field(default_factory=dict)


class MethodConfig(_Strict):
    name: str = "erm"
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingConfig(_Strict):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=1)
    sampler: str = "shuffle"
    balance_by: str = "group"
    # Fraction of the training rows held out (stratified by group) as the validation
    # split that early stopping watches; 0 = none.
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    early_stopping: dict[str, Any] | None = None
    device: str = "auto"  # auto = cuda when available, else cpu


class DeepConfig(_Strict):
    dataset: DeepDatasetConfig
    model: DeepModelConfig = Field(default_factory=DeepModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)


def validate(cfg: DeepConfig) -> None:
    """Name checks before anything runs (torch is imported: the sweep will need it)."""
    import inspect

    from trustlab.data import get_spec
    from trustlab.training.deep import METHODS, MODELS, SAMPLERS, resolve_hparams

    spec = get_spec(cfg.dataset.name)
    accepted = set(inspect.signature(spec.loader).parameters) - {"data_dir", "seed"}
    for opt in cfg.dataset.options:
        if opt not in accepted:
            raise TrustlabError(f"dataset {spec.name!r} has no option {opt!r}; options: "
                                f"{', '.join(sorted(accepted)) or 'none'}")
    if cfg.dataset.group is not None and cfg.dataset.group not in spec.groups:
        raise TrustlabError(f"dataset.group: {spec.name!r} has no group column "
                            f"{cfg.dataset.group!r}; choose one of: {', '.join(spec.groups)}")
    if cfg.model.name not in MODELS:
        raise TrustlabError(f"model.name: unknown network {cfg.model.name!r}; choose one of: "
                            f"{', '.join(MODELS)}")
    if cfg.method.name not in METHODS:
        raise TrustlabError(f"method.name: unknown training method {cfg.method.name!r}; "
                            f"choose one of: {', '.join(METHODS)}")
    resolve_hparams(cfg.method.name, cfg.method.params)
    t = cfg.training
    if t.sampler not in SAMPLERS:
        raise TrustlabError(f"training.sampler must be one of {', '.join(SAMPLERS)}, "
                            f"got {t.sampler!r}")
    if t.balance_by not in ("group", "class"):
        raise TrustlabError(f"training.balance_by must be group or class, got {t.balance_by!r}")
    metric = (t.early_stopping or {}).get("metric", "val_worst_group_accuracy")
    if t.early_stopping is not None and str(metric).startswith("val_") and t.val_fraction == 0:
        raise TrustlabError("training.early_stopping watches a validation metric: set "
                            "training.val_fraction > 0 (the test split is never used for it)")


@lru_cache(maxsize=4)
def _load(name: str, seed: int, options_json: str):
    from trustlab.data import load_dataset

    return load_dataset(name, seed=seed, **json.loads(options_json))


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


def run(cfg: DeepConfig, seed: int, ctx: TrialContext) -> TrialOutput:
    from trustlab.experiments.executors import seed_everything
    from trustlab.metrics import audit
    from trustlab.training.deep import build_method, count_parameters, predict, split_tensors
    from trustlab.training.deep import train as train_method

    seed_everything(seed)  # torch is loaded now
    d, t = cfg.dataset, cfg.training
    ds = _load(d.name, seed, json.dumps(d.options, sort_keys=True))
    group = d.group or ds.groups.columns[0]
    ds = _numeric(ds, group, d.use_group_as_feature)

    train_idx = np.asarray(ds.train_idx)
    if d.subsample is not None:
        n = (int(round(d.subsample * len(train_idx))) if isinstance(d.subsample, float)
             else int(d.subsample))
        rng = np.random.default_rng(seed)
        train_idx = np.sort(rng.choice(train_idx, size=max(1, min(n, len(train_idx))),
                                       replace=False))
    val = None
    if t.val_fraction > 0:
        train_idx, val_idx = _split_validation(ds, train_idx, group, t.val_fraction, seed)
        val = split_tensors(ds, "train", group_column=group, indices=val_idx)
    tr = split_tensors(ds, "train", group_column=group, indices=train_idx)
    te = split_tensors(ds, "test", group_column=group)

    method = build_method(cfg.method.name, cfg.model.name, tr, model_params=cfg.model.params,
                          hparams=cfg.method.params, seed=seed, device=t.device)
    t0 = time.perf_counter()
    history = train_method(method, tr, val, epochs=t.epochs, batch_size=t.batch_size,
                           seed=seed, device=t.device, sampler=t.sampler,
                           balance_by=t.balance_by, early_stopping=t.early_stopping)
    train_time = time.perf_counter() - t0
    y_pred = predict(method, te.x)
    y_test = te.y.numpy()

    metrics = audit(y_test, y_pred, ds.groups_test[group].astype(str)).flat_metrics()
    last = history.last
    metrics.update({
        "final_train_loss": float(last.get("train_loss", float("nan"))),
        "final_train_accuracy": float(last.get("train_accuracy", float("nan"))),
        "epochs_run": float(len(history.epochs)),
        "n_params": float(count_parameters(method.model)),
        "n_train": float(len(tr)),
        "n_test": float(len(te)),
        "train_time_s": train_time,
    })
    buf = io.BytesIO()
    np.savez_compressed(buf, y_true=y_test.astype(np.int16), y_pred=y_pred.astype(np.int16),
                        group=ds.groups_test[group].astype(str).to_numpy(dtype=str))
    artifacts = {"history.json": json.dumps(history.to_dict()).encode(),
                 "predictions.npz": buf.getvalue()}
    return TrialOutput(metrics=metrics, artifacts=artifacts)


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
