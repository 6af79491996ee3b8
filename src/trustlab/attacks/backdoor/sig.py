"""SIG (Barni, Kallas & Tondi, ICIP 2019): a clean-label backdoor with a sinusoidal signal.

Written by hand (a few numpy/torch operations; no torchvision or attack library needed).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from trustlab import registry
from trustlab.attacks.backdoor.triggers import Trigger
from trustlab.registry import ParamError


class SigTrigger(Trigger):
    """SIG (Barni et al. 2019): clean label, a horizontal sinusoid on the target's images.

    The signal is ``v(i, j) = delta * sin(2 pi j f / m)`` (column ``j``, image width
    ``m``, the same on every row and channel), added to the image and clipped to [0, 1]
    (``delta`` is in the pixel scale of images in [0, 1]: 40/255 is BackdoorBench's
    default of 40 on the 0..255 scale).

    Clean label: poisoning takes the *target class's own* images
    (:meth:`poison_candidates`), adds the signal and keeps their label, which is their
    true label; the poisoned images *replace* the originals (``replaces_originals``), as
    in the paper, so the training set keeps its size and no label is changed. For this
    attack ``poison_rate`` is therefore the share of the target class's training images
    that carry the signal (0.1 of one MNIST digit is about 1% of the training set). At
    test time :meth:`apply` adds the signal to any input, with amplitude ``test_delta``
    (default: ``delta``) — Barni et al. evaluate with a stronger signal at test time than
    the one hidden in the training images (:meth:`poison_apply`).
    """

    name: ClassVar[str] = "sig"
    replaces_originals: ClassVar[bool] = True

    class Params(registry.Params):
        delta: float = Field(40 / 255, gt=0, le=1,
                             description="amplitude of the sinusoid, in the [0, 1] pixel "
                                         "scale (40/255 as in BackdoorBench)")
        frequency: float = Field(6.0, gt=0, description="cycles of the sinusoid across the "
                                                        "image width (below half of it)")
        test_delta: float | None = Field(None, gt=0, le=1,
                                         description="amplitude added at test time (null: "
                                                     "delta)")

    def build(self):
        _, _, width = self.image_shape
        if self.frequency >= width / 2:
            # at f >= m/2 the sampled sinusoid aliases (at f = m/2 it is zero everywhere)
            raise ParamError("frequency", f"{self.frequency:g} cycles do not fit in a "
                                          f"{width}-pixel-wide image (use less than "
                                          f"{width / 2:g})")
        wave = np.sin(2 * np.pi * np.arange(width) * self.frequency / width)
        # (W,), broadcast over channels and rows
        self.train_signal = (self.delta * wave).astype(np.float32)
        test = self.delta if self.test_delta is None else self.test_delta
        self.signal = (test * wave).astype(np.float32)
        return None, None

    def apply(self, x):
        """``clip(x + v, 0, 1)`` for a batch (N, C, H, W) with the test-time signal; numpy
        or torch, same type back."""
        return self._add(x, self.signal)

    def poison_apply(self, x):
        """The training images' signal (amplitude ``delta``)."""
        return self._add(x, self.train_signal)

    @staticmethod
    def _add(x, signal):
        if hasattr(x, "detach"):
            import torch

            signal = torch.as_tensor(signal, dtype=x.dtype, device=x.device)
            return (x + signal).clamp(0, 1)
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
        return np.clip(x + signal.astype(x.dtype), 0, 1)

    def poison_candidates(self, y: np.ndarray, target: int) -> np.ndarray:
        """The target class's rows (clean label: their label stays, and is right)."""
        return np.flatnonzero(np.asarray(y) == target)


__all__ = ["SigTrigger"]
