"""The ``tabular`` trial kind: load, (drop the sensitive columns), encode, train a tabular
model with a bias mitigation, audit the test split.

    kind: tabular
    dataset: {name: adult, sensitive: sex, privileged: Male}
    model: {name: xgboost, params: {n_estimators: 400}}      # trustlab list models
    mitigation: {name: group_thresholds, params: {cv: 5}}   # trustlab list mitigations

Metrics are the audit's flat names (``accuracy``, ``demographic_parity_difference``,
``group.<value>.selection_rate``, ...) plus ``train_time_s``, ``n_train`` and ``n_test``.
Artifacts: ``predictions.npz`` (test split) and, with ``model.save``, ``model.pkl``.
"""

from __future__ import annotations

import io
import pickle
import time
import warnings
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from trustlab.errors import TrustlabError
from trustlab.experiments.kinds import TrialContext, TrialKind, TrialOutput
from trustlab.experiments.kinds.common import (Choice, StrictConfig, Subsample,
                                               load_dataset_cached, subsample_rows)
from trustlab.registry import ParamError


class DatasetConfig(StrictConfig):
    name: str = Field(description="a registered tabular dataset (trustlab list datasets)")
    sensitive: str = Field(description="the sensitive attribute (one of the dataset's groups)")
    privileged: str | int | float | bool | None = Field(None, description="its privileged "
                                                        "value (binary attributes only)")
    use_sensitive_as_feature: bool = Field(False, description="keep its columns as features")
    options: dict[str, Any] = Field(default_factory=dict, description="loader options")
    subsample: Subsample = Field(None, description="training rows kept (fraction or count)")


class ModelChoice(Choice):
    """``{name, params, save}`` of a tabular model (the ``models`` registry)."""

    stage: ClassVar[str] = "models"
    save: bool = Field(False, description="pickle the fitted mitigation and model (model.pkl)")


class MitigationChoice(Choice):
    """``{name, params}`` of a mitigation (the ``mitigations`` registry)."""

    stage: ClassVar[str] = "mitigations"
    name: str = "none"


class TabularConfig(StrictConfig):
    dataset: DatasetConfig
    model: ModelChoice
    mitigation: MitigationChoice = Field(default_factory=MitigationChoice)


def validate(cfg: TabularConfig) -> None:
    """Dataset, loader options, sensitive attribute and (on the data) privileged value."""
    from trustlab.data import get_spec  # importing trustlab.data registers the loaders
    from trustlab.data.registry import check_options

    d = cfg.dataset
    try:
        spec = get_spec(d.name)
    except TrustlabError as exc:
        raise ParamError("dataset.name", str(exc)) from None
    if spec.kind != "tabular":
        raise ParamError("dataset.name", f"dataset {d.name!r} is not tabular ({spec.kind})")
    try:
        check_options(spec, d.options)
    except ParamError as exc:
        raise exc.under("dataset") from None
    if d.sensitive not in spec.groups:
        raise ParamError("dataset.sensitive", f"dataset {spec.name!r} has no sensitive "
                         f"attribute {d.sensitive!r}; choose one of: {', '.join(spec.groups)}")
    if d.privileged is None:
        return
    # one side of a binary attribute: checked on the data before the sweep starts
    values = sorted(map(str, load_dataset_cached(d.name, 0, d.options)
                        .groups[d.sensitive].unique()))
    if len(values) != 2:
        binary = f"{d.sensitive}_binary"
        hint = f"; {binary} is binary" if binary in spec.groups else ""
        raise ParamError("dataset.privileged", f"needs a binary sensitive attribute, but "
                         f"{d.sensitive!r} has {len(values)} values "
                         f"({', '.join(values[:6])}){hint}")
    if str(d.privileged) not in values:
        raise ParamError("dataset.privileged", f"{d.privileged!r} is not a value of "
                                               f"{d.sensitive!r} ({', '.join(values)})")


def _mitigation_effect(mit) -> dict[str, float]:
    """``mitigation.<what it changed>`` and ``mitigation.changed`` (0 when it changed
    nothing, which also warns: a no-op under a method's name would read as its effect)."""
    out = {f"mitigation.{k}": float(v) for k, v in mit.effect().items()}
    reason = mit.unchanged()
    if out or reason:
        out["mitigation.changed"] = float(reason is None)
    if reason:
        warnings.warn(f"mitigation {mit.name!r} changed nothing: {reason}", stacklevel=2)
    return out


def run(cfg: TabularConfig, seed: int, ctx: TrialContext) -> TrialOutput:
    from trustlab.metrics import audit
    from trustlab.mitigations import make_mitigation
    from trustlab.training.tabular_models import encoded_split, make_model

    d = cfg.dataset
    ds = load_dataset_cached(d.name, seed, d.options)
    if d.subsample is not None:
        ds = ds.with_split(subsample_rows(ds.train_idx, d.subsample, seed), ds.test_idx)

    Xtr, Xte = encoded_split(ds, d.sensitive, keep_sensitive=d.use_sensitive_as_feature)
    s_train = ds.groups_train[d.sensitive].to_numpy()
    s_test = ds.groups_test[d.sensitive].to_numpy()
    y_train, y_test = ds.y_train, ds.y_test
    if len(np.unique(y_train)) < 2:
        raise TrustlabError(f"the training split has a single class (subsample "
                            f"{d.subsample!r} is too small)")

    params = dict(cfg.mitigation.params)
    # A method that declares `privileged` (massaging) gets the dataset's unless it sets one.
    if (d.privileged is not None and params.get("privileged") is None
            and "privileged" in cfg.mitigation.entry.Params.model_fields):
        params["privileged"] = d.privileged
    estimator = make_model(cfg.model.name, cfg.model.params, seed=seed)
    mit = make_mitigation(cfg.mitigation.name, params, seed=seed)
    t0 = time.perf_counter()
    mit.fit(estimator, Xtr, y_train, s_train)
    train_time = time.perf_counter() - t0
    y_pred = np.asarray(mit.predict(Xte, s_test))
    y_score = mit.predict_score(Xte, s_test)

    result = audit(y_test, y_pred, ds.groups_test[d.sensitive], y_score=y_score,
                   privileged=d.privileged)
    metrics = result.flat_metrics()
    metrics.update({"train_time_s": train_time, "n_train": float(len(y_train)),
                    "n_test": float(len(y_test))})
    metrics.update(_mitigation_effect(mit))

    buf = io.BytesIO()
    arrays = {"y_true": y_test.astype(np.int8), "y_pred": y_pred.astype(np.int8),
              "group": s_test.astype(str)}
    if y_score is not None:
        arrays["y_score"] = np.asarray(y_score, dtype=np.float32)
    np.savez_compressed(buf, **arrays)
    artifacts = {"predictions.npz": buf.getvalue()}
    if cfg.model.save:
        artifacts["model.pkl"] = pickle.dumps(mit)
    return TrialOutput(metrics=metrics, artifacts=artifacts)


KIND = TrialKind(
    name="tabular",
    run=run,
    config_model=TabularConfig,
    validate=validate,
    # "a|b": the first of a, b the results have (SPD needs dataset.privileged)
    summary_metrics=["accuracy", "balanced_accuracy",
                     "statistical_parity_difference|demographic_parity_difference",
                     "disparate_impact|demographic_parity_ratio",
                     "equalized_odds_difference", "train_time_s"],
    description="Train a tabular model with a bias mitigation and audit it per group",
)
