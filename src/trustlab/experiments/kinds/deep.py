"""The ``deep`` trial kind: train a PyTorch network with an in-processing method and audit
it per group on the test split.

    kind: deep
    dataset: {name: colored_mnist, group: group}       # group: the column methods use
    model: {name: mlp, params: {width: 128}}
    method: {name: group_dro, params: {eta: 0.05, lr: 1e-3}}   # method + optimizer params
    training: {epochs: 5, batch_size: 128, sampler: shuffle}
    hparam_search: {n: 8, select_by: val_worst_group_accuracy}    # optional

``model`` names a network (``trustlab list networks``), ``method`` a training method
(``trustlab list methods``); ``training`` is :class:`~trustlab.training.deep.TrainingOptions`.
With ``hparam_search`` each trial draws ``n`` candidates from the method's search space
(except the names in ``hparam_search.fixed``, which keep their ``method.params`` value),
trains each and keeps the best on the validation split; the selected values are the
metrics ``hparam.<name>``.
Metrics are the audit's flat names on the test split (``accuracy``, ``worst_group_accuracy``,
``group.<g>.accuracy``, ...), the same audit on the fitted training rows under ``train.``
(``train.false_positive_rate_difference``...: MinDiff's "illusion of fairness" is a gap
that closes there and not on the test split), the last epoch's training loss, the final
model's ``train.log_loss`` and test ``log_loss``, ``epochs_run``, ``n_params`` and
``train_time_s``. The per-epoch
history is the trial's ``history.json`` artifact; the report draws it as training curves.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from trustlab.experiments.kinds import TrialContext, TrialKind, TrialOutput
from trustlab.experiments.kinds.common import (Choice, StrictConfig, Subsample,
                                               load_dataset_cached, subsample_rows)
from trustlab.registry import ParamError
from trustlab.training.deep.options import TrainingOptions
from trustlab.training.deep.search import HparamSearch


class NetworkChoice(Choice):
    """``{name, params}`` of a network (the ``networks`` registry)."""

    stage: ClassVar[str] = "networks"
    name: str = "mlp"


class MethodChoice(Choice):
    """``{name, params}`` of a training method (the ``methods`` registry); its params
    include the optimizer's (``optimizer``, ``lr``, ``weight_decay``, ``momentum``)."""

    stage: ClassVar[str] = "methods"
    name: str = "erm"


class DeepDatasetConfig(StrictConfig):
    name: str = Field(description="a registered dataset (trustlab list datasets)")
    group: str | None = Field(None, description="the group column methods balance and the "
                                                "audit reports on (null: the first one)")
    options: dict[str, Any] = Field(default_factory=dict, description="loader options")
    subsample: Subsample = Field(None, description="training rows kept (fraction or count)")
    use_group_as_feature: bool = Field(False, description="tabular data: keep the group's "
                                                          "own columns among the features")


class DeepConfig(StrictConfig):
    dataset: DeepDatasetConfig
    model: NetworkChoice = Field(default_factory=NetworkChoice)
    method: MethodChoice = Field(default_factory=MethodChoice)
    training: TrainingOptions = Field(default_factory=TrainingOptions)
    hparam_search: HparamSearch | None = Field(
        None, description="random search over the method's hyper-parameters, selected on "
                          "the validation split (null: train the given ones)")


def check_training(cfg) -> None:
    """The method and the training options together: method ``flooding`` with
    ``training.flooding`` would flood twice (shared with the minority_class kind)."""
    if cfg.method.name == "flooding" and cfg.training.flooding is not None:
        raise ParamError("training.flooding", "method flooding floods already; use method "
                                              "erm (or any other) with training.flooding")


def validate(cfg: DeepConfig) -> None:
    """The dataset, its loader options and its group column, before anything runs."""
    from trustlab.training.deep import check_dataset

    check_training(cfg)
    if cfg.hparam_search is not None:
        cfg.hparam_search.check(cfg.method.name, cfg.training.val_fraction)
    d = cfg.dataset
    try:
        check_dataset(d.name, d.options, d.group)
    except ParamError as exc:
        raise exc.under("dataset") from None


def train_and_predict(ds, group: str, cfg, seed: int):
    """``cfg``'s network, method and training options on ``ds`` (see
    :func:`~trustlab.training.deep.train_network`); shared with the minority_class kind."""
    from trustlab.training.deep import train_network

    return train_network(ds, group, network=cfg.model.name, network_params=cfg.model.params,
                         method=cfg.method.name, method_params=cfg.method.params,
                         options=cfg.training, seed=seed)


def run(cfg: DeepConfig, seed: int, ctx: TrialContext) -> TrialOutput:
    from trustlab.metrics import audit
    from trustlab.training.deep import numeric_features

    d = cfg.dataset
    ds = load_dataset_cached(d.name, seed, d.options)
    group = d.group or ds.groups.columns[0]
    ds = numeric_features(ds, group, keep_group=d.use_group_as_feature)
    if d.subsample is not None:  # encoded on all training rows, then trained on a part
        ds = ds.with_split(subsample_rows(ds.train_idx, d.subsample, seed), ds.test_idx)
    searched = {}
    if cfg.hparam_search is not None:
        from trustlab.training.deep.search import search_network

        result = search_network(ds, group, cfg.hparam_search, network=cfg.model.name,
                                network_params=cfg.model.params, method=cfg.method.name,
                                method_params=cfg.method.params, options=cfg.training,
                                seed=seed)
        trained = result.trained
        searched = {"hparam_search.score": result.score,
                    **{f"hparam.{k}": float(v) for k, v in result.selected.items()}}
    else:
        trained = train_and_predict(ds, group, cfg, seed)
    groups_test = ds.groups_test[group]
    metrics = audit(trained.y_test, trained.y_pred, groups_test.astype(str),
                    multiclass=True).flat_metrics()  # the network's classes, seen or not
    groups_fit = ds.groups[group].to_numpy()[trained.train_rows].astype(str)
    fit_audit = audit(trained.y_train, trained.y_pred_train, groups_fit,
                      multiclass=True).flat_metrics()
    metrics.update({f"train.{k}": v for k, v in fit_audit.items()})
    metrics.update(trained.metrics())
    metrics.update(searched)
    artifacts = trained.artifacts(groups_test, groups_fit)
    if cfg.hparam_search is not None:
        import json

        artifacts["hparam_search.json"] = json.dumps(
            {"selected": result.selected, "score": result.score,
             "candidates": result.candidates}).encode()
    return TrialOutput(metrics=metrics, artifacts=artifacts)


KIND = TrialKind(
    name="deep",
    run=run,
    config_model=DeepConfig,
    validate=validate,
    summary_metrics=["accuracy", "balanced_accuracy", "worst_group_accuracy",
                     "accuracy_difference", "final_train_loss", "epochs_run", "train_time_s"],
    description="Train a network with an in-processing method and audit it per group",
)
