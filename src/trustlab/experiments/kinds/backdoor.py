"""The ``backdoor`` trial kind: poison a training set with a backdoor attack (BadNets
patch/pattern, blended, SIG, WaNet), then run a detection/repair defense.

    kind: backdoor
    dataset: {name: mnist, subsample: null}
    model: {name: badnets_cnn, params: {width: 16}}
    training: {epochs: 10, batch_size: 64, lr: 0.001}
    attack: {trigger: patch, size: 4, position: bottom_right, target: 0, poison_rate: 0.1}
    defense: {name: unlearning, params: {fraction: 0.2, epochs: 2, nc: {steps: 500}},
              clean_fraction: 0.1}

``attack`` names a trigger (``trustlab list attacks``) with its parameters written flat
beside ``target`` and ``poison_rate``; ``defense`` names a defense (``trustlab list
defenses``); ``model`` a network; ``training`` is
:class:`~trustlab.attacks.backdoor.BackdoorTraining`. The scenario (defender's held-out
rows, poisoning, the backdoored model) is :func:`~trustlab.attacks.backdoor.build_backdoor`;
the defense runs through :func:`~trustlab.defenses.apply_defense`.

Metrics: ``clean_accuracy``, ``attack_success_rate``, ``robust_accuracy`` of the backdoored
model, ``n_train``, ``n_poison``, ``n_clean_defender``, ``n_test``, ``train_time_s``; then
the defense's (``nc.*``, ``unlearn.*``, ``fp.*``), ``repaired.<same three>`` after a repair
and ``defense_time_s``. Artifacts: the defense's (Neural Cleanse: ``nc_triggers.npz``;
the sample-level detectors: ``<defense>_scores.npz``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import ClassVar

import numpy as np
from pydantic import ConfigDict, Field

from trustlab.attacks.backdoor.poisoning import PoisonSettings
from trustlab.attacks.backdoor.scenario import BackdoorTraining, DefenderSplit
from trustlab.errors import TrustlabError
from trustlab.experiments.kinds import TrialContext, TrialKind, TrialOutput
from trustlab.experiments.kinds.common import (Choice, FlatChoice, StrictConfig, Subsample,
                                               load_dataset_cached, subsample_rows)
from trustlab.registry import ParamError


class BackdoorDatasetConfig(StrictConfig):
    name: str = Field("mnist", description="a registered image dataset")
    subsample: Subsample = Field(None, description="training rows kept (fraction or count)")


class NetworkChoice(Choice):
    """``{name, params}`` of the backdoored network (the ``networks`` registry)."""

    stage: ClassVar[str] = "networks"
    name: str = "badnets_cnn"


class AttackConfig(FlatChoice, PoisonSettings):
    """``trigger`` (the ``attacks`` registry) with its parameters flat, the target and the
    poisoning rate."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    stage: ClassVar[str] = "attacks"
    selector: ClassVar[str] = "trigger"
    trigger: str = Field("patch", description="the trigger (trustlab list attacks)")


class DefenseChoice(Choice, DefenderSplit):
    """``{name, params}`` of the defense (the ``defenses`` registry) and the defender's
    share of the training rows."""

    stage: ClassVar[str] = "defenses"
    name: str = "none"


class BackdoorConfig(StrictConfig):
    dataset: BackdoorDatasetConfig = Field(default_factory=BackdoorDatasetConfig)
    model: NetworkChoice = Field(default_factory=NetworkChoice)
    training: BackdoorTraining = Field(default_factory=BackdoorTraining)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    defense: DefenseChoice = Field(default_factory=DefenseChoice)


@contextmanager
def _under(block: str):
    """A domain ParamError renamed to its key in the config (``position`` ->
    ``attack.position``); any other TrustlabError goes through as it is."""
    try:
        yield
    except ParamError as exc:
        raise ParamError(f"{block}.{exc.key}" if exc.key else block, exc.message) from None


def validate(cfg: BackdoorConfig) -> None:
    """An image dataset and a usable device, before anything runs (whether the trigger
    fits and the target is a class are known once the data is loaded)."""
    from trustlab.data import get_spec
    from trustlab.training.deep import resolve_device

    spec = get_spec(cfg.dataset.name)
    if spec.kind != "image":
        raise ParamError("dataset.name", f"backdoor triggers need an image dataset; "
                                         f"{spec.name!r} is {spec.kind}")
    try:
        resolve_device(cfg.training.device)
    except TrustlabError as exc:
        raise ParamError("training.device", str(exc)) from None


def build_case(cfg: BackdoorConfig, seed: int):
    """The trial's backdoored model and data (the :class:`BackdoorCase` its defense
    receives), seeded as the trial seeds it; for scripts that study a defense on the
    same cases as an experiment."""
    from trustlab.attacks.backdoor import build_backdoor
    from trustlab.experiments.executors import seed_everything

    seed_everything(seed)
    d, a = cfg.dataset, cfg.attack
    ds = load_dataset_cached(d.name, seed)
    X = np.asarray(ds.X, dtype=np.float32)
    with _under("attack"):
        trigger = a.entry(X.shape[1:], seed=seed, **a.entry_params)
        case = build_backdoor(
            X, ds.y, subsample_rows(ds.train_idx, d.subsample, seed, minimum=2), ds.test_idx,
            trigger=trigger, target=a.target, poison_rate=a.poison_rate,
            clean_fraction=cfg.defense.clean_fraction, network=cfg.model.name,
            network_params=cfg.model.params, training=cfg.training, seed=seed,
            n_classes=int(ds.n_classes))
    return case


def run(cfg: BackdoorConfig, seed: int, ctx: TrialContext) -> TrialOutput:
    from trustlab.defenses import apply_defense

    with _under("defense"):  # refused before any training
        defense = cfg.defense.entry(seed=seed, device=cfg.training.device,
                                    **cfg.defense.params)
    case = build_case(cfg, seed)
    metrics = case.evaluate(case.model)
    metrics.update({"n_train": float(len(case.poisoned.y)),
                    "n_poison": float(case.poisoned.is_poison.sum()),
                    "n_clean_defender": float(len(case.y_clean)),
                    "n_test": float(len(case.y_test)), "train_time_s": case.train_time_s})
    defense_metrics, artifacts = apply_defense(defense, case)
    metrics.update(defense_metrics)
    return TrialOutput(metrics=metrics, artifacts=artifacts)


KIND = TrialKind(
    name="backdoor",
    run=run,
    config_model=BackdoorConfig,
    validate=validate,
    summary_metrics=["clean_accuracy", "attack_success_rate", "robust_accuracy",
                     "repaired.clean_accuracy", "repaired.attack_success_rate",
                     "repaired.robust_accuracy", "nc.flagged_target", "nc.detected_label",
                     "nc.max_anomaly_index"],
    description="Backdoor a network by poisoning its training set, then detect and repair "
                "it with a defense",
)
