"""Fine-pruning (Liu et al., RAID 2018): backdoor neurons tend to stay dormant on clean
inputs, so prune the last convolutional layer's channels that are least active on clean
data, then fine-tune on clean data to recover the accuracy pruning cost.

Pruning is a fixed 0/1 channel mask (:class:`ChannelMask`) inserted after the activation
that follows ``model.last_conv`` — a pruned channel then outputs exactly 0 whatever the
BatchNorm shift, and stays 0 during fine-tuning. Activity is the mean post-activation
value of each channel over the clean inputs.

How many channels go: a fixed ``prune_fraction``, or — as in the paper — channels are
pruned one by one in increasing order of activity for as long as the clean accuracy on
the defender's rows stays within ``max_accuracy_drop`` of the unpruned model's
(``prune_fraction`` then caps the share pruned).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from trustlab import registry
from trustlab.defenses.base import Defense, DefenseOutcome, finetune
from trustlab.errors import TrustlabError

if TYPE_CHECKING:
    from trustlab.attacks.backdoor import BackdoorCase


class ChannelMask(nn.Module):
    """Multiply (N, C, H, W) activations by a fixed per-channel 0/1 mask."""

    def __init__(self, keep: torch.Tensor):
        super().__init__()
        self.register_buffer("keep", keep.float().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.keep


def _is_pruned(module: nn.Module) -> bool:
    """An activation already wrapped with a :class:`ChannelMask` by an earlier pruning."""
    return isinstance(module, nn.Sequential) and any(isinstance(m, ChannelMask)
                                                     for m in module)


def _activation_after_last_conv(model: nn.Module) -> tuple[nn.Sequential, int]:
    """(container, index) of the first ReLU after ``model.last_conv`` in ``model.features``
    (the last conv itself when no ReLU follows)."""
    last = getattr(model, "last_conv", None)
    features = getattr(model, "features", None)
    if not isinstance(last, nn.Conv2d) or not isinstance(features, nn.Sequential):
        raise TrustlabError("fine_pruning needs a CNN with a 'last_conv' layer inside "
                            "'features' (e.g. small_cnn)")
    mods = list(features)
    pos = next((i for i, m in enumerate(mods) if m is last), None)
    if pos is None:
        raise TrustlabError("fine_pruning: model.last_conv is not in model.features")
    for i in range(pos + 1, len(mods)):
        if isinstance(mods[i], (nn.ReLU, nn.LeakyReLU, nn.GELU)) or _is_pruned(mods[i]):
            return features, i
        if isinstance(mods[i], (nn.Conv2d, nn.Linear, nn.Flatten, nn.AdaptiveAvgPool2d)):
            break
    return features, pos


@torch.no_grad()
def channel_activity(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Mean activation of each channel after the last conv (+ its activation), clean data."""
    features, i = _activation_after_last_conv(model)
    sums: list[torch.Tensor] = []
    hook = features[i].register_forward_hook(
        lambda _m, _in, out: sums.append(out.detach().float().mean(dim=(2, 3)).sum(0).cpu()))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
        for s in range(0, len(xt), batch_size):
            model(xt[s:s + batch_size].to(device))
    finally:
        hook.remove()
        model.train(was_training)
    return (torch.stack(sums).sum(0) / len(x)).numpy()


class FinePruning(Defense):
    """Fine-pruning (Liu et al. 2018): prune the last conv layer's least active channels on
    clean data, then fine-tune.

    ``FinePruning(seed=0, device=None, **params).fit(model, x_clean, y_clean, n_classes)``
    prunes ``round(prune_fraction * channels)`` channels of a copy of the model and
    fine-tunes it for ``epochs``; after it: ``model_``, ``activity_`` (per channel),
    ``pruned_`` (channel indices), ``keep_mask_`` (bool per channel). As a defense
    (:meth:`defend`): metrics ``fp.pruned_channels`` and ``fp.channels``, and the repaired
    model.
    """

    name: ClassVar[str] = "fine_pruning"

    class Params(registry.Params):
        prune_fraction: float = Field(0.5, ge=0, le=1, description="share of the last conv "
                                                                   "layer's channels pruned "
                                                                   "(the cap, with "
                                                                   "max_accuracy_drop)")
        max_accuracy_drop: float | None = Field(
            None, ge=0, le=1, description="prune while the clean accuracy stays within this "
                                          "drop of the unpruned model's (Liu et al.); null: "
                                          "prune exactly prune_fraction")
        epochs: int = Field(2, ge=0, description="fine-tuning epochs (0: prune only)")
        lr: float = Field(1e-3, gt=0, description="fine-tuning Adam learning rate")
        batch_size: int = Field(64, ge=1, description="fine-tuning batch size")

    def fit(self, model, x_clean, y_clean, n_classes: int) -> FinePruning:
        frac = float(self.prune_fraction)
        net = copy.deepcopy(model)
        self.activity_ = channel_activity(net, x_clean)
        n_channels = len(self.activity_)
        k = round(frac * n_channels)
        order = np.argsort(self.activity_, kind="stable")   # least active first
        features, i = _activation_after_last_conv(net)
        device = next(net.parameters()).device
        gate = ChannelMask(torch.ones(n_channels)).to(device)
        features[i] = nn.Sequential(features[i], gate)
        if self.max_accuracy_drop is not None:
            k = self._largest_safe_prune(net, gate, order, k, x_clean, y_clean)
        self.pruned_ = np.sort(order[:k])
        self.keep_mask_ = np.ones(n_channels, dtype=bool)
        self.keep_mask_[self.pruned_] = False
        gate.keep.copy_(torch.as_tensor(self.keep_mask_).float().view(1, -1, 1, 1))
        if self.epochs > 0:
            net = finetune(net, x_clean, y_clean, epochs=self.epochs, lr=self.lr,
                           batch_size=self.batch_size, seed=self.seed, n_classes=n_classes,
                           device=self.device)
        self.model_ = net
        return self

    def _largest_safe_prune(self, net, gate, order, cap, x_clean, y_clean) -> int:
        """The most channels (in ``order``, at most ``cap``) whose pruning keeps the clean
        accuracy within ``max_accuracy_drop`` of the unpruned model's."""
        from trustlab.attacks.backdoor.evaluation import predict_labels

        y = np.asarray(y_clean)
        base = np.mean(predict_labels(net, x_clean) == y)
        k = 0
        for j in range(1, cap + 1):
            gate.keep.view(-1)[int(order[j - 1])] = 0.0
            if np.mean(predict_labels(net, x_clean) == y) < base - self.max_accuracy_drop:
                break
            k = j
        return k

    def defend(self, case: BackdoorCase) -> DefenseOutcome:
        self.fit(case.model, case.x_clean, case.y_clean, case.n_classes)
        return DefenseOutcome(metrics={"fp.pruned_channels": float(len(self.pruned_)),
                                       "fp.channels": float(len(self.keep_mask_))},
                              model=self.model_)


__all__ = ["ChannelMask", "FinePruning", "channel_activity"]
