"""Backdoor triggers (the ``attacks`` registry): what a poisoned input carries.

A trigger is built for one image shape (C, H, W) and a seed, and :meth:`Trigger.apply`
puts it on a batch. The BadNets triggers (Gu et al. 2017) and the blended one (Chen et al.
2017) are *stamps*: a ``mask`` (H, W) in [0, 1] and a ``pattern`` (C, H, W) in [0, 1],
applied as ``(1 - mask) * x + mask * pattern`` (:func:`stamp`) — the form Neural Cleanse
reverse-engineers, so a reversed trigger is stamped the same way.

* ``patch``: a solid white ``size x size`` square (mask 1 there, pattern 1);
* ``pattern``: a ``size x size`` black/white checkerboard at the same place;
* ``blended``: a fixed random image (drawn from ``seed``) alpha-blended over the whole
  input, ``(1 - alpha) * x + alpha * pattern``.

Two triggers are not stamps and live in their own modules:

* ``sig`` (:mod:`~.sig`, Barni et al. 2019): a clean-label attack, a horizontal sinusoid
  added to the target class's own images;
* ``wanet`` (:mod:`~.wanet`, Nguyen & Tran 2021): a fixed smooth random warp of the image.

Adding a trigger is one :class:`Trigger` subclass (``name``, ``Params``, :meth:`~Trigger.build`
for a stamp — or :meth:`~Trigger.apply` for a transformation that is not one, such as a
warp — :meth:`~Trigger.poison_candidates` and ``replaces_originals`` for a clean-label
attack, :meth:`~Trigger.cross_samples` for extra correctly labelled rows) plus one line in
:data:`TRIGGERS`. Written by hand: no maintained library ships these few array operations
for plain tensors.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, Field

from trustlab import registry
from trustlab.errors import TrustlabError
from trustlab.registry import Configurable, ParamError, Registry

PositionName = Literal["top_left", "top_right", "bottom_left", "bottom_right", "center"]
POSITIONS: tuple[str, ...] = typing.get_args(PositionName)


def _known_position(value: Any) -> Any:
    if isinstance(value, str):
        if value not in POSITIONS:
            raise ValueError(f"unknown position {value!r}; use one of "
                             f"{', '.join(POSITIONS)} or [row, col]")
    elif not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise ValueError(f"must be a name or [row, col], got {value!r}")
    return value


# Where a square trigger goes: a corner / the centre by name, or its top-left [row, col].
Position = Annotated[PositionName | tuple[int, int], BeforeValidator(_known_position)]


def resolve_position(position: str | tuple[int, int], size: int, height: int,
                     width: int) -> tuple[int, int]:
    """The (row, col) of a ``size x size`` trigger's top-left pixel; a
    :class:`~trustlab.registry.ParamError` on key ``position`` when it does not fit."""
    if isinstance(position, str):
        corners = {"top_left": (0, 0), "top_right": (0, width - size),
                   "bottom_left": (height - size, 0),
                   "bottom_right": (height - size, width - size),
                   "center": ((height - size) // 2, (width - size) // 2)}
        if position not in corners:
            raise ParamError("position", f"unknown position {position!r}; use one of "
                                         f"{', '.join(POSITIONS)} or [row, col]")
        row, col = corners[position]
    else:
        try:
            row, col = (int(v) for v in position)
        except (TypeError, ValueError):
            raise ParamError("position", f"must be a name or [row, col], got "
                                         f"{position!r}") from None
    if row < 0 or col < 0 or row + size > height or col + size > width:
        raise ParamError("position", f"a {size}x{size} trigger at ({row}, {col}) does not "
                                     f"fit in a {height}x{width} image")
    return row, col


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


class Trigger(Configurable):
    """Base of the backdoor triggers (see the module docstring).

    ``Trigger(image_shape, seed=0, **params)``: ``image_shape`` is (C, H, W); ``seed``
    fixes anything random in the trigger; ``params`` are the subclass's ``Params``.
    After construction, ``mask`` (H, W) and ``pattern`` (C, H, W), float32 in [0, 1], hold
    the stamp (both None for a trigger that is not a stamp).
    """

    name: ClassVar[str] = ""
    # True: poisoning replaces the chosen rows by their triggered versions instead of
    # adding triggered copies beside them (SIG corrupts the target's own images).
    replaces_originals: ClassVar[bool] = False

    class Params(registry.Params):
        pass

    def __init__(self, image_shape: tuple[int, ...], seed: int = 0, **params: Any):
        self._set_params(params)
        if len(image_shape) != 3:
            raise TrustlabError(f"backdoor triggers need images (C, H, W), got shape "
                                f"{tuple(image_shape)}")
        self.image_shape = tuple(int(v) for v in image_shape)
        self.seed = seed
        self.mask, self.pattern = self.build()

    def build(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The stamp (mask, pattern) for ``self.image_shape``; (None, None) for a trigger
        that overrides :meth:`apply` instead. A parameter that does not fit the image is
        a :class:`~trustlab.registry.ParamError` naming it."""
        raise NotImplementedError

    def apply(self, x):
        """The triggered copy of a batch (N, C, H, W) of numpy arrays or torch tensors."""
        return stamp(x, self.mask, self.pattern)

    def poison_apply(self, x):
        """The trigger as the poisoned training images carry it: :meth:`apply`, unless an
        attack hides a weaker version in training than it shows at test time (SIG)."""
        return self.apply(x)

    def poison_candidates(self, y: np.ndarray, target: int) -> np.ndarray:
        """Indices of the training rows poisoning may copy: every non-target row (dirty
        label, all-to-one). A clean-label attack returns the target's rows instead."""
        return np.flatnonzero(np.asarray(y) != target)

    def cross_samples(self, x: np.ndarray, y: np.ndarray, poisoned: np.ndarray,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Extra training rows that keep their true labels, beside the poisoned ones
        (rows ``poisoned`` of the clean ``x``, ``y``): (indices into ``x``, their images).
        :func:`~.poisoning.poison` labels them ``y[indices]`` and does not mark them as
        poisoned. None by default; WaNet's noise mode adds randomly warped images."""
        return np.empty(0, dtype=np.int64), np.asarray(x)[:0]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.to_dict().items())
        return (f"{type(self).__name__}({self.image_shape}, seed={self.seed}"
                f"{', ' + args if args else ''})")


