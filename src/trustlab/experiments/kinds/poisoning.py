"""The ``poisoning`` trial kind (S4, "Attack4Good"): poison the training set to make a
third party's model fairer, then compare the victim before and after on the test split.

Data flow of one trial: load; subsample the training split (seeded); carve a validation
split out of it (seeded, stratified by label); encode features (fitted on the fit part);
train the clean victim; run the attack (every candidate refits the victim on fit + poison
and is scored on validation); retrain the victim on fit + the best poison; audit both
victims on the test split. The victim trains on the fit part in both cases, so the only
difference between "clean" and "poisoned" is the poison.

The sensitive attribute stays a model input by default (``use_sensitive_as_feature``):
the poison points' group is then their value of that attribute, which is what lets them
act on one group. Metrics: ``clean_*``/``poisoned_*`` accuracy and gaps, ``fairness_gain``
(clean gap - poisoned gap for the objective's gap), the poisoned model's flat audit
(``accuracy``, ``demographic_parity_difference``, ``group.<v>.fpr``, ... and
``fpr_difference``) so the generic scatter works, ``n_evaluations``,
``best_validation_objective``, ``clean_validation_objective`` and timings. Artifacts:
``poison.npz`` (X, y, group, feature_names) and ``trace.json`` (one record per evaluation).
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import numpy as np
from pydantic import Field

from trustlab.data.registry import check_options
from trustlab.errors import TrustlabError
from trustlab.experiments.kinds.common import (StrictConfig, Subsample, load_dataset_cached,
                                               subsample_rows)
from trustlab.experiments.kinds import TrialContext, TrialKind, TrialOutput

VICTIMS = ("random_forest", "gradient_boosting", "logistic_regression")


class DatasetConfig(StrictConfig):
    name: str
    sensitive: str
    privileged: str | int | float | bool | None = None
    # Train rows to keep (a fraction in (0, 1] or a count), drawn with the trial seed.
    subsample: Subsample = None
    use_sensitive_as_feature: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class VictimConfig(StrictConfig):
    name: str = "random_forest"
    params: dict[str, Any] = Field(default_factory=dict)  # e.g. n_estimators for speed


class AttackConfig(StrictConfig):
    optimizer: str = "bayesian"
    n_points: int = Field(20, ge=1)
    n_trials: int = Field(30, ge=1)
    objective: str = "fpr_difference"
    accuracy_floor: float | None = Field(None, ge=0, le=1)
    poison_label: int | str = 1          # 0, 1 or "optimize"
    poison_group: str = "unprivileged"   # unprivileged, privileged or optimize
    val_fraction: float = Field(0.3, gt=0, lt=1)
    # gradient optimizer only: outer Adam step and unrolled inner steps
    learning_rate: float = Field(0.3, gt=0)
    inner_steps: int = Field(20, ge=1)


class PoisoningConfig(StrictConfig):
    dataset: DatasetConfig
    victim: VictimConfig = Field(default_factory=VictimConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)


# -- validation ---------------------------------------------------------------------------
def validate(cfg: PoisoningConfig) -> None:
    """Names and combinations, checked before any trial runs."""

    from trustlab.attacks.fairness_poisoning import OBJECTIVES, OPTIMIZERS
    from trustlab.data import get_spec
    from trustlab.training.tabular_models import make_model

    a, d = cfg.attack, cfg.dataset
    if cfg.victim.name not in VICTIMS:
        raise TrustlabError(f"victim.name: unknown victim {cfg.victim.name!r}; choose one of: "
                            f"{', '.join(VICTIMS)}")
    make_model(cfg.victim.name, cfg.victim.params, seed=0)  # unknown parameter
    if a.optimizer not in OPTIMIZERS:
        raise TrustlabError(f"attack.optimizer: unknown optimizer {a.optimizer!r}; choose one "
                            f"of: {', '.join(OPTIMIZERS)}")
    if a.objective not in OBJECTIVES:
        raise TrustlabError(f"attack.objective: unknown objective {a.objective!r}; choose one "
                            f"of: {', '.join(OBJECTIVES)}")
    if a.poison_label not in (0, 1, "optimize") or isinstance(a.poison_label, bool):
        raise TrustlabError(f"attack.poison_label must be 0, 1 or optimize, got "
                            f"{a.poison_label!r}")
    if a.poison_group not in ("unprivileged", "privileged", "optimize"):
        raise TrustlabError(f"attack.poison_group must be unprivileged, privileged or "
                            f"optimize, got {a.poison_group!r}")
    spec = get_spec(d.name)
    if spec.kind != "tabular":
        raise TrustlabError(f"dataset {spec.name!r} is not tabular (it is {spec.kind})")
    check_options(spec, d.options)
    if d.sensitive not in spec.groups:
        raise TrustlabError(f"dataset {spec.name!r} has no sensitive attribute "
                            f"{d.sensitive!r}; choose one of: {', '.join(spec.groups)}")
    if a.poison_group != "optimize" and d.privileged is None:
        raise TrustlabError(f"attack.poison_group: {a.poison_group} needs dataset.privileged "
                            "(which value of the sensitive attribute is privileged)")
    _group_values(d, load_dataset_cached(d.name, 0, d.options))
    if d.use_sensitive_as_feature:
        _sensitive_feature(d, load_dataset_cached(d.name, 0, d.options))


def _group_values(d: DatasetConfig, ds) -> tuple[str, str]:
    """(unprivileged, privileged) values of a binary sensitive attribute."""
    values = sorted(map(str, ds.groups[d.sensitive].unique()))
    if len(values) != 2:
        binary = f"{d.sensitive}_binary"
        hint = f"; {binary} is binary" if binary in ds.groups.columns else ""
        raise TrustlabError(f"poisoning needs a binary sensitive attribute, but "
                            f"{d.sensitive!r} has {len(values)} values{hint}")
    if d.privileged is None:
        return values[0], values[1]
    if str(d.privileged) not in values:
        raise TrustlabError(f"dataset.privileged: {d.privileged!r} is not a value of "
                            f"{d.sensitive!r} ({', '.join(values)})")
    other = next(v for v in values if v != str(d.privileged))
    return other, str(d.privileged)


def _sensitive_feature(d: DatasetConfig, ds) -> str:
    """The feature column that carries the sensitive attribute, if it is that attribute
    itself as a categorical (so the poison's group can be written into its one-hot block)."""
    import pandas as pd

    cols = ds.meta.get("sensitive_features", {}).get(d.sensitive, [d.sensitive])
    col = cols[0] if len(cols) == 1 else None
    ok = (col is not None and col in ds.X.columns
          and not pd.api.types.is_numeric_dtype(ds.X[col])
          and set(map(str, ds.X[col].unique())) == set(map(str, ds.groups[d.sensitive])))
    if not ok:
        raise TrustlabError(
            f"the sensitive attribute {d.sensitive!r} of {d.name!r} is not a categorical "
            "feature column of its own, so poison points cannot carry it; set "
            "dataset.use_sensitive_as_feature: false")
    return col


# -- the data of one trial ------------------------------------------------------------------
def prepare(cfg: PoisoningConfig, seed: int) -> dict[str, Any]:
    """Encoded fit / validation / test arrays, groups, and the poison space of a trial.

    Public so tests (and users) can rebuild exactly what a trial trained on.
    """
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from trustlab.attacks.fairness_poisoning import FeatureBox, PoisonSpace
    from trustlab.training.tabular_models import encode_features

    d, a = cfg.dataset, cfg.attack
    ds = load_dataset_cached(d.name, seed, d.options)
    unpriv, priv = _group_values(d, ds)
    group_feature = _sensitive_feature(d, ds) if d.use_sensitive_as_feature else None
    train_idx = subsample_rows(ds.train_idx, d.subsample, seed)
    y_all = ds.y[train_idx]
    if len(np.unique(y_all)) < 2:
        raise TrustlabError(f"the training split has a single class (subsample "
                            f"{d.subsample!r} is too small)")
    try:
        fit_idx, val_idx = train_test_split(train_idx, test_size=a.val_fraction,
                                            random_state=seed, stratify=y_all)
    except ValueError as exc:
        raise TrustlabError(f"attack.val_fraction {a.val_fraction}: cannot split "
                            f"{len(train_idx)} training rows ({exc})") from None
    fit_idx, val_idx = np.sort(fit_idx), np.sort(val_idx)
    test_idx = np.asarray(ds.test_idx)

    X = ds.X
    if not d.use_sensitive_as_feature:
        drop = ds.meta.get("sensitive_features", {}).get(d.sensitive, [d.sensitive])
        X = X.drop(columns=[c for c in drop if c in X.columns])
    X_fit_raw = X.iloc[fit_idx].reset_index(drop=True)
    rest = X.iloc[np.concatenate([val_idx, test_idx])].reset_index(drop=True)
    X_fit, X_rest, names = encode_features(X_fit_raw, rest)
    X_val, X_test = X_rest[:len(val_idx)], X_rest[len(val_idx):]
    categorical = {c: sorted(map(str, X_fit_raw[c].unique())) for c in X_fit_raw.columns
                   if not pd.api.types.is_numeric_dtype(X_fit_raw[c])}
    # OneHotEncoder orders levels by sorted raw value; names use str(level)
    box = FeatureBox.from_encoded(X_fit, names, categorical, group_feature)
    g = ds.groups[d.sensitive].astype(str).to_numpy()
    if group_feature is not None and set(box.group_columns) != {unpriv, priv}:
        raise TrustlabError(f"the fit split lacks a value of {d.sensitive!r}; use a larger "
                            "subsample")
    group = {"unprivileged": unpriv, "privileged": priv, "optimize": "optimize"}[a.poison_group]
    label = a.poison_label if a.poison_label == "optimize" else int(a.poison_label)
    space = PoisonSpace(box=box, n_points=a.n_points, label=label, group=group,
                        group_values=(unpriv, priv))
    return {"X_fit": X_fit, "y_fit": ds.y[fit_idx], "g_fit": g[fit_idx],
            "X_val": X_val, "y_val": ds.y[val_idx], "g_val": g[val_idx],
            "X_test": X_test, "y_test": ds.y[test_idx], "g_test": g[test_idx],
            "feature_names": names, "space": space, "unprivileged": unpriv,
            "privileged": priv}


def make_objective(cfg: PoisoningConfig, data: dict[str, Any], seed: int):
    from trustlab.attacks.fairness_poisoning import PoisonObjective
    from trustlab.training.tabular_models import make_model

    v = cfg.victim
    return PoisonObjective(lambda: make_model(v.name, v.params, seed=seed),
                           data["X_fit"], data["y_fit"], data["X_val"], data["y_val"],
                           data["g_val"], objective=cfg.attack.objective,
                           accuracy_floor=cfg.attack.accuracy_floor)


# -- the trial ---------------------------------------------------------------------------
def run(cfg: PoisoningConfig, seed: int, ctx: TrialContext) -> TrialOutput:
    from trustlab.attacks.fairness_poisoning import attack, fairness_gaps
    from trustlab.metrics import audit

    a, d = cfg.attack, cfg.dataset
    t_start = time.perf_counter()
    data = prepare(cfg, seed)
    objective = make_objective(cfg, data, seed)

    t0 = time.perf_counter()
    clean_model = objective.fit(None)
    clean_train_time = time.perf_counter() - t0
    clean_val = objective.evaluate(None)

    t0 = time.perf_counter()
    result = attack(objective, data["space"], optimizer=a.optimizer, n_trials=a.n_trials,
                    seed=seed, learning_rate=a.learning_rate, inner_steps=a.inner_steps) \
        if a.optimizer == "gradient" else \
        attack(objective, data["space"], optimizer=a.optimizer, n_trials=a.n_trials, seed=seed)
    attack_time = time.perf_counter() - t0
    poisoned_model = objective.fit(result.best)

    y_test, g_test = data["y_test"], data["g_test"]
    clean_pred = clean_model.predict(data["X_test"])
    poisoned_pred = poisoned_model.predict(data["X_test"])
    clean = fairness_gaps(y_test, clean_pred, g_test)
    poisoned = fairness_gaps(y_test, poisoned_pred, g_test)

    privileged = data["privileged"] if d.privileged is not None else None
    metrics = audit(y_test, poisoned_pred, g_test, privileged=privileged,
                    pos_label=1).flat_metrics()
    metrics["fpr_difference"] = poisoned["fpr_difference"]
    for prefix, gaps in (("clean", clean), ("poisoned", poisoned)):
        for name, value in gaps.items():
            metrics[f"{prefix}_{name}"] = value
    metrics.update({
        "fairness_gain": clean[a.objective] - poisoned[a.objective],
        "accuracy_change": poisoned["accuracy"] - clean["accuracy"],
        "n_evaluations": float(result.n_evaluations),
        "best_validation_objective": result.best_evaluation.objective,
        "clean_validation_objective": clean_val.objective,
        "attack_time_s": attack_time,
        "train_time_s": clean_train_time,
        "trial_time_s": time.perf_counter() - t_start,
        "n_train": float(len(data["y_fit"])), "n_val": float(len(data["y_val"])),
        "n_test": float(len(y_test)), "n_poison": float(a.n_points),
    })

    buf = io.BytesIO()
    np.savez_compressed(buf, X=result.best.X, y=result.best.y.astype(np.int8),
                        group=result.best.group.astype(str),
                        feature_names=np.asarray(data["feature_names"], dtype=str))
    trace = {"objective": a.objective, "optimizer": a.optimizer,
             "clean_validation_objective": clean_val.objective,
             "evaluations": [{"objective": e.objective, "gap": e.gap, "accuracy": e.accuracy,
                              "fpr_difference": e.fpr_difference,
                              "demographic_parity_difference":
                                  e.demographic_parity_difference,
                              "fit_time_s": e.fit_time_s} for e in result.trace]}
    artifacts = {"poison.npz": buf.getvalue(),
                 "trace.json": json.dumps(trace, indent=1).encode()}
    return TrialOutput(metrics=metrics, artifacts=artifacts)


KIND = TrialKind(
    name="poisoning",
    run=run,
    config_model=PoisoningConfig,
    validate=validate,
    summary_metrics=["clean_accuracy", "poisoned_accuracy", "clean_fpr_difference",
                     "poisoned_fpr_difference", "fairness_gain",
                     "best_validation_objective", "attack_time_s"],
    fairness_metrics=["fpr_difference", "statistical_parity_difference",
                      "demographic_parity_difference"],
)


def _register_report_sections() -> None:
    from trustlab.report import register_section
    from trustlab.report.poisoning import before_after_section, trace_section

    register_section("poisoning", before_after_section)
    register_section("poisoning", trace_section)


_register_report_sections()
