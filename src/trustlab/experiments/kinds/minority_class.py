"""The ``minority_class`` trial kind: interclass bias under an induced minority class.

One trial keeps ``target_percentage`` % of one class's training rows, trains a network
(``model``, ``method`` and ``training`` as in the ``deep`` kind) and reports how that
class fares on the (untouched) test split and where its errors go::

    kind: minority_class
    dataset: {name: mnist}
    model: {name: small_cnn}
    training: {epochs: 3}
    minority: {label: 3, target_percentage: 5}
    grid:
      minority.label: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
      minority.target_percentage: [1, 5, 10, 25, 50, 100]

``minority.full: true`` is the balanced baseline (every class undersampled to the smallest;
``label`` and ``target_percentage`` are then ignored). Metrics: the audit's per-class
recall/precision/F1 (``class.<k>.recall`` ...), ``minority_accuracy`` (the minority class's
recall), ``minority_f1``, ``minority_train_rows``, and ``absorbed.<j>``: the share of the
minority class's test rows predicted as class ``j``. The report turns all runs into a
class x percentage heatmap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from trustlab.errors import TrustlabError
from trustlab.experiments.kinds import TrialContext, TrialKind, TrialOutput
from trustlab.experiments.kinds.common import (StrictConfig, Subsample, load_dataset_cached,
                                               subsample_rows)
from trustlab.experiments.kinds.deep import (MethodChoice, NetworkChoice, check_training,
                                             train_and_predict)
from trustlab.training.deep.options import TrainingOptions


class MinorityDatasetConfig(StrictConfig):
    name: str = Field(description="a registered dataset (trustlab list datasets)")
    options: dict[str, Any] = Field(default_factory=dict, description="loader options")
    subsample: Subsample = Field(None, description="training rows kept (fraction or count) "
                                                   "before the minority is made")


class MinorityConfig(StrictConfig):
    label: int | str | None = Field(None, description="the minority class (index or name)")
    target_percentage: float = Field(100.0, gt=0, le=100,
                                     description="% of its training rows the class keeps")
    full: bool = Field(False, description="the balanced baseline: every class cut to the "
                                          "smallest")

    @model_validator(mode="after")
    def _label_needed(self):
        if not self.full and self.label is None:
            raise ValueError("label is required unless full: true")
        return self


class SmallCNNByDefault(NetworkChoice):
    name: str = "small_cnn"


class MinorityClassConfig(StrictConfig):
    dataset: MinorityDatasetConfig
    model: SmallCNNByDefault = Field(default_factory=SmallCNNByDefault)
    method: MethodChoice = Field(default_factory=MethodChoice)
    training: TrainingOptions = Field(default_factory=TrainingOptions)
    minority: MinorityConfig


def validate(cfg: MinorityClassConfig) -> None:
    """The dataset and its loader options; the minority label against its classes."""
    from trustlab.training.deep import check_dataset

    check_training(cfg)
    check_dataset(cfg.dataset.name, cfg.dataset.options)
    if not cfg.minority.full:
        ds = load_dataset_cached(cfg.dataset.name, 0, cfg.dataset.options)
        _class_index(ds, cfg.minority.label)


def _class_index(ds, label) -> int:
    if isinstance(label, str) and label in ds.class_names:
        return ds.class_names.index(label)
    try:
        k = int(label)
    except (TypeError, ValueError):
        k = -1
    if not 0 <= k < ds.n_classes:
        raise TrustlabError(f"minority.label: {ds.name} has no class {label!r}; classes "
                            f"0..{ds.n_classes - 1} ({', '.join(map(str, ds.class_names))})")
    return k


def run(cfg: MinorityClassConfig, seed: int, ctx: TrialContext) -> TrialOutput:
    from trustlab.data.transforms import balanced_full, subsample_class
    from trustlab.metrics import audit
    from trustlab.training.deep import numeric_features

    d, m = cfg.dataset, cfg.minority
    ds = load_dataset_cached(d.name, seed, d.options)
    if d.subsample is not None:  # a smaller training set first, then the minority
        ds = ds.with_split(subsample_rows(ds.train_idx, d.subsample, seed), ds.test_idx)
    if m.full:
        ds = balanced_full(ds, seed)
        label = None
    else:
        label = _class_index(ds, m.label)
        ds = subsample_class(ds, label, m.target_percentage, seed)
    group = ds.groups.columns[0]
    ds = numeric_features(ds, group, keep_group=True)
    trained = train_and_predict(ds, group, cfg, seed)

    # Groups are the classes themselves: the per-group table is the per-class one.
    classes = np.asarray(ds.class_names, dtype=object)
    metrics = audit(classes[trained.y_test], classes[trained.y_pred],
                    classes[trained.y_test], multiclass=True).flat_metrics()
    metrics.update(trained.metrics())
    counts = np.bincount(ds.y_train, minlength=ds.n_classes)
    metrics["train_rows"] = float(counts.sum())
    # Recall by class index too: the report compares a class with itself in the baseline.
    for k, name in enumerate(ds.class_names):
        metrics[f"recall_by_index.{k}"] = metrics.get(f"class.{name}.recall", float("nan"))
    if label is not None:
        name = ds.class_names[label]
        rows = trained.y_test == label
        predicted = np.bincount(trained.y_pred[rows], minlength=ds.n_classes) / max(1, rows.sum())
        metrics.update({
            "minority_label": float(label),
            "minority_accuracy": metrics[f"class.{name}.recall"],
            "minority_f1": metrics[f"class.{name}.f1"],
            "minority_train_rows": float(counts[label]),
        })
        for j, share in enumerate(predicted):
            if j != label:
                metrics[f"absorbed.{ds.class_names[j]}"] = float(share)
        others = [j for j in range(ds.n_classes) if j != label]
        metrics["top_absorber"] = float(others[int(np.argmax(predicted[others]))])
    return TrialOutput(metrics=metrics, artifacts=trained.artifacts(ds.groups_test[group]))


KIND = TrialKind(
    name="minority_class",
    run=run,
    config_model=MinorityClassConfig,
    validate=validate,
    summary_metrics=["accuracy", "macro_f1", "minority_accuracy", "minority_f1",
                     "minority_train_rows", "train_time_s"],
    description="Interclass bias: how a class fares when made a minority of the training set",
)
