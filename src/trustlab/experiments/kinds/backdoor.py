"""The ``backdoor`` trial kind (S7): BadNets poisoning, then a detection/repair defense.

    kind: backdoor
    dataset: {name: mnist, subsample: null}
    model: {name: small_cnn, params: {width: 16}}
    training: {epochs: 3, batch_size: 64, lr: 0.003}
    attack: {trigger: patch, size: 4, position: bottom_right, target: 0, poison_rate: 0.1}
    defense: {name: unlearning, params: {fraction: 0.2, epochs: 2, nc: {steps: 300}}}

A fixed ``defense.clean_fraction`` of the training rows (drawn from the seed, whatever the
defense) is held out as the defender's clean data: it is neither poisoned nor trained on,
so every defense of one seed starts from the very same backdoored model.

Defenses: ``none``; ``neural_cleanse`` (detection only); ``unlearning`` (Neural Cleanse,
then unlearning with the reversed trigger of the detected label — with ``fallback:
lowest_l1`` the lowest-L1 label when none is flagged, as the seed notebook does);
``fine_pruning`` (prune ``prune_fraction`` of the last conv layer's channels, fine-tune).

Metrics: ``clean_accuracy``, ``attack_success_rate``, ``robust_accuracy`` of the backdoored
model; ``repaired.<same>`` after a repair; ``nc.l1.<k>``, ``nc.anomaly_index.<k>``,
``nc.flagged_target``, ``nc.detected_label``, ``nc.max_anomaly_index``, ``nc.n_flagged``,
``nc.min_l1_label``; ``unlearn.label``/``unlearn.applied``; ``fp.pruned_channels``.
Artifacts: ``nc_triggers.npz`` (masks, patterns, L1, anomaly indices) and
``nc_triggers.png``.
"""

from __future__ import annotations

import copy
import io
import json
import time
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from trustlab.errors import TrustlabError
from trustlab.experiments.kinds.common import (StrictConfig, Subsample, load_dataset_cached,
                                               subsample_rows)
from trustlab.experiments.kinds import TrialContext, TrialKind, TrialOutput

DEFENSES = ("none", "neural_cleanse", "unlearning", "fine_pruning")


class BackdoorDatasetConfig(StrictConfig):
    name: str = "mnist"
    subsample: Subsample = None  # training rows to keep (fraction or count)


class BackdoorModelConfig(StrictConfig):
    name: str = "small_cnn"
    params: dict[str, Any] = Field(default_factory=dict)


class BackdoorTrainingConfig(StrictConfig):
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-3, gt=0)
    device: str = "auto"


class AttackConfig(StrictConfig):
    trigger: str = "patch"
    size: int = Field(4, ge=1)
    position: str | tuple[int, int] = "bottom_right"
    target: int = Field(0, ge=0)
    poison_rate: float = Field(0.1, ge=0, le=1)
    alpha: float = Field(0.2, gt=0, le=1)


class DefenseConfig(StrictConfig):
    name: str = "none"
    params: dict[str, Any] = Field(default_factory=dict)
    # Training rows held out (never poisoned or trained on) as the defender's clean data.
    clean_fraction: float = Field(0.1, gt=0, lt=1)


