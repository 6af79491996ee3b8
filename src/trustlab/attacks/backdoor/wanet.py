"""WaNet (Nguyen & Tran, ICLR 2021): a backdoor whose trigger is a fixed, smooth warp.

Written by hand after the authors' reference code (VinAIResearch/Warping-based_Backdoor_
Attack-release, ``train.py``): a few lines around ``torch.nn.functional.interpolate`` and
``grid_sample``; no torchvision or attack library needed.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from trustlab import registry
from trustlab.attacks.backdoor.triggers import Trigger
from trustlab.registry import ParamError


def warp(x, grid):
    """``x`` (N, C, H, W) resampled at ``grid`` (H, W, 2) or (N, H, W, 2): bilinear
    ``grid_sample`` with ``align_corners=True``, where (-1, -1) is the centre of the
    top-left pixel and the last axis is (column, row). numpy or torch, same type back
    (a floating batch keeps its dtype)."""
    import torch
    import torch.nn.functional as F

    is_torch = hasattr(x, "detach")
    if not is_torch:
        x = np.asarray(x)
        x = torch.from_numpy(np.ascontiguousarray(
            x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)))
    grid = torch.as_tensor(grid if hasattr(grid, "detach") else np.asarray(grid),
                           dtype=x.dtype, device=x.device)
    if grid.ndim == 3:
        grid = grid.expand(len(x), *grid.shape)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out if is_torch else out.numpy()


def identity_grid(height: int, width: int) -> np.ndarray:
    """The sampling grid (H, W, 2) that leaves an image unchanged under :func:`warp`."""
    rows, cols = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width),
                             indexing="ij")
    return np.stack([cols, rows], axis=-1).astype(np.float32)


class WaNetTrigger(Trigger):
    """WaNet (Nguyen & Tran 2021): the trigger is a fixed, smooth random warp of the image.

    The warp: a ``k x k`` grid of random 2-D offsets, uniform in [-1, 1] (drawn from the
    trigger's seed), divided by its mean absolute value, upsampled bicubically to H x W
    (``align_corners=True``), scaled by ``strength / H`` (in grid units, where the image
    spans [-1, 1]: about ``strength / 2`` pixels on average), added to the identity
    sampling grid and clamped to [-1, 1]; :meth:`apply` resamples the input there
    (bilinear ``grid_sample``). ``grid`` (H, W, 2) holds the sampling grid, ``flow``
    (H, W, 2) the upsampled normalised offsets.

    Dirty label, all-to-one like BadNets: ``poison_rate`` is the share of the non-target
    training images whose warped copies, labelled ``target``, are added. Noise mode (the
    paper's): ``round(cross_ratio * n_poisoned)`` other training rows (any class, none of
    the poisoned ones; at most all of them) are added warped by the trigger's grid plus
    uniform noise in [-1, 1] / H (clamped to [-1, 1]) — a fresh draw per row, from the
    poisoning seed — with their *true* labels, so that the network learns the exact warp
    rather than any warp. They are not marked as poisoned
    (:class:`~trustlab.attacks.backdoor.poisoning.PoisonedData` puts them last). The
    reference code warps a share of every batch afresh; here the poisoned and noise rows
    are drawn once, as copies beside the originals.
    """

    name: ClassVar[str] = "wanet"

    class Params(registry.Params):
        k: int = Field(4, ge=2, description="side of the grid of random control offsets "
                                            "(at most the image's side)")
        strength: float = Field(0.5, ge=0, description="warping strength s: offsets are "
                                                       "scaled by s / H")
        cross_ratio: float = Field(2.0, ge=0, description="noise mode: randomly warped "
                                                          "rows with true labels per "
                                                          "poisoned row (0: off)")

    def build(self):
        import torch
        import torch.nn.functional as F

        _, h, w = self.image_shape
        if self.k > min(h, w):
            raise ParamError("k", f"a {self.k}x{self.k} grid of offsets does not fit in a "
                                  f"{h}x{w} image (use at most {min(h, w)})")
        offsets = np.random.default_rng(self.seed).uniform(-1, 1, (1, 2, self.k, self.k))
        offsets = offsets / np.mean(np.abs(offsets))
        flow = F.interpolate(torch.as_tensor(offsets, dtype=torch.float32), size=(h, w),
                             mode="bicubic", align_corners=True)
        self.flow = flow[0].permute(1, 2, 0).numpy()   # (H, W, 2): (column, row) offsets
        self.grid = np.clip(identity_grid(h, w) + self.strength * self.flow / h,
                            -1, 1).astype(np.float32)
        return None, None

    def apply(self, x):
        """The warped batch (N, C, H, W); numpy or torch, same type back."""
        return warp(x, self.grid)

    def cross_samples(self, x, y, poisoned, rng):
        """Noise mode: rows not poisoned, warped by the trigger's grid plus uniform noise
        in [-1, 1] / H each (see the class docstring)."""
        _, h, w = self.image_shape
        pool = np.setdiff1d(np.arange(len(y)), poisoned)
        n = min(round(self.cross_ratio * len(poisoned)), len(pool))
        idx = np.sort(rng.choice(pool, size=n, replace=False))
        noise = rng.uniform(-1, 1, (n, h, w, 2)) / h
        grids = np.clip(self.grid[None] + noise, -1, 1).astype(np.float32)
        return idx, warp(np.asarray(x)[idx], grids)


__all__ = ["WaNetTrigger", "identity_grid", "warp"]