class SquareTrigger(Trigger):
    """Base of the BadNets square triggers: a ``size x size`` square at ``position``."""

    class Params(registry.Params):
        size: int = Field(4, ge=1, description="side of the square, in pixels")
        position: Position = Field("bottom_right", description="a corner, center, or the "
                                                               "square's top-left [row, col]")

    def build(self):
        c, h, w = self.image_shape
        mask = np.zeros((h, w), dtype=np.float32)
        pattern = np.zeros((c, h, w), dtype=np.float32)
        r, col = resolve_position(self.position, self.size, h, w)
        mask[r:r + self.size, col:col + self.size] = 1.0
        pattern[:, r:r + self.size, col:col + self.size] = self.square()
        return mask, pattern

    def square(self) -> np.ndarray:
        """The pattern's values inside the square, (size, size)."""
        raise NotImplementedError


class PatchTrigger(SquareTrigger):
    """BadNets patch: a solid white square stamped on the image."""

    name: ClassVar[str] = "patch"

    def square(self) -> np.ndarray:
        return np.ones((self.size, self.size), dtype=np.float32)


class PatternTrigger(SquareTrigger):
    """BadNets pattern: a black/white checkerboard square (white at its top-left pixel)."""

    name: ClassVar[str] = "pattern"

    def square(self) -> np.ndarray:
        ii, jj = np.indices((self.size, self.size))
        return ((ii + jj) % 2 == 0)


class BlendedTrigger(Trigger):
    """Blended: a fixed random image (from the seed) alpha-blended over the whole input."""

    name: ClassVar[str] = "blended"

    class Params(registry.Params):
        alpha: float = Field(0.2, gt=0, le=1, description="weight of the random image")

    def build(self):
        c, h, w = self.image_shape
        mask = np.zeros((h, w), dtype=np.float32)
        pattern = np.zeros((c, h, w), dtype=np.float32)
        mask[:] = float(self.alpha)
        pattern[:] = np.random.default_rng(self.seed).random((c, h, w))
        return mask, pattern


TRIGGERS = Registry("attacks", "backdoor attack", {
    "patch": "trustlab.attacks.backdoor.triggers:PatchTrigger",
    "pattern": "trustlab.attacks.backdoor.triggers:PatternTrigger",
    "blended": "trustlab.attacks.backdoor.triggers:BlendedTrigger",
    "sig": "trustlab.attacks.backdoor.sig:SigTrigger",
    "wanet": "trustlab.attacks.backdoor.wanet:WaNetTrigger",
})


def make_trigger(name: str, image_shape: tuple[int, ...], seed: int = 0,
                 **params: Any) -> Trigger:
    """The registered trigger ``name`` for images of ``image_shape``; an unknown name or a
    bad parameter raises :class:`~trustlab.errors.TrustlabError`."""
    return TRIGGERS.get(name)(image_shape, seed=seed, **params)


__all__ = ["BlendedTrigger", "POSITIONS", "PatchTrigger", "PatternTrigger", "Position",
           "SquareTrigger", "TRIGGERS", "Trigger", "make_trigger", "resolve_position",
           "stamp"]
