"""Neural Cleanse (Wang et al., S&P 2019): reverse-engineer, per label, the smallest
trigger that flips clean inputs to it, then flag labels whose trigger is anomalously small.

For every label ``k`` a mask ``m_k`` (H, W) and a pattern ``p_k`` (C, H, W) are optimized,
both through ``(tanh(w) + 1) / 2`` so they stay in [0, 1], to minimise

    CE(f((1 - m_k) * x + m_k * p_k), k) + cost_k * |m_k|_1

on clean inputs ``x``. All labels are optimized together in one batched run: the masks and
patterns carry a leading label dimension and each step pushes (labels x batch) stamped
inputs through the frozen model. ``cost_k`` follows the reference code's schedule: it
starts at ``init_cost``; checked every step against ``attack_threshold`` (the batch's
attack success rate), ``patience`` successes in a row multiply it by ``cost_multiplier``
and ``patience`` failures in a row divide it by ``cost_multiplier ** 1.5``. The kept trigger of a label is its
smallest-L1 mask that reached the threshold (the last one if none did).

Outlier detection is the paper's MAD test: ``anomaly_index = |L1 - median| / (1.4826 *
MAD)``; labels with an L1 below the median and an index above 2 are flagged.

Written by hand: no maintained PyTorch library implements Neural Cleanse.
"""

from __future__ import annotations

import copy

import numpy as np

from trustlab.errors import TrustlabError

MAD_CONSTANT = 1.4826  # makes the MAD a consistent estimator of a normal's std


def anomaly_indices(l1_norms) -> np.ndarray:
    """``|L1 - median| / (1.4826 * MAD)`` per label (0 when the MAD is 0 and L1 = median,
    inf when the MAD is 0 and it differs)."""
    l1 = np.asarray(l1_norms, dtype=float)
    med = np.median(l1)
    dev = np.abs(l1 - med)
    mad = MAD_CONSTANT * np.median(dev)
    if mad == 0:
        return np.where(dev == 0, 0.0, np.inf)
    return dev / mad


def flagged_labels(l1_norms, threshold: float = 2.0) -> list[int]:
    """Labels whose L1 is below the median with an anomaly index above ``threshold``,
    smallest L1 first."""
    l1 = np.asarray(l1_norms, dtype=float)
    idx = anomaly_indices(l1)
    flagged = np.flatnonzero((l1 < np.median(l1)) & (idx > threshold))
    return [int(k) for k in flagged[np.argsort(l1[flagged], kind="stable")]]


