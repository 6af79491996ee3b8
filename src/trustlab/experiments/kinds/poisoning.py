"""The ``poisoning`` trial kind (Attack4Good): poison the training set to make a third
party's model fairer, then compare the victim before and after on the test split::

    kind: poisoning
    dataset: {name: adult, sensitive: sex, privileged: Male, subsample: 3000}
    victim: {name: random_forest, params: {n_estimators: 50}}
    attack: {optimizer: gradient, n_points: 20, n_trials: 30, learning_rate: 0.3}

``victim`` names a tabular model; ``attack`` is
:class:`~trustlab.attacks.fairness_poisoning.AttackSettings` plus ``optimizer``
(``trustlab list optimizers``) with that optimizer's parameters written flat. A trial
subsamples the training split, prepares the attack's data
(:func:`~trustlab.attacks.fairness_poisoning.prepare`), trains the clean victim, runs the
attack, retrains on fit + the best poison and audits both victims on the test split.
Metrics: ``clean_*``/``poisoned_*`` accuracy and gaps, ``fairness_gain``, the poisoned
model's flat audit, ``n_evaluations``, ``n_victim_refits``, ``protocol_leaky`` (1 with
``attack.protocol: attack4good``: the search was scored on the test split),
``best_validation_objective``, ``clean_validation_objective`` and timings. Artifacts: ``poison.npz`` (X, y, group,
feature_names) and ``trace.json`` (one record per victim evaluation).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from functools import partial
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, field_validator

from trustlab.attacks.fairness_poisoning.settings import AttackSettings
from trustlab.experiments.kinds import TrialContext, TrialKind, TrialOutput
from trustlab.experiments.kinds.common import (Choice, FlatChoice, StrictConfig, Subsample,
                                               load_dataset_cached, subsample_rows)
from trustlab.registry import ParamError

# Victims whose refits the search can afford (one per candidate).
VICTIMS = ("random_forest", "gradient_boosting", "logistic_regression")


class DatasetConfig(StrictConfig):
    name: str = Field(description="a registered tabular dataset")
    sensitive: str = Field(description="the binary sensitive attribute (a group column)")
    privileged: str | int | float | bool | None = Field(None, description="its privileged "
                                                        "value (unless poison_group: optimize)")
    subsample: Subsample = Field(None, description="training rows kept (fraction or count)")
    use_sensitive_as_feature: bool = Field(True, description="the attribute is a model input")
    options: dict[str, Any] = Field(default_factory=dict, description="loader options")


class VictimChoice(Choice):
    """``{name, params}`` of the victim (the ``models`` registry)."""

    stage: ClassVar[str] = "models"
    name: str = Field("random_forest", description=f"the victim: {', '.join(VICTIMS)}")

    @field_validator("name")
    @classmethod
    def _a_victim(cls, name: str) -> str:
        if name not in VICTIMS:
            raise ParamError("", f"unknown victim {name!r}; choose one of: {', '.join(VICTIMS)}")
        return name


class AttackConfig(FlatChoice, AttackSettings):
    """The attack's settings, its ``optimizer`` and that optimizer's parameters (flat)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    stage: ClassVar[str] = "optimizers"
    selector: ClassVar[str] = "optimizer"
    optimizer: str = Field("bayesian", description="the outer optimizer (trustlab list "
                                                   "optimizers)")


class PoisoningConfig(StrictConfig):
    dataset: DatasetConfig
    victim: VictimChoice = Field(default_factory=VictimChoice)
    attack: AttackConfig = Field(default_factory=AttackConfig)


def _config_key(exc: ParamError) -> ParamError:
    """A domain ParamError renamed to its key in the config."""
    block = "attack" if exc.key in AttackSettings.model_fields else "dataset"
    return ParamError(f"{block}.{exc.key}", exc.message)


def validate(cfg: PoisoningConfig) -> None:
    """The dataset and its sensitive attribute, before any trial runs."""
    from trustlab.attacks.fairness_poisoning import check_dataset

    d = cfg.dataset
    if cfg.attack.poison_group != "optimize" and d.privileged is None:
        raise ParamError("attack.poison_group", f"{cfg.attack.poison_group} needs "
                         "dataset.privileged (which value of the sensitive attribute is "
                         "privileged)")
    try:
        check_dataset(d.name, d.options, d.sensitive, privileged=d.privileged,
                      use_sensitive_as_feature=d.use_sensitive_as_feature,
                      load=load_dataset_cached)
    except ParamError as exc:
        raise exc.under("dataset") from None


