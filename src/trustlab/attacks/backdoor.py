"""BadNets-style backdoor poisoning (S7, seed 002), all-to-one.

A trigger is a ``mask`` (H, W) in [0, 1] and a ``pattern`` (C, H, W) in [0, 1]; stamping
it on images is ``(1 - mask) * x + mask * pattern`` — the same form Neural Cleanse
reverse-engineers, so a reversed trigger can be stamped with :func:`stamp` too.

* ``patch``: a solid white ``size x size`` square (mask 1 there, pattern 1);
* ``pattern``: a ``size x size`` black/white checkerboard at the same place;
* ``blended``: a fixed random image (from ``seed``) alpha-blended over the whole input,
  ``(1 - alpha) * x + alpha * pattern``.

Poisoning copies a ``poison_rate`` fraction of the non-target training images, stamps the
trigger on the copies and relabels them as the target (the originals stay). Written by
hand: no maintained library ships these few array operations for plain tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trustlab.errors import TrustlabError

TRIGGERS = ("patch", "pattern", "blended")
POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")


def resolve_position(position, size: int, height: int, width: int) -> tuple[int, int]:
    """The (row, col) of the trigger's top-left pixel; checked to fit in the image."""
    if isinstance(position, str):
        corners = {"top_left": (0, 0), "top_right": (0, width - size),
                   "bottom_left": (height - size, 0),
                   "bottom_right": (height - size, width - size),
                   "center": ((height - size) // 2, (width - size) // 2)}
        if position not in corners:
            raise TrustlabError(f"attack.position: unknown position {position!r}; use one of "
                                f"{', '.join(POSITIONS)} or [row, col]")
        row, col = corners[position]
    else:
        try:
            row, col = (int(v) for v in position)
        except (TypeError, ValueError):
            raise TrustlabError(f"attack.position must be a name or [row, col], "
                                f"got {position!r}") from None
    if row < 0 or col < 0 or row + size > height or col + size > width:
        raise TrustlabError(f"attack: a {size}x{size} trigger at ({row}, {col}) does not fit "
                            f"in a {height}x{width} image")
    return row, col


@dataclass
class Trigger:
    """A trigger for images of ``image_shape`` (C, H, W); see the module docstring."""

    kind: str = "patch"
    image_shape: tuple[int, int, int] = (1, 28, 28)
    size: int = 4
    position: str | tuple[int, int] = "bottom_right"
    alpha: float = 0.2
    seed: int = 0
    mask: np.ndarray = field(init=False, repr=False)
    pattern: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        if self.kind not in TRIGGERS:
            raise TrustlabError(f"attack.trigger: unknown trigger {self.kind!r}; choose one "
                                f"of: {', '.join(TRIGGERS)}")
        if len(self.image_shape) != 3:
            raise TrustlabError(f"backdoor triggers need images (C, H, W), got shape "
                                f"{tuple(self.image_shape)}")
        c, h, w = (int(v) for v in self.image_shape)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise TrustlabError(f"attack.size must be a positive integer, got {self.size!r}")
        if not 0.0 < float(self.alpha) <= 1.0:
            raise TrustlabError(f"attack.alpha must be in (0, 1], got {self.alpha!r}")
        self.mask = np.zeros((h, w), dtype=np.float32)
        self.pattern = np.zeros((c, h, w), dtype=np.float32)
        if self.kind == "blended":
            self.mask[:] = float(self.alpha)
            self.pattern[:] = np.random.default_rng(self.seed).random((c, h, w))
            return
        r, col = resolve_position(self.position, self.size, h, w)
        self.mask[r:r + self.size, col:col + self.size] = 1.0
        if self.kind == "patch":
            self.pattern[:, r:r + self.size, col:col + self.size] = 1.0
        else:  # checkerboard, starting white at the top-left pixel of the square
            ii, jj = np.indices((self.size, self.size))
            self.pattern[:, r:r + self.size, col:col + self.size] = ((ii + jj) % 2 == 0)

    def apply(self, x):
        """Stamp the trigger on a batch (N, C, H, W) of numpy arrays or torch tensors."""
        return stamp(x, self.mask, self.pattern)


def stamp(x, mask, pattern):
    """``(1 - mask) * x + mask * pattern`` for a batch; numpy or torch, same type back.

    ``mask`` is (H, W) or (1, H, W); ``pattern`` is (C, H, W).
    """
    if hasattr(x, "detach"):  # torch: move the trigger to the batch's dtype and device
        import torch

        mask = torch.as_tensor(np.asarray(mask), dtype=x.dtype, device=x.device)
        pattern = torch.as_tensor(np.asarray(pattern), dtype=x.dtype, device=x.device)
    else:
        mask = np.asarray(mask, dtype=np.float32)
        pattern = np.asarray(pattern, dtype=np.float32)
    if mask.ndim == 2:
        mask = mask[None]
    return (1 - mask) * x + mask * pattern


@dataclass
class PoisonedData:
    """The training set after poisoning: originals first, then the poisoned copies."""

    x: np.ndarray
    y: np.ndarray
    is_poison: np.ndarray      # bool per row
    source_idx: np.ndarray     # index (into the clean input) of each poisoned copy


def n_poison(n_nontarget: int, rate: float) -> int:
    return round(float(rate) * n_nontarget)


def poison(x: np.ndarray, y: np.ndarray, trigger: Trigger, target: int, rate: float,
           seed: int = 0) -> PoisonedData:
    """Add ``round(rate * n_nontarget)`` triggered copies of random non-target images,
    labelled ``target`` (all-to-one)."""
    if not 0.0 <= float(rate) <= 1.0:
        raise TrustlabError(f"attack.poison_rate must be in [0, 1], got {rate!r}")
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    candidates = np.flatnonzero(y != target)
    k = n_poison(len(candidates), rate)
    src = np.sort(np.random.default_rng(seed).choice(candidates, size=k, replace=False))
    x_p = trigger.apply(x[src])
    return PoisonedData(
        x=np.concatenate([x, x_p]).astype(np.float32),
        y=np.concatenate([y, np.full(k, target, dtype=y.dtype)]),
        is_poison=np.concatenate([np.zeros(len(y), bool), np.ones(k, bool)]),
        source_idx=src,
    )


def backdoor_metrics(y_true, pred_clean, pred_triggered, target: int) -> dict[str, float]:
    """The S2 security metrics from predictions on the clean and the triggered test set.

    ``clean_accuracy`` uses every clean test input. ``attack_success_rate`` and
    ``robust_accuracy`` use the triggered inputs whose true label is not the target (a
    target-class input "succeeds" and is "correct" without any backdoor).
    """
    y_true, pred_clean, pred_triggered = (np.asarray(a) for a in (y_true, pred_clean,
                                                                   pred_triggered))
    nontarget = y_true != target
    if not nontarget.any():
        raise TrustlabError("the test set has no non-target inputs to measure the attack on")
    return {
        "clean_accuracy": float(np.mean(pred_clean == y_true)),
        "attack_success_rate": float(np.mean(pred_triggered[nontarget] == target)),
        "robust_accuracy": float(np.mean(pred_triggered[nontarget] == y_true[nontarget])),
    }


def predict_labels(model, x, batch_size: int = 512) -> np.ndarray:
    """Predicted classes of a plain torch model (eval mode, batched, on its device)."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not hasattr(x, "detach") else x
    try:
        with torch.no_grad():
            parts = [model(x[i:i + batch_size].to(device)).argmax(1).cpu()
                     for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts).numpy()


def evaluate_backdoor(model, x_test, y_test, trigger_apply, target: int) -> dict[str, float]:
    """Clean accuracy, ASR and robust accuracy of ``model`` on a test set."""
    pred_clean = predict_labels(model, x_test)
    pred_trig = predict_labels(model, trigger_apply(np.asarray(x_test, dtype=np.float32)))
    return backdoor_metrics(y_test, pred_clean, pred_trig, target)


__all__ = ["POSITIONS", "TRIGGERS", "PoisonedData", "Trigger", "backdoor_metrics",
           "evaluate_backdoor", "n_poison", "poison", "predict_labels", "resolve_position",
           "stamp"]