def _positive(name: str, value, integer: bool = False):
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0
          and (not integer or float(value).is_integer()))
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise TrustlabError(f"neural_cleanse: {name!r} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


class NeuralCleanse:
    """Reverse-engineer triggers for all labels of a model and detect the backdoored ones.

    After :meth:`fit`: ``masks_`` (K, H, W), ``patterns_`` (K, C, H, W), ``l1_norms_`` (K,),
    ``attack_success_`` (K,) (the kept trigger's success rate on its last batch),
    ``anomaly_index_`` (K,), ``flagged_`` (labels, smallest L1 first), ``costs_`` (K,).
    """

    def __init__(self, steps: int = 300, lr: float = 0.1, batch_size: int = 32,
                 init_cost: float = 1e-3, cost_multiplier: float = 1.5, patience: int = 5,
                 attack_threshold: float = 0.99, anomaly_threshold: float = 2.0,
                 seed: int = 0, device=None):
        self.steps = steps
        self.lr = lr
        self.batch_size = batch_size
        self.init_cost = init_cost
        self.cost_multiplier = cost_multiplier
        self.patience = patience
        self.attack_threshold = attack_threshold
        self.anomaly_threshold = anomaly_threshold
        self.seed = seed
        self.device = device

    def _check(self) -> None:
        _positive("steps", self.steps, integer=True)
        _positive("lr", self.lr)
        _positive("batch_size", self.batch_size, integer=True)
        _positive("init_cost", self.init_cost)
        _positive("patience", self.patience, integer=True)
        if _positive("cost_multiplier", self.cost_multiplier) <= 1:
            raise TrustlabError("neural_cleanse: 'cost_multiplier' must be > 1")
        if not 0 < float(self.attack_threshold) <= 1:
            raise TrustlabError(f"neural_cleanse: 'attack_threshold' must be in (0, 1], "
                                f"got {self.attack_threshold!r}")

    def fit(self, model, x_clean, n_classes: int | None = None) -> NeuralCleanse:
        import torch
        from torch.nn import functional as F

        from trustlab.training.deep import resolve_device

        self._check()
        dev = resolve_device(self.device)
        x = torch.as_tensor(np.asarray(x_clean, dtype=np.float32))
        if x.ndim != 4 or len(x) == 0:
            raise TrustlabError(f"neural_cleanse needs a non-empty image batch (N, C, H, W), "
                                f"got shape {tuple(x.shape)}")
        net = copy.deepcopy(model).to(dev).eval()  # frozen copy: BN in inference mode
        for p in net.parameters():
            p.requires_grad_(False)
        if n_classes is None:
            with torch.no_grad():
                n_classes = int(net(x[:1].to(dev)).shape[1])
        K = int(n_classes)
        _, c, h, w = x.shape
        gen = torch.Generator().manual_seed(int(self.seed))
        # Start from a mid-sized mask and a random pattern, as the reference code does.
        mask_w = torch.zeros(K, 1, h, w, device=dev).requires_grad_()
        pattern_w = (torch.rand(K, c, h, w, generator=gen) * 2 - 1).to(dev).requires_grad_()
        opt = torch.optim.Adam([mask_w, pattern_w], lr=float(self.lr), betas=(0.5, 0.9))
        targets = torch.arange(K, device=dev).repeat_interleave(int(self.batch_size))

        cost = torch.full((K,), float(self.init_cost), device=dev)
        up = torch.zeros(K, dtype=torch.long, device=dev)
        down = torch.zeros(K, dtype=torch.long, device=dev)
        best_l1 = torch.full((K,), float("inf"), device=dev)
        best_mask = torch.zeros(K, h, w, device=dev)
        best_pattern = torch.zeros(K, c, h, w, device=dev)
        best_acc = torch.zeros(K, device=dev)
        mult, thr, pat = float(self.cost_multiplier), float(self.attack_threshold), \
            int(self.patience)
        for _ in range(int(self.steps)):
            idx = torch.randint(len(x), (int(self.batch_size),), generator=gen)
            xb = x[idx].to(dev)
            mask = (torch.tanh(mask_w) + 1) / 2                  # (K, 1, H, W)
            pattern = (torch.tanh(pattern_w) + 1) / 2            # (K, C, H, W)
            stamped = (1 - mask[:, None]) * xb[None] + (mask * pattern)[:, None]
            logits = net(stamped.reshape(-1, c, h, w))
            ce = F.cross_entropy(logits, targets, reduction="none").view(K, -1).mean(1)
            l1 = mask.flatten(1).sum(1)
            loss = (ce + cost * l1).sum()   # labels are independent: summing keeps each
            opt.zero_grad()                 # label's own gradient
            loss.backward()
            opt.step()
            with torch.no_grad():
                acc = (logits.argmax(1) == targets).float().view(K, -1).mean(1)
                hit = acc >= thr
                better = hit & (l1 < best_l1)
                best_l1 = torch.where(better, l1, best_l1)
                best_mask[better] = mask[better, 0]
                best_pattern[better] = pattern[better]
                best_acc = torch.where(better, acc, best_acc)
                # The schedule: patience-long runs of success / failure move cost up / down.
                up = torch.where(hit, up + 1, torch.zeros_like(up))
                down = torch.where(~hit, down + 1, torch.zeros_like(down))
                raise_ = up >= pat
                lower = down >= pat
                cost = torch.where(raise_, cost * mult, cost)
                cost = torch.where(lower, cost / mult ** 1.5, cost)
                up = torch.where(raise_, torch.zeros_like(up), up)
                down = torch.where(lower, torch.zeros_like(down), down)
        with torch.no_grad():  # labels never reaching the threshold keep their last trigger
            never = torch.isinf(best_l1)
            mask = (torch.tanh(mask_w) + 1) / 2
            pattern = (torch.tanh(pattern_w) + 1) / 2
            best_mask[never] = mask[never, 0]
            best_pattern[never] = pattern[never]
            best_acc[never] = acc[never]
        self.masks_ = best_mask.cpu().numpy()
        self.patterns_ = best_pattern.cpu().numpy()
        self.l1_norms_ = self.masks_.reshape(K, -1).sum(1).astype(float)
        self.attack_success_ = best_acc.cpu().numpy().astype(float)
        self.reached_threshold_ = (~never).cpu().numpy()
        self.costs_ = cost.cpu().numpy().astype(float)
        self.anomaly_index_ = anomaly_indices(self.l1_norms_)
        self.flagged_ = flagged_labels(self.l1_norms_, float(self.anomaly_threshold))
        return self

    @property
    def detected_label_(self) -> int:
        """The lowest-L1 flagged label, or -1 when none is flagged."""
        return self.flagged_[0] if self.flagged_ else -1


__all__ = ["MAD_CONSTANT", "NeuralCleanse", "anomaly_indices", "flagged_labels"]