def run(cfg: PoisoningConfig, seed: int, ctx: TrialContext) -> TrialOutput:
    from trustlab.attacks.fairness_poisoning import fairness_gaps, make_objective, prepare
    from trustlab.metrics import audit
    from trustlab.training.tabular_models import make_model

    a, d, v = cfg.attack, cfg.dataset, cfg.victim
    t_start = time.perf_counter()
    ds = load_dataset_cached(d.name, seed, d.options)
    ds = ds.with_split(subsample_rows(ds.train_idx, d.subsample, seed), ds.test_idx)
    try:
        data = prepare(ds, d.sensitive, privileged=d.privileged,
                       use_sensitive_as_feature=d.use_sensitive_as_feature,
                       val_fraction=a.val_fraction, n_points=a.n_points,
                       poison_label=a.poison_label, poison_group=a.poison_group, seed=seed)
    except ParamError as exc:
        raise _config_key(exc) from None
    try:
        objective = make_objective(data, partial(make_model, v.name, v.params, seed=seed),
                                   objective=a.objective, accuracy_floor=a.accuracy_floor,
                                   protocol=a.protocol, robust=a.robust, seed=seed)
    except ParamError as exc:
        raise exc.under("attack") from None

    t0 = time.perf_counter()
    clean_model = objective.fit(None)
    clean_train_time = time.perf_counter() - t0
    clean_val = objective.evaluate(None)
    t0 = time.perf_counter()
    result = a.entry(**a.entry_params).search(objective, data.space, n_trials=a.n_trials,
                                              seed=seed, threads=ctx.threads)
    attack_time = time.perf_counter() - t0
    poisoned_model = objective.fit(result.best)

    test = data.test
    poisoned_pred = poisoned_model.predict(test.X)
    clean = fairness_gaps(test.y, clean_model.predict(test.X), test.group)
    poisoned = fairness_gaps(test.y, poisoned_pred, test.group)
    privileged = data.privileged if d.privileged is not None else None
    metrics = audit(test.y, poisoned_pred, test.group, privileged=privileged,
                    pos_label=1).flat_metrics()
    metrics["fpr_difference"] = poisoned["fpr_difference"]
    for prefix, gaps in (("clean", clean), ("poisoned", poisoned)):
        metrics.update({f"{prefix}_{name}": value for name, value in gaps.items()})
    metrics.update({
        "fairness_gain": clean[a.objective] - poisoned[a.objective],
        "accuracy_change": poisoned["accuracy"] - clean["accuracy"],
        "n_evaluations": float(result.n_evaluations),
        # victim refits the search paid for (a robust candidate costs one per part)
        "n_victim_refits": float(sum(e.n_refits for e in result.trace)),
        # 1: the search was scored on the test split (the seed's protocol), so the test
        # metrics above are not an honest estimate
        "protocol_leaky": float(a.protocol == "attack4good"),
        "best_validation_objective": result.best_evaluation.objective,
        "clean_validation_objective": clean_val.objective,
        "attack_time_s": attack_time,
        "train_time_s": clean_train_time,
        "trial_time_s": time.perf_counter() - t_start,
        "n_train": float(len(data.fit)), "n_val": float(len(data.validation)),
        "n_test": float(len(test)), "n_poison": float(a.n_points),
    })
    trace = {"objective": a.objective, "optimizer": a.optimizer, "protocol": a.protocol,
             "scored_on": "TEST split (leaky)" if a.protocol == "attack4good" else
             "the attacker's validation rows",
             "clean_validation_objective": clean_val.objective,
             "evaluations": [asdict(e) for e in result.trace]}
    return TrialOutput(metrics=metrics, artifacts={
        "poison.npz": result.best.to_npz(data.feature_names),
        "trace.json": json.dumps(trace, indent=1).encode()})


KIND = TrialKind(
    name="poisoning",
    run=run,
    config_model=PoisoningConfig,
    validate=validate,
    summary_metrics=["clean_accuracy", "poisoned_accuracy", "clean_fpr_difference",
                     "poisoned_fpr_difference", "fairness_gain",
                     "best_validation_objective", "attack_time_s"],
    description="Attack4Good: poisoning points that make a third party's model fairer",
)
