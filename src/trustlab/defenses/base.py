"""What every backdoor defense is: a :class:`Defense` with one method, :meth:`~Defense.defend`,
from a :class:`~trustlab.attacks.backdoor.BackdoorCase` to a :class:`DefenseOutcome`.

Imports neither torch nor the attacks at module level (the ``defenses`` registry stays
cheap to list).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trustlab import registry
from trustlab.registry import Configurable

if TYPE_CHECKING:
    from trustlab.attacks.backdoor import BackdoorCase


@dataclass
class DefenseOutcome:
    """What a defense returns.

    ``metrics``: its own, under its prefix (``nc.*``, ``fp.*``...); ``model``: the repaired
    model, or None for a pure detector (the pipeline then measures nothing after repair);
    ``artifacts``: files by name (bytes), stored with the trial.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    model: Any = None
    artifacts: dict[str, bytes] = field(default_factory=dict)


class Defense(Configurable):
    """Base of the backdoor defenses (the ``defenses`` registry).

    ``Defense(seed=0, device=None, **params)``: ``seed`` fixes the defense's randomness,
    ``device`` is where it runs (None/"auto": cuda when available); ``params`` are the
    subclass's ``Params``. A subclass sets ``name``, declares ``Params`` and implements
    :meth:`defend`; one line in :data:`trustlab.defenses.DEFENSES` registers it.
    """

    name: ClassVar[str] = ""

    class Params(registry.Params):
        pass

    def __init__(self, seed: int = 0, device: Any = None, **params: Any):
        self._set_params(params)
        self.seed = seed
        self.device = device

    def defend(self, case: BackdoorCase) -> DefenseOutcome:
        """Detect and/or repair the backdoor of ``case.model`` (never modified in place)."""
        raise NotImplementedError


class NoDefense(Defense):
    """No defense: the backdoored model as it is."""

    name: ClassVar[str] = "none"

    def defend(self, case: BackdoorCase) -> DefenseOutcome:
        return DefenseOutcome()


def apply_defense(defense: Defense, case: BackdoorCase
                  ) -> tuple[dict[str, float], dict[str, bytes]]:
    """Run ``defense`` on ``case`` as a trial does: the torch RNG is seeded with
    ``case.seed`` first (so a cached backdoored model and a fresh one give the same
    result); the metrics are the defense's, ``repaired.<clean_accuracy |
    attack_success_rate | robust_accuracy>`` when it returns a model, and
    ``defense_time_s``. Returns (metrics, artifacts)."""
    import torch

    t0 = time.perf_counter()
    torch.manual_seed(case.seed)
    outcome = defense.defend(case)
    metrics = dict(outcome.metrics)
    if outcome.model is not None:
        metrics.update({f"repaired.{k}": v for k, v in case.evaluate(outcome.model).items()})
    metrics["defense_time_s"] = time.perf_counter() - t0
    return metrics, dict(outcome.artifacts)


def scores_npz(scores: np.ndarray, is_poison: np.ndarray) -> bytes:
    """A detector's per-sample scores (higher = more suspicious) and the truth, as the
    ``<defense>_scores.npz`` artifact the report draws ROC curves from."""
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, scores=np.asarray(scores, dtype=np.float64),
                        is_poison=np.asarray(is_poison, dtype=bool))
    return buf.getvalue()


def finetune(model, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float,
             batch_size: int, seed: int, n_classes: int, device=None):
    """Train ``model`` in place with plain ERM (Adam, ``lr``) on ``(x, y)``; returns it.
    The repairs' fine-tuning is the toolkit's one training loop."""
    import torch

    from trustlab.training.deep import SplitTensors, fit_erm

    data = SplitTensors(x=torch.as_tensor(np.asarray(x, dtype=np.float32)),
                        y=torch.as_tensor(np.asarray(y), dtype=torch.long),
                        g=torch.zeros(len(y), dtype=torch.long), group_names=["all"],
                        n_classes=int(n_classes))
    return fit_erm(model, data, epochs=epochs, batch_size=batch_size, seed=seed,
                   hparams={"lr": float(lr)}, device=device).model


__all__ = ["Defense", "DefenseOutcome", "NoDefense", "apply_defense", "finetune",
           "scores_npz"]
