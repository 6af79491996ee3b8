"""OccamNets (Shrestha, Kafle & Kanan, ECCV 2022): a multi-exit CNN whose exits predict
from class activation maps (CAMs), trained to use as little of the image and as early an
exit as suffices.

The network (``occam_cnn``): a trunk of ``blocks`` conv blocks (conv-BN-ReLU x2, max-pool
between blocks, channels doubling from ``width``); after each block an exit: two 3x3 convs
(the second to ``cam_hid`` channels), ReLU, a 1x1 conv to one map per class (the CAM);
the exit's logits are the CAM's global average, and a gate (pooled exit features, detached
-> Linear-BN-ReLU-Linear -> sigmoid) predicts whether to stop there. Exit 0 reads a
detached copy of the trunk (it does not train the trunk) and is not used at inference,
as in the authors' code. At inference a sample leaves at the first exit (from exit 1)
whose gate is >= 0.5, else at the last.

The method (``occam``), per exit e, as in the authors' trainer:

* CAM suppression: at the locations where the true class's CAM is at most its mean, the
  KL divergence from a uniform class distribution to the softmax over the CAMs' classes
  (those locations are pushed to say nothing);
* gate loss: binary cross-entropy of the gate against "this exit predicts the sample
  correctly", exits and continues re-weighted to balance (``balance_factor``);
* gate-weighted cross-entropy: exit 0 weights each sample by its true-class probability
  ``p^gamma0`` (it specializes on easy, likely-biased samples); exit e > 0 by
  ``(1 - gate_{e-1})^gamma`` (what the previous exit would not stop), normalized by the
  running maximum, plus ``offset``.

Simplification, named as such: the authors freeze each gate's targets once that exit's
training accuracy passes a per-exit threshold (a per-sample memory keyed by dataset
index); here the targets are always the current correctness. Written by hand: no library
ships OccamNets for plain PyTorch.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from trustlab import registry
from trustlab.errors import TrustlabError
from trustlab.registry import Configurable
from trustlab.training.deep.methods import Method


class _Exit(nn.Module):
    def __init__(self, in_ch: int, cam_hid: int, n_classes: int):
        super().__init__()
        hid = max(1, in_ch // 4)
        self.convs = nn.Sequential(nn.Conv2d(in_ch, hid, 3, padding=1), nn.BatchNorm2d(hid),
                                   nn.ReLU(), nn.Conv2d(hid, cam_hid, 3, padding=1),
                                   nn.ReLU())
        self.cam = nn.Conv2d(cam_hid, n_classes, 1)
        self.gate = nn.Sequential(nn.Linear(cam_hid, 16), nn.BatchNorm1d(16), nn.ReLU(),
                                  nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.convs(x)
        cam = self.cam(h)
        gate = torch.sigmoid(self.gate(F.adaptive_avg_pool2d(h.detach(), 1).flatten(1)))
        return {"cam": cam, "logits": cam.mean(dim=(2, 3)), "gate": gate.squeeze(1)}


class OccamCNN(Configurable, nn.Module):
    """OccamNets' multi-exit CNN (see the module docstring). ``forward`` returns the
    early-exit logits; :meth:`exit_outputs` every exit's CAM, logits and gate."""

    name: ClassVar[str] = "occam_cnn"

    class Params(registry.Params):
        width: int = Field(16, ge=1, description="channels of the first block (doubling)")
        blocks: int = Field(3, ge=2, description="trunk blocks, one exit after each")

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, **params):
        super().__init__()
        self._set_params(params)
        if len(input_shape) != 3:
            raise TrustlabError(f"occam_cnn needs image input (C, H, W), got shape "
                                f"{input_shape}")
        c = input_shape[0]
        trunk, exits = [], []
        for i in range(self.blocks):
            w = self.width * 2 ** i
            trunk.append(nn.Sequential(
                *([nn.MaxPool2d(2)] if i > 0 else []),
                nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()))
            exits.append(_Exit(w, w, n_classes))
            c = w
        self.trunk = nn.ModuleList(trunk)
        self.exits = nn.ModuleList(exits)
        self.feature_dim = c

    def exit_outputs(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        outs = []
        for i, (block, exit_) in enumerate(zip(self.trunk, self.exits)):
            x = block(x)
            outs.append(exit_(x.detach() if i == 0 else x))
        return outs

    @staticmethod
    def early_exit(outs: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, exit index) per sample: the first exit from 1 whose gate is >= 0.5,
        else the last."""
        candidates = outs[1:]
        chosen = torch.full_like(candidates[0]["gate"], len(outs) - 1, dtype=torch.long)
        decided = torch.zeros_like(chosen, dtype=torch.bool)
        for i, out in enumerate(candidates, start=1):
            stop = (out["gate"] >= 0.5) & ~decided
            chosen = torch.where(stop, torch.full_like(chosen, i), chosen)
            decided |= stop
        logits = torch.stack([o["logits"] for o in outs], dim=1)  # (N, E, K)
        return logits[torch.arange(len(chosen)), chosen], chosen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.early_exit(self.exit_outputs(x))[0]


def cam_suppression(cam: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over samples and locations of KL(uniform || softmax_classes(cam)) at the
    locations where the true class's CAM is at most its mean over the image (0 elsewhere)."""
    n, k = cam.shape[:2]
    flat = cam.flatten(2)                                   # (N, K, HW)
    gt = flat[torch.arange(n), y]                           # (N, HW)
    suppress = (gt <= gt.mean(dim=1, keepdim=True)).float()
    log_p = F.log_softmax(flat, dim=1)
    kl = (-math.log(k) - log_p).mean(dim=1)  # sum_k (1/K) (log(1/K) - log p_k)
    return (suppress * kl).mean()


def balanced_gate_loss(gate: torch.Tensor, correct: torch.Tensor, balance_factor: float,
                       eps: float = 1e-5) -> torch.Tensor:
    """BCE of the gate against correctness, exits and continues weighted by
    (max count / own count) ** balance_factor, as the authors' ExitGateLoss."""
    n_exit, n_cont = correct.sum(), (1 - correct).sum()
    top = torch.maximum(n_exit, n_cont)
    share_exit, share_cont = n_exit / top, n_cont / top
    w = torch.where(correct > 0, (1 / (share_exit + eps)) ** balance_factor,
                    (1 / (share_cont + eps)) ** balance_factor)
    return (w * F.binary_cross_entropy(gate.clamp(1e-6, 1 - 1e-6), correct,
                                       reduction="none")).mean()


class OccamNets(Method):
    """OccamNets' training (see the module docstring); needs the ``occam_cnn`` network."""

    name: ClassVar[str] = "occam"
    search_space = {**Method.search_space, "suppression_weight": ("log", 0.01, 1.0)}

    class Params(Method.Params):
        suppression_weight: float = Field(0.1, ge=0.0, description="weight of the CAM "
                                                                   "suppression loss")
        gate_weight: float = Field(1.0, ge=0.0, description="weight of the exit-gate loss")
        gamma0: float = Field(3.0, ge=0.0, description="exit 0 weights samples by p_true^gamma0")
        gamma: float = Field(1.0, ge=0.0, description="exit e weights by (1 - gate_{e-1})^gamma")
        offset: float = Field(0.1, ge=0.0, description="added to every normalized weight")
        balance_factor: float = Field(0.5, ge=0.0, description="exit/continue balancing of "
                                                               "the gate loss")

    def __init__(self, model, n_classes, n_groups, **params):
        super().__init__(model, n_classes, n_groups, **params)
        if not hasattr(model, "exit_outputs"):
            raise TrustlabError("method occam needs a multi-exit network: model "
                                "{name: occam_cnn}")
        self.max_weight = [0.0] * len(model.exits)  # running maxima (the authors' state)

    def exit_weights(self, e: int, outs, y: torch.Tensor) -> torch.Tensor:
        """The gate-weighted CE's per-sample weights of exit ``e`` (normalized, + offset)."""
        if e == 0:
            p_true = F.softmax(outs[0]["logits"], dim=1)[torch.arange(len(y)), y]
            w = p_true.detach() ** self.gamma0
        else:
            w = (1 - outs[e - 1]["gate"].detach()) ** self.gamma
        self.max_weight[e] = max(self.max_weight[e], float(w.max()))
        return w / (self.max_weight[e] + 1e-5) + self.offset

    def objective(self, x, y, g):
        outs = self.model.exit_outputs(x)
        total = x.new_zeros(())
        ce_last = supp_sum = gate_sum = 0.0
        for e, out in enumerate(outs):
            ce = F.cross_entropy(out["logits"], y, reduction="none")
            total = total + (self.exit_weights(e, outs, y) * ce).mean()
            supp = cam_suppression(out["cam"], y)
            correct = (out["logits"].argmax(1) == y).float().detach()
            gate = balanced_gate_loss(out["gate"], correct, self.balance_factor)
            total = total + self.suppression_weight * supp + self.gate_weight * gate
            ce_last, supp_sum, gate_sum = ce.mean().item(), supp_sum + supp.item(), \
                gate_sum + gate.item()
        return total, {"ce": ce_last, "cam_suppression": supp_sum, "gate_loss": gate_sum}


__all__ = ["OccamCNN", "OccamNets", "balanced_gate_loss", "cam_suppression"]
