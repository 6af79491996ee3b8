"""Neural Cleanse (Wang et al., S&P 2019): reverse-engineer, per label, the smallest
trigger that flips clean inputs to it, then flag labels whose trigger is anomalously small.

For every label ``k`` a mask ``m_k`` (H, W) and a pattern ``p_k`` (C, H, W) are optimized,
both through ``tanh(w) / (2 - eps) + 0.5`` so they stay in [0, 1], to minimise

    CE(f((1 - m_k) * x + m_k * p_k), k) + cost_k * |m_k|_1

on the defender's clean inputs ``x`` with Adam (lr 0.1, betas 0.5/0.9). The optimization
follows the authors' reference code (``visualizer.py``), epoch by epoch (an epoch is
``steps_per_epoch`` mini-batches; its attack success rate and L1 are averaged over them):

* the cost starts at **0** — the mask first learns to flip inputs at all — and is set to
  ``init_cost`` once the attack succeeds (epoch success rate >= ``attack_threshold``)
  ``patience`` epochs in a row;
* then ``patience`` successful epochs in a row multiply it by ``cost_multiplier`` and
  ``patience`` failed ones divide it by ``cost_multiplier ** 1.5``;
* the kept trigger is the end-of-epoch mask of the successful epoch with the smallest
  average L1; a label stops once its cost has moved both up and down and the best L1 has
  not improved for ``early_stop_patience`` epochs (or after ``steps`` mini-batches).

Our addition: all labels are optimized together in one batched run (the masks and
patterns carry a leading label dimension, each mini-batch pushes labels x batch stamped
inputs through the frozen model, each label keeps its own cost schedule), and a label
that has stopped leaves the batch.

Outlier detection is the paper's MAD test: ``anomaly_index = |L1 - median| / (1.4826 *
MAD)``; labels with an L1 below the median and an index above ``anomaly_threshold`` (2)
are flagged.

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


_EPS = 1e-7  # the reference code's tanh scaling keeps values strictly inside (0, 1)


def _to_tanh_space(v):
    import torch

    return torch.atanh((v - 0.5) * (2 - _EPS))


def _from_tanh_space(w):
    import torch

    return torch.tanh(w) / (2 - _EPS) + 0.5


class _CostSchedule:
    """Per-label state of the reference code's cost schedule and early stop, as tensors
    (one entry per label), updated once per epoch by :meth:`end_epoch`."""

    def __init__(self, n_labels: int, p, device):
        import torch

        def zeros(dtype):
            return torch.zeros(n_labels, dtype=dtype, device=device)

        self.p = p
        self.cost = zeros(torch.float32)              # 0 until the attack first succeeds
        self.set_count, self.up_count, self.down_count = (zeros(torch.long) for _ in "sud")
        self.up_flag, self.down_flag, self.done = (zeros(torch.bool) for _ in "udx")
        self.best_l1 = torch.full((n_labels,), float("inf"), device=device)
        self.stop_best = torch.full((n_labels,), float("inf"), device=device)
        self.stop_count = zeros(torch.long)

    def end_epoch(self, labels, acc, l1):
        """Record one epoch of ``labels`` (epoch-average success rate ``acc`` and L1);
        returns which of them found a new best (successful, smaller L1) trigger."""
        import torch

        p, i = self.p, labels
        hit = acc >= float(p.attack_threshold)
        better = hit & (l1 < self.best_l1[i])
        self.best_l1[i] = torch.where(better, l1, self.best_l1[i])
        # Early stop: once both cost moves happened, stop after `early_stop_patience`
        # epochs in which the best L1 did not improve.
        found = torch.isfinite(self.best_l1[i])
        stale = found & (self.best_l1[i] >= self.stop_best[i])
        self.stop_count[i] = torch.where(stale, self.stop_count[i] + 1,
                                         torch.where(found, 0, self.stop_count[i]))
        self.stop_best[i] = torch.minimum(self.stop_best[i], self.best_l1[i])
        self.done[i] = (self.up_flag[i] & self.down_flag[i]
                        & (self.stop_count[i] >= int(p.early_stop_patience)))
        # The cost is set to init_cost after `patience` successful epochs at cost 0 ...
        unset = self.cost[i] == 0
        self.set_count[i] = torch.where(unset & hit, self.set_count[i] + 1, 0)
        start = self.set_count[i] >= int(p.patience)
        self.cost[i] = torch.where(start, torch.full_like(l1, float(p.init_cost)),
                                   self.cost[i])
        for t in (self.up_count, self.down_count):
            t[i] = torch.where(start, 0, t[i])
        for t in (self.up_flag, self.down_flag):
            t[i] = torch.where(start, False, t[i])
        # ... then moves up after `patience` successes in a row, down after as many failures.
        self.up_count[i] = torch.where(hit, self.up_count[i] + 1, 0)
        self.down_count[i] = torch.where(hit, 0, self.down_count[i] + 1)
        up = self.up_count[i] >= int(p.patience)
        down = ~up & (self.down_count[i] >= int(p.patience))
        mult = float(p.cost_multiplier)
        self.cost[i] = torch.where(up, self.cost[i] * mult,
                                   torch.where(down, self.cost[i] / mult ** 1.5, self.cost[i]))
        self.up_count[i] = torch.where(up, 0, self.up_count[i])
        self.down_count[i] = torch.where(down, 0, self.down_count[i])
        self.up_flag[i] |= up
        self.down_flag[i] |= down
        return better


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
        steps: int = Field(500, ge=1, description="most mini-batches per label (a label "
                                                   "usually stops early)")
        steps_per_epoch: int = Field(5, ge=1, description="mini-batches per epoch (the "
                                                           "schedule moves once per epoch)")
        lr: float = Field(0.1, gt=0, description="Adam learning rate")
        batch_size: int = Field(16, ge=1, description="clean inputs per label and step")
        init_cost: float = Field(1e-3, gt=0, description="weight of the mask's L1 once the "
                                                         "attack first succeeds")
        cost_multiplier: float = Field(2.0, gt=1, description="factor the cost is raised by "
                                                              "(lowered by its power 1.5)")
        patience: int = Field(5, ge=1, description="epochs of success/failure in a row "
                                                   "before the cost moves")
        early_stop_patience: int = Field(25, ge=1, description="epochs without a smaller "
                                                               "L1 before a label stops")
        attack_threshold: float = Field(0.99, gt=0, le=1,
                                        description="epoch attack success rate that counts "
                                                    "as a success")
        anomaly_threshold: float = Field(2.0, gt=0, description="anomaly index above which "
                                                                "a label is flagged")

    def fit(self, model, x_clean, n_classes: int | None = None,
            labels: list[int] | None = None) -> NeuralCleanse:
        """Reverse-engineer a trigger for each of ``n_classes`` labels (None: the model's
        output size) of a frozen copy of ``model`` on the clean images ``x_clean``.
        ``labels``: optimize only these (the others keep their random initial trigger;
        the benchmark's one-label-at-a-time scan uses it)."""
        import torch

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
        # Random initial mask and pattern, mapped into tanh space, as the reference code.
        mask_w = _to_tanh_space(torch.rand(K, 1, h, w, generator=gen)).to(dev).requires_grad_()
        pattern_w = _to_tanh_space(torch.rand(K, c, h, w, generator=gen)).to(dev)
        pattern_w.requires_grad_()
        opt = torch.optim.Adam([mask_w, pattern_w], lr=float(self.lr), betas=(0.5, 0.9))
        schedule = _CostSchedule(K, self, dev)
        if labels is not None:
            schedule.done[:] = True
            schedule.done[torch.as_tensor(list(labels), dtype=torch.long)] = False
        best_mask = torch.zeros(K, h, w, device=dev)
        best_pattern = torch.zeros(K, c, h, w, device=dev)
        best_acc = torch.zeros(K, device=dev)
        last_acc = torch.zeros(K, device=dev)
        B, per_epoch = int(self.batch_size), int(self.steps_per_epoch)
        n_epochs = -(-int(self.steps) // per_epoch)
        self.epochs_ = np.zeros(K, dtype=np.int64)
        for epoch in range(n_epochs):
            active = torch.nonzero(~schedule.done).flatten()
            if len(active) == 0:
                break
            n = len(active)
            targets = active.repeat_interleave(B)
            acc_sum = torch.zeros(n, device=dev)
            l1_sum = torch.zeros(n, device=dev)
            for _ in range(per_epoch):
                xb = x[torch.randint(len(x), (B,), generator=gen)].to(dev)
                mask = _from_tanh_space(mask_w[active])            # (n, 1, H, W)
                pattern = _from_tanh_space(pattern_w[active])      # (n, C, H, W)
                stamped = (1 - mask[:, None]) * xb[None] + (mask * pattern)[:, None]
                logits = net(stamped.reshape(-1, c, h, w))
                ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
                l1 = mask.flatten(1).sum(1)
                # Labels are independent: the sum keeps each label's own gradient.
                loss = (ce.view(n, B).mean(1) + schedule.cost[active] * l1).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    acc_sum += (logits.argmax(1) == targets).float().view(n, B).mean(1)
                    l1_sum += l1
            with torch.no_grad():
                acc, avg_l1 = acc_sum / per_epoch, l1_sum / per_epoch
                last_acc[active] = acc
                better = schedule.end_epoch(active, acc, avg_l1)
                keep = active[better]
                best_mask[keep] = _from_tanh_space(mask_w[keep])[:, 0]
                best_pattern[keep] = _from_tanh_space(pattern_w[keep])
                best_acc[keep] = acc[better]
                self.epochs_[active.cpu().numpy()] = epoch + 1
        with torch.no_grad():  # labels that never succeeded keep their last trigger
            never = torch.isinf(schedule.best_l1)
            best_mask[never] = _from_tanh_space(mask_w[never])[:, 0]
            best_pattern[never] = _from_tanh_space(pattern_w[never])
            best_acc[never] = last_acc[never]
        self.masks_ = best_mask.cpu().numpy()
        self.patterns_ = best_pattern.cpu().numpy()
        self.l1_norms_ = self.masks_.reshape(K, -1).sum(1).astype(float)
        self.attack_success_ = best_acc.cpu().numpy().astype(float)
        self.reached_threshold_ = (~never).cpu().numpy()
        self.costs_ = schedule.cost.cpu().numpy().astype(float)
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