class BackdoorConfig(StrictConfig):
    dataset: BackdoorDatasetConfig = Field(default_factory=BackdoorDatasetConfig)
    model: BackdoorModelConfig = Field(default_factory=BackdoorModelConfig)
    training: BackdoorTrainingConfig = Field(default_factory=BackdoorTrainingConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    defense: DefenseConfig = Field(default_factory=DefenseConfig)


# -- defense parameters ---------------------------------------------------------------------
class NCParams(StrictConfig):
    steps: int = Field(300, ge=1)
    lr: float = Field(0.1, gt=0)
    batch_size: int = Field(32, ge=1)
    init_cost: float = Field(1e-3, gt=0)
    cost_multiplier: float = Field(1.5, gt=1)
    patience: int = Field(5, ge=1)
    attack_threshold: float = Field(0.99, gt=0, le=1)
    anomaly_threshold: float = Field(2.0, gt=0)


class UnlearningParams(StrictConfig):
    nc: NCParams = Field(default_factory=NCParams)
    fraction: float = Field(0.2, ge=0, le=1)   # of the clean rows that get the trigger
    epochs: int = Field(2, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    fallback: Literal["none", "lowest_l1"] = "lowest_l1"


class FinePruningParams(StrictConfig):
    prune_fraction: float = Field(0.5, ge=0, le=1)
    epochs: int = Field(2, ge=0)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)


PARAMS = {"none": None, "neural_cleanse": NCParams, "unlearning": UnlearningParams,
          "fine_pruning": FinePruningParams}


def defense_params(defense: DefenseConfig):
    """The defense's typed parameters (TrustlabError naming the bad key)."""
    if defense.name not in PARAMS:
        raise TrustlabError(f"defense.name: unknown defense {defense.name!r}; choose one of: "
                            f"{', '.join(DEFENSES)}")
    model = PARAMS[defense.name]
    if model is None:
        if defense.params:
            raise TrustlabError("defense.params: defense 'none' takes no parameters")
        return None
    try:
        return model(**defense.params)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise TrustlabError(f"defense.params.{loc}: {err['msg']} "
                            f"(defense {defense.name!r})") from None


def validate(cfg: BackdoorConfig) -> None:
    """Name checks before anything runs."""
    from trustlab.attacks.backdoor import POSITIONS, TRIGGERS
    from trustlab.data import get_spec
    from trustlab.training.deep import MODELS, resolve_device

    spec = get_spec(cfg.dataset.name)
    if spec.kind != "image":
        raise TrustlabError(f"dataset.name: backdoor triggers need an image dataset; "
                            f"{spec.name!r} is {spec.kind}")
    if cfg.model.name not in MODELS:
        raise TrustlabError(f"model.name: unknown network {cfg.model.name!r}; choose one of: "
                            f"{', '.join(MODELS)}")
    a = cfg.attack
    if a.trigger not in TRIGGERS:
        raise TrustlabError(f"attack.trigger: unknown trigger {a.trigger!r}; choose one of: "
                            f"{', '.join(TRIGGERS)}")
    if isinstance(a.position, str) and a.position not in POSITIONS:
        raise TrustlabError(f"attack.position: unknown position {a.position!r}; use one of "
                            f"{', '.join(POSITIONS)} or [row, col]")
    defense_params(cfg.defense)
    resolve_device(cfg.training.device)


# The backdoored model of (dataset, model, training, attack, seed) is the same for every
# defense: a process running several defenses of one seed trains it once.
_MODEL_CACHE: dict[str, tuple[Any, float]] = {}


def _train_backdoored(key: str, x, y, is_poison, cfg: BackdoorConfig, seed: int, n_classes):
    import torch

    from trustlab.training.deep import SplitTensors, build_method, train

    if key in _MODEL_CACHE:
        model, seconds = _MODEL_CACHE[key]
        return copy.deepcopy(model), seconds
    t = cfg.training
    data = SplitTensors(torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long),
                        torch.as_tensor(is_poison.astype(np.int64)), ["clean", "poisoned"],
                        n_classes)
    method = build_method("erm", cfg.model.name, data, model_params=cfg.model.params,
                          hparams={"lr": t.lr}, seed=seed, device=t.device)
    t0 = time.perf_counter()
    train(method, data, epochs=t.epochs, batch_size=t.batch_size, seed=seed,
          device=t.device, eval_train=False)
    seconds = time.perf_counter() - t0
    if len(_MODEL_CACHE) >= 2:
        _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
    _MODEL_CACHE[key] = (copy.deepcopy(method.model), seconds)
    return method.model, seconds


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in metrics.items()}


