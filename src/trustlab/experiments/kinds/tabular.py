"""The ``tabular`` trial kind (S3): load, (drop the sensitive columns), encode, train with a
mitigation, audit the test split.

Metrics are the audit's flat names (``accuracy``, ``demographic_parity_difference``,
``group.<value>.selection_rate``, ...) plus ``train_time_s``, ``n_train`` and ``n_test``.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
from pydantic import Field

from trustlab.data.registry import check_options
from trustlab.errors import TrustlabError
from trustlab.experiments.kinds.common import (StrictConfig, Subsample, load_dataset_cached,
                                               subsample_rows)
from trustlab.experiments.kinds import TrialContext, TrialKind, TrialOutput


class DatasetConfig(StrictConfig):
    name: str
    sensitive: str
    privileged: str | int | float | bool | None = None
    use_sensitive_as_feature: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    # Train rows to keep (a fraction in (0, 1] or a count), drawn with the trial seed.
    subsample: Subsample = None


class ModelConfig(StrictConfig):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    save: bool = False  # pickle the fitted model into the trial's artifact directory


class MitigationConfig(StrictConfig):
    name: str = "none"
    params: dict[str, Any] = Field(default_factory=dict)


class TabularConfig(StrictConfig):
    dataset: DatasetConfig
    model: ModelConfig
    mitigation: MitigationConfig = Field(default_factory=MitigationConfig)


def validate(cfg: TabularConfig) -> None:
    """Name checks that need no data: dataset, its options and group, model, mitigation."""

    from trustlab.data import get_spec  # importing trustlab.data registers the loaders
    from trustlab.mitigations import make_mitigation
    from trustlab.training.tabular_models import make_model

    spec = get_spec(cfg.dataset.name)
    if spec.kind != "tabular":
        raise TrustlabError(f"dataset {spec.name!r} is not tabular (it is {spec.kind})")
    check_options(spec, cfg.dataset.options)
    if cfg.dataset.sensitive not in spec.groups:
        raise TrustlabError(f"dataset {spec.name!r} has no sensitive attribute "
                            f"{cfg.dataset.sensitive!r}; choose one of: {', '.join(spec.groups)}")
    make_model(cfg.model.name, cfg.model.params, seed=0)  # unknown name or parameter
    make_mitigation(cfg.mitigation.name, cfg.mitigation.params, seed=0)
    if cfg.dataset.privileged is not None:
        _check_privileged(cfg.dataset)


def _check_privileged(d: DatasetConfig) -> None:
    """``dataset.privileged`` must name one side of a binary sensitive attribute; checked
    on the data before the sweep starts, not after every trial has trained."""
    values = sorted(map(str, load_dataset_cached(d.name, 0, d.options)
                        .groups[d.sensitive].unique()))
    if len(values) != 2:
        from trustlab.data import get_spec

        binary = f"{d.sensitive}_binary"
        hint = f"; {binary} is binary" if binary in get_spec(d.name).groups else ""
        raise TrustlabError(
            f"dataset.privileged needs a binary sensitive attribute, but {d.sensitive!r} has "
            f"{len(values)} values ({', '.join(values[:6])}){hint}")
    if str(d.privileged) not in values:
        raise TrustlabError(f"dataset.privileged: {d.privileged!r} is not a value of "
                            f"{d.sensitive!r} ({', '.join(values)})")


def _mitigation_params(cfg: TabularConfig) -> dict[str, Any]:
    """The mitigation's params, plus ``dataset.privileged`` for methods that take it
    (massaging decides whom to promote from it) unless the params set it already."""
    import inspect

    from trustlab.mitigations import MITIGATIONS

    params = dict(cfg.mitigation.params)
    cls = MITIGATIONS.get(cfg.mitigation.name)
    if (cls is not None and cfg.dataset.privileged is not None and "privileged" not in params
            and "privileged" in inspect.signature(cls.__init__).parameters):
        params["privileged"] = cfg.dataset.privileged
    return params


def run(cfg: TabularConfig, seed: int, ctx: TrialContext) -> TrialOutput:
    from trustlab.metrics import audit
    from trustlab.mitigations import make_mitigation
    from trustlab.training.tabular_models import encode_features, make_model

    d = cfg.dataset
    ds = load_dataset_cached(d.name, seed, d.options)
    if d.subsample is not None:
        ds = ds.with_split(subsample_rows(ds.train_idx, d.subsample, seed), ds.test_idx)

    X_train, X_test = ds.X_train, ds.X_test
    if not d.use_sensitive_as_feature:
        drop = ds.meta.get("sensitive_features", {}).get(d.sensitive, [d.sensitive])
        X_train = X_train.drop(columns=[c for c in drop if c in X_train.columns])
        X_test = X_test.drop(columns=[c for c in drop if c in X_test.columns])
    Xtr, Xte, _ = encode_features(X_train, X_test)
    s_train = ds.groups_train[d.sensitive].to_numpy()
    s_test = ds.groups_test[d.sensitive].to_numpy()
    y_train, y_test = ds.y_train, ds.y_test
    if len(np.unique(y_train)) < 2:
        raise TrustlabError(f"the training split has a single class (subsample "
                            f"{d.subsample!r} is too small)")

    estimator = make_model(cfg.model.name, cfg.model.params, seed=seed)
    mit = make_mitigation(cfg.mitigation.name, _mitigation_params(cfg), seed=seed)
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

    buf = io.BytesIO()
    arrays = {"y_true": y_test.astype(np.int8), "y_pred": y_pred.astype(np.int8),
              "group": s_test.astype(str)}
    if y_score is not None:
        arrays["y_score"] = np.asarray(y_score, dtype=np.float32)
    np.savez_compressed(buf, **arrays)
    artifacts = {"predictions.npz": buf.getvalue()}
    if cfg.model.save:
        import pickle

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
)


def _register_report_sections() -> None:
    from trustlab.report import register_section
    from trustlab.report.tabular import group_rates_section

    register_section("tabular", group_rates_section)


_register_report_sections()
