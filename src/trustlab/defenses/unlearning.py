"""Backdoor unlearning (Neural Cleanse, Wang et al. 2019, section VI-C): fine-tune the model
on clean data where a fraction of the inputs carry the reversed trigger but keep their TRUE
labels, so the network learns that the trigger means nothing.

The fine-tuning itself is the toolkit's one training loop (plain ERM on a copy of the
model); only the data preparation is specific to unlearning.
"""

from __future__ import annotations

import copy

import numpy as np

from trustlab.attacks.backdoor import stamp
from trustlab.errors import TrustlabError


def finetune(model, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float,
             batch_size: int, seed: int, n_classes: int, device=None):
    """Train ``model`` in place with plain ERM (Adam, ``lr``) on ``(x, y)``; returns it."""
    import torch

    from trustlab.training.deep import SplitTensors, make_method, train

    data = SplitTensors(x=torch.as_tensor(np.asarray(x, dtype=np.float32)),
                        y=torch.as_tensor(np.asarray(y), dtype=torch.long),
                        g=torch.zeros(len(y), dtype=torch.long), group_names=["all"],
                        n_classes=int(n_classes))
    torch.manual_seed(seed)
    method = make_method("erm", model, int(n_classes), 1, {"lr": float(lr)})
    train(method, data, epochs=int(epochs), batch_size=int(batch_size), seed=seed,
          device=device, eval_train=False)
    return method.model


def check_fraction(name: str, value, *, allow_zero: bool = True) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and \
        (0 <= value <= 1 if allow_zero else 0 < value <= 1)
    if not ok:
        raise TrustlabError(f"{name} must be a fraction in {'[0' if allow_zero else '(0'}, 1], "
                            f"got {value!r}")
    return float(value)


class Unlearning:
    """Stamp ``(mask, pattern)`` on ``fraction`` of the clean rows (true labels kept) and
    fine-tune a copy of the model on the mix. After :meth:`fit`: ``model_`` (the repaired
    copy) and ``stamped_idx_`` (the rows that carried the trigger)."""

    def __init__(self, fraction: float = 0.2, epochs: int = 2, lr: float = 1e-3,
                 batch_size: int = 64, seed: int = 0, device=None):
        self.fraction = fraction
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.device = device

    def fit(self, model, x_clean, y_clean, mask, pattern, n_classes: int) -> Unlearning:
        frac = check_fraction("unlearning: 'fraction'", self.fraction)
        x = np.array(x_clean, dtype=np.float32, copy=True)
        y = np.asarray(y_clean)
        k = round(frac * len(x))
        rng = np.random.default_rng(self.seed)
        self.stamped_idx_ = np.sort(rng.choice(len(x), size=k, replace=False))
        x[self.stamped_idx_] = stamp(x[self.stamped_idx_], mask, pattern)
        self.model_ = finetune(copy.deepcopy(model), x, y, epochs=self.epochs, lr=self.lr,
                               batch_size=self.batch_size, seed=self.seed,
                               n_classes=n_classes, device=self.device)
        return self


__all__ = ["Unlearning", "check_fraction", "finetune"]
