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
and ``patience`` failures in a row divide it by ``cost_multiplier ** 1.5``. The kept
trigger of a label is its smallest-L1 mask that reached the threshold (the last one if
none did).

Outlier detection is the paper's MAD test: ``anomaly_index = |L1 - median| / (1.4826 *
MAD)``; labels with an L1 below the median and an index above 2 are flagged.

Written by hand: no maintained PyTorch library implements Neural Cleanse. As a registered
defense (``neural_cleanse``) it detects only; ``unlearning`` repairs with its result.
"""

from __future__ import annotations

import copy
import io
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import Field

from trustlab import registry
from trustlab.defenses.base import Defense, DefenseOutcome
from trustlab.errors import TrustlabError

if TYPE_CHECKING:
    from trustlab.attacks.backdoor import BackdoorCase

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


class NeuralCleanse(Defense):
    """Neural Cleanse (Wang et al. 2019): reverse-engineer a trigger per label, flag the
    anomalously small ones (detection only).

    ``NeuralCleanse(seed=0, device=None, **params).fit(model, x_clean, n_classes)``; after
    :meth:`fit`: ``masks_`` (K, H, W), ``patterns_`` (K, C, H, W), ``l1_norms_`` (K,),
    ``attack_success_`` (K,) (the kept trigger's success rate on its last batch),
    ``anomaly_index_`` (K,), ``flagged_`` (labels, smallest L1 first), ``costs_`` (K,).
    As a defense (:meth:`defend`): the ``nc.*`` metrics and ``nc_triggers.npz``.
    """

    name: ClassVar[str] = "neural_cleanse"

    class Params(registry.Params):
        steps: int = Field(300, ge=1, description="Adam steps (all labels at once)")
        lr: float = Field(0.1, gt=0, description="Adam learning rate")
        batch_size: int = Field(32, ge=1, description="clean inputs per label and step")
        init_cost: float = Field(1e-3, gt=0, description="initial weight of the mask's L1")
        cost_multiplier: float = Field(1.5, gt=1, description="factor the cost moves by")
        patience: int = Field(5, ge=1, description="steps of success/failure in a row "
                                                   "before the cost moves")
        attack_threshold: float = Field(0.99, gt=0, le=1,
                                        description="batch attack success rate that counts "
                                                    "as a success")
        anomaly_threshold: float = Field(2.0, gt=0, description="anomaly index above which "
                                                                "a label is flagged")

    def fit(self, model, x_clean, n_classes: int | None = None) -> NeuralCleanse:
        """Reverse-engineer a trigger for each of ``n_classes`` labels (None: the model's
        output size) of a frozen copy of ``model`` on the clean images ``x_clean``."""
        import torch
        from torch.nn import functional as F

        from trustlab.training.deep import resolve_device

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

    def detection_metrics(self, target: int) -> dict[str, float]:
        """``nc.l1.<k>``, ``nc.anomaly_index.<k>`` per label, ``nc.flagged_target`` (is the
        true ``target`` flagged), ``nc.detected_label`` (-1: none), ``nc.n_flagged``,
        ``nc.max_anomaly_index`` and ``nc.min_l1_label`` (the label a backdoor should make
        the outlier)."""
        out: dict[str, float] = {}
        for k, (l1, ai) in enumerate(zip(self.l1_norms_, self.anomaly_index_)):
            out[f"nc.l1.{k}"] = float(l1)
            out[f"nc.anomaly_index.{k}"] = float(ai)
        out["nc.flagged_target"] = float(target in self.flagged_)
        out["nc.detected_label"] = float(self.detected_label_)
        out["nc.n_flagged"] = float(len(self.flagged_))
        out["nc.max_anomaly_index"] = float(np.max(self.anomaly_index_))
        out["nc.min_l1_label"] = float(int(np.argmin(self.l1_norms_)))
        return out

    def triggers_npz(self, target: int, true_mask=None, true_pattern=None) -> bytes:
        """The reversed triggers as ``nc_triggers.npz``: ``masks``, ``patterns``, ``l1``,
        ``anomaly_index``, ``flagged``, ``target``, ``anomaly_threshold`` and the true
        trigger's ``true_mask``/``true_pattern`` (when it is a stamp). The report draws
        its figures from this file."""
        truth = {} if true_mask is None else {"true_mask": true_mask,
                                              "true_pattern": true_pattern}
        buf = io.BytesIO()
        np.savez_compressed(buf, masks=self.masks_.astype(np.float32),
                            patterns=self.patterns_.astype(np.float32), l1=self.l1_norms_,
                            anomaly_index=self.anomaly_index_,
                            flagged=np.asarray(self.flagged_, dtype=np.int64),
                            target=np.int64(target), **truth,
                            anomaly_threshold=np.float64(self.anomaly_threshold))
        return buf.getvalue()

    def defend(self, case: BackdoorCase) -> DefenseOutcome:
        self.fit(case.model, case.x_clean, case.n_classes)
        npz = self.triggers_npz(case.target, case.trigger.mask, case.trigger.pattern)
        return DefenseOutcome(metrics=self.detection_metrics(case.target),
                              artifacts={"nc_triggers.npz": npz})


__all__ = ["MAD_CONSTANT", "NeuralCleanse", "anomaly_indices", "flagged_labels"]