def _nc_metrics(nc, target: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, (l1, ai) in enumerate(zip(nc.l1_norms_, nc.anomaly_index_)):
        out[f"nc.l1.{k}"] = float(l1)
        out[f"nc.anomaly_index.{k}"] = float(ai)
    out["nc.flagged_target"] = float(target in nc.flagged_)
    out["nc.detected_label"] = float(nc.detected_label_)
    out["nc.n_flagged"] = float(len(nc.flagged_))
    out["nc.max_anomaly_index"] = float(np.max(nc.anomaly_index_))
    # Anomaly index of the lowest-L1 label, the one a backdoor should make an outlier.
    out["nc.min_l1_label"] = float(int(np.argmin(nc.l1_norms_)))
    return out


def _nc_artifacts(nc, target: int, true_mask, true_pattern) -> dict[str, bytes]:
    from trustlab.report.backdoor import trigger_grid_figure

    buf = io.BytesIO()
    np.savez_compressed(buf, masks=nc.masks_.astype(np.float32),
                        patterns=nc.patterns_.astype(np.float32), l1=nc.l1_norms_,
                        anomaly_index=nc.anomaly_index_,
                        flagged=np.asarray(nc.flagged_, dtype=np.int64),
                        target=np.int64(target), true_mask=true_mask,
                        true_pattern=true_pattern,
                        anomaly_threshold=np.float64(nc.anomaly_threshold))
    fig = trigger_grid_figure(nc.masks_, nc.patterns_, nc.l1_norms_, nc.anomaly_index_,
                              nc.flagged_)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return {"nc_triggers.npz": buf.getvalue(), "nc_triggers.png": png.getvalue()}


def run(cfg: BackdoorConfig, seed: int, ctx: TrialContext) -> TrialOutput:
    import torch

    from trustlab.attacks.backdoor import Trigger, evaluate_backdoor, poison
    from trustlab.defenses.fine_pruning import FinePruning
    from trustlab.defenses.neural_cleanse import NeuralCleanse
    from trustlab.defenses.unlearning import Unlearning
    from trustlab.experiments.executors import seed_everything

    seed_everything(seed)
    params = defense_params(cfg.defense)
    d, a, t = cfg.dataset, cfg.attack, cfg.training
    ds = load_dataset_cached(d.name, seed)
    if not ds.is_image:
        raise TrustlabError(f"dataset {d.name!r} is not an image dataset")
    n_classes = int(ds.n_classes)
    if a.target >= n_classes:
        raise TrustlabError(f"attack.target {a.target} is not a class of {d.name!r} "
                            f"(0..{n_classes - 1})")
    X = np.asarray(ds.X, dtype=np.float32)
    y = np.asarray(ds.y).astype(np.int64)

    train_idx = subsample_rows(ds.train_idx, d.subsample, seed, minimum=2)
    perm = np.random.default_rng((seed, 1)).permutation(train_idx)
    n_clean = max(1, round(cfg.defense.clean_fraction * len(perm)))
    clean_idx, fit_idx = np.sort(perm[:n_clean]), np.sort(perm[n_clean:])
    test_idx = np.asarray(ds.test_idx)

    trigger = Trigger(a.trigger, X.shape[1:], size=a.size, position=a.position,
                      alpha=a.alpha, seed=seed)
    poisoned = poison(X[fit_idx], y[fit_idx], trigger, a.target, a.poison_rate, seed=seed)
    key = json.dumps([d.model_dump(), cfg.model.model_dump(), t.model_dump(),
                      a.model_dump(), cfg.defense.clean_fraction, seed], sort_keys=True)
    model, train_time = _train_backdoored(key, poisoned.x, poisoned.y, poisoned.is_poison,
                                          cfg, seed, n_classes)
    x_test, y_test = X[test_idx], y[test_idx]
    metrics = evaluate_backdoor(model, x_test, y_test, trigger.apply, a.target)
    metrics.update({"n_train": float(len(poisoned.y)), "n_poison": float(poisoned.is_poison.sum()),
                    "n_clean_defender": float(n_clean), "n_test": float(len(y_test)),
                    "train_time_s": train_time})
    artifacts: dict[str, bytes] = {}
    x_clean, y_clean = X[clean_idx], y[clean_idx]
    name = cfg.defense.name
    t0 = time.perf_counter()
    torch.manual_seed(seed)  # defenses start from the same RNG state, cached model or not
    if name in ("neural_cleanse", "unlearning"):
        ncp = params if name == "neural_cleanse" else params.nc
        nc = NeuralCleanse(**ncp.model_dump(), seed=seed, device=t.device).fit(
            model, x_clean, n_classes)
        metrics.update(_nc_metrics(nc, a.target))
        artifacts.update(_nc_artifacts(nc, a.target, trigger.mask, trigger.pattern))
        if name == "unlearning":
            label = nc.detected_label_
            if label < 0 and params.fallback == "lowest_l1":
                label = int(np.argmin(nc.l1_norms_))
            metrics["unlearn.label"] = float(label)
            metrics["unlearn.applied"] = float(label >= 0)
            repaired = model
            if label >= 0:
                un = Unlearning(fraction=params.fraction, epochs=params.epochs, lr=params.lr,
                                batch_size=params.batch_size, seed=seed, device=t.device)
                repaired = un.fit(model, x_clean, y_clean, nc.masks_[label],
                                  nc.patterns_[label], n_classes).model_
            metrics.update(_prefixed("repaired.", evaluate_backdoor(
                repaired, x_test, y_test, trigger.apply, a.target)))
    elif name == "fine_pruning":
        fp = FinePruning(prune_fraction=params.prune_fraction, epochs=params.epochs,
                         lr=params.lr, batch_size=params.batch_size, seed=seed,
                         device=t.device).fit(model, x_clean, y_clean, n_classes)
        metrics["fp.pruned_channels"] = float(len(fp.pruned_))
        metrics["fp.channels"] = float(len(fp.keep_mask_))
        metrics.update(_prefixed("repaired.", evaluate_backdoor(
            fp.model_, x_test, y_test, trigger.apply, a.target)))
    metrics["defense_time_s"] = time.perf_counter() - t0
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
    fairness_metrics=[],  # no accuracy-vs-fairness scatter for backdoors
)


def _register_report_sections() -> None:
    from trustlab.report import register_section
    from trustlab.report.backdoor import backdoor_section

    register_section("backdoor", backdoor_section)


_register_report_sections()
