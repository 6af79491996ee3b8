"""The backdoor scenario: split a dataset's rows between the attacker and the defender,
poison the attacker's part, train the backdoored model, and describe the result as a
:class:`BackdoorCase` — what every defense receives.

    case = build_backdoor(X, y, train_idx, test_idx, trigger=make_trigger("patch", X.shape[1:]),
                          target=0, poison_rate=0.1, clean_fraction=0.1, network="small_cnn",
                          network_params={"width": 16}, training=BackdoorTraining(epochs=4),
                          seed=0, n_classes=10)
    case.evaluate(case.model)   # clean_accuracy, attack_success_rate, robust_accuracy

A fixed ``clean_fraction`` of the training rows (drawn from the seed) is held out as the
defender's clean data: it is neither poisoned nor trained on, so every defense of one seed
starts from the very same backdoored model. A process that builds the same scenario
again (several defenses of one seed) reuses the trained model (:func:`train_victim`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from trustlab import registry
from trustlab.attacks.backdoor.evaluation import evaluate_backdoor
from trustlab.attacks.backdoor.poisoning import PoisonedData, poison
from trustlab.attacks.backdoor.triggers import Trigger
from trustlab.errors import TrustlabError
from trustlab.registry import ParamError, check_params


class BackdoorTraining(registry.Params):
    """How the backdoored model is trained: plain ERM with Adam on the poisoned training
    set (the backdoor kind's ``training:`` block). The defaults train ``badnets_cnn`` on
    the 5,000 bundled MNIST digits to about 0.97-0.98 clean accuracy in about 10 s."""

    epochs: int = Field(10, ge=1, description="passes over the poisoned training set")
    batch_size: int = Field(64, ge=1, description="rows per batch")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, "
                                            "cuda... (the defenses run there too)")


class DefenderSplit(registry.Params):
    """The defender's share of the training rows."""

    clean_fraction: float = Field(0.1, gt=0, lt=1,
                                  description="training rows held out (never poisoned or "
                                              "trained on) as the defender's clean data")


def split_defender_rows(train_idx: np.ndarray, clean_fraction: float, seed: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(defender's clean rows, attacker's rows) of ``train_idx``, both sorted, drawn from
    ``seed`` (at least one clean row)."""
    check_params(DefenderSplit, {"clean_fraction": clean_fraction})
    perm = np.random.default_rng((seed, 1)).permutation(train_idx)
    n_clean = max(1, round(clean_fraction * len(perm)))
    return np.sort(perm[:n_clean]), np.sort(perm[n_clean:])


# Trained models by (training data, network, options, seed): several defenses of one seed
# in one process train the backdoored model once. A sweep runs seeds innermost (defense
# A on seeds 0..9, then defense B on seeds 0..9), so the cache holds a sweep's worth of
# models; a backdoor victim is small (badnets_cnn: under 1 MB).
_MODEL_CACHE: dict[str, tuple[Any, float]] = {}
_CACHE_SIZE = 32


def clear_model_cache() -> None:
    _MODEL_CACHE.clear()


def _cache_key(arrays: list[np.ndarray], settings: list[Any]) -> str:
    h = hashlib.blake2b(digest_size=20)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _training(training: BackdoorTraining | dict[str, Any] | None) -> BackdoorTraining:
    if isinstance(training, BackdoorTraining):
        return training
    return check_params(BackdoorTraining, training or {})


def train_victim(x: np.ndarray, y: np.ndarray, is_poison: np.ndarray | None = None, *,
                 network: str, network_params: dict[str, Any] | None = None,
                 training: BackdoorTraining | dict[str, Any] | None = None, seed: int = 0,
                 n_classes: int) -> tuple[Any, float]:
    """A fresh ``network`` trained with ERM on ``(x, y)`` (``is_poison`` marks the poisoned
    rows: the loop reports them as a group), and the training seconds. Cached per process:
    the same data and settings give a copy of the model trained before (and its time)."""
    import torch

    from trustlab.training.deep import SplitTensors, build_method, train

    t = _training(training)
    is_poison = np.zeros(len(y), bool) if is_poison is None else np.asarray(is_poison)
    key = _cache_key([np.asarray(x), np.asarray(y), is_poison],
                     [network, network_params or {}, t.to_dict(), seed, int(n_classes)])
    if key in _MODEL_CACHE:
        model, seconds = _MODEL_CACHE[key]
        return copy.deepcopy(model), seconds
    data = SplitTensors(torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long),
                        torch.as_tensor(is_poison.astype(np.int64)), ["clean", "poisoned"],
                        int(n_classes))
    method = build_method("erm", network, data, model_params=network_params,
                          hparams={"lr": t.lr}, seed=seed, device=t.device)
    t0 = time.perf_counter()
    train(method, data, epochs=t.epochs, batch_size=t.batch_size, seed=seed,
          device=t.device, eval_train=False)
    seconds = time.perf_counter() - t0
    if len(_MODEL_CACHE) >= _CACHE_SIZE:
        _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
    _MODEL_CACHE[key] = (copy.deepcopy(method.model), seconds)
    return method.model, seconds


@dataclass
class BackdoorCase:
    """A backdoored model and the data around it: what a defense receives.

    ``x_clean``/``y_clean`` are the defender's clean rows; ``x_test``/``y_test`` the test
    split. ``trigger`` and ``target`` are the truth, for evaluation (a defense that uses
    them cheats). ``poisoned`` is the training set the model was fitted on (``x``, ``y``,
    ``is_poison``), for data-level detectors; ``network``, ``network_params`` and
    ``training`` say how the model was trained (:meth:`retrain`).
    """

    model: Any
    n_classes: int
    x_clean: np.ndarray
    y_clean: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    trigger: Trigger
    target: int
    seed: int = 0
    device: Any = None
    poisoned: PoisonedData | None = None
    network: str | None = None
    network_params: dict[str, Any] = field(default_factory=dict)
    training: BackdoorTraining | None = None
    train_time_s: float = 0.0

    def evaluate(self, model) -> dict[str, float]:
        """``clean_accuracy``, ``attack_success_rate``, ``robust_accuracy`` of ``model`` on
        the test split with the true trigger."""
        return evaluate_backdoor(model, self.x_test, self.y_test, self.trigger.apply,
                                 self.target)

    def retrain(self, x: np.ndarray, y: np.ndarray, is_poison: np.ndarray | None = None):
        """A fresh model of the same network, trained the same way on ``(x, y)`` (e.g. the
        poisoned training set without the rows a detector flagged)."""
        if self.network is None:
            raise TrustlabError("this backdoor case does not say how its model was trained")
        model, _ = train_victim(x, y, is_poison, network=self.network,
                                network_params=self.network_params, training=self.training,
                                seed=self.seed, n_classes=self.n_classes)
        return model


def build_backdoor(x: np.ndarray, y: np.ndarray, train_idx: np.ndarray,
                   test_idx: np.ndarray, *, trigger: Trigger, target: int,
                   poison_rate: float, clean_fraction: float, network: str,
                   network_params: dict[str, Any] | None = None,
                   training: BackdoorTraining | dict[str, Any] | None = None, seed: int = 0,
                   n_classes: int) -> BackdoorCase:
    """Hold out the defender's rows of ``train_idx``, poison the others with ``trigger``
    (all-to-one to ``target``), train ``network`` on them and return the case.

    A ``target`` that is not a class is a :class:`~trustlab.registry.ParamError` on key
    ``target``; the trigger must have been built for ``x``'s image shape.
    """
    if not 0 <= int(target) < int(n_classes):
        raise ParamError("target", f"{target} is not a class of the dataset "
                                   f"(0..{int(n_classes) - 1})")
    t = _training(training)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y).astype(np.int64)
    clean_idx, fit_idx = split_defender_rows(train_idx, clean_fraction, seed)
    test_idx = np.asarray(test_idx)
    poisoned = poison(x[fit_idx], y[fit_idx], trigger, target, poison_rate, seed=seed)
    model, seconds = train_victim(poisoned.x, poisoned.y, poisoned.is_poison,
                                  network=network, network_params=network_params,
                                  training=t, seed=seed, n_classes=n_classes)
    return BackdoorCase(model=model, n_classes=int(n_classes), x_clean=x[clean_idx],
                        y_clean=y[clean_idx], x_test=x[test_idx], y_test=y[test_idx],
                        trigger=trigger, target=int(target), seed=seed, device=t.device,
                        poisoned=poisoned, network=network,
                        network_params=dict(network_params or {}), training=t,
                        train_time_s=seconds)


__all__ = ["BackdoorCase", "BackdoorTraining", "DefenderSplit", "build_backdoor",
           "clear_model_cache", "split_defender_rows", "train_victim"]
