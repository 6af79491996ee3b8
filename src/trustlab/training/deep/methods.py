"""In-processing training methods (S5), one small class each on one base (DomainBed style).

A method owns the model and its optimizer. ``update((x, y, g))`` does one optimizer step
on a minibatch of inputs, labels and group ids and returns floats to log (``loss`` is the
objective that was back-propagated, ``ce`` the plain mean cross-entropy); ``predict(x)``
returns logits. The trainer knows nothing about any method: adding one is a class here
and a line in :data:`METHODS` and :data:`trustlab.training.deep.hparams.HPARAMS`.

The methods are written by hand: no maintained library implements this set of
losses on a plain PyTorch model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trustlab.errors import TrustlabError
from trustlab.training.deep.hparams import resolve_hparams

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _check_range(name: str, value: Any, low: float, high: float = math.inf, *,
                 low_open: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TrustlabError(f"hyper-parameter {name!r} must be a number, got {value!r}") from None
    if v < low or v > high or (low_open and v == low):
        bracket = "(" if low_open else "["
        raise TrustlabError(f"hyper-parameter {name!r} must be in {bracket}{low}, {high}], "
                            f"got {value!r}")
    return v


class Method(nn.Module):
    """Base: plain ERM's optimizer and bookkeeping; subclasses override :meth:`update`."""

    name = "base"

    def __init__(self, model: nn.Module, n_classes: int, n_groups: int,
                 hparams: dict[str, Any] | None = None):
        super().__init__()
        self.model = model
        self.n_classes = int(n_classes)
        self.n_groups = int(n_groups)
        self.hparams = resolve_hparams(self.name, hparams)
        # Training-set frequencies; the trainer fills them through prepare().
        self.register_buffer("class_counts", torch.ones(self.n_classes))
        self.register_buffer("group_counts", torch.ones(self.n_groups))
        self.optimizer = self.make_optimizer()

    def make_optimizer(self) -> torch.optim.Optimizer:
        hp = self.hparams
        lr = _check_range("lr", hp["lr"], 0.0, low_open=True)
        wd = _check_range("weight_decay", hp["weight_decay"], 0.0)
        if hp["optimizer"] == "sgd":
            return torch.optim.SGD(self.parameters(), lr=lr, weight_decay=wd,
                                   momentum=_check_range("momentum", hp["momentum"], 0.0, 1.0))
        # Adam's weight_decay is the classic L2 term added to the gradient.
        return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=wd)

    def prepare(self, y: torch.Tensor, g: torch.Tensor) -> None:
        """Record the training set's class and group counts (before the first update)."""
        dev = self.class_counts.device
        self.class_counts.copy_(torch.bincount(y.cpu(), minlength=self.n_classes).float().to(dev))
        self.group_counts.copy_(torch.bincount(g.cpu(), minlength=self.n_groups).float().to(dev))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def objective(self, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise on one batch and extra values to log."""
        logits = self.predict(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"ce": loss.item()}

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def update(self, batch: Batch) -> dict[str, float]:
        x, y, g = batch
        loss, logs = self.objective(x, y, g)
        self.step(loss)
        return {"loss": loss.item(), **logs}


class ERM(Method):
    name = "erm"


class Reweight(Method):
    """Cross-entropy weighted per sample by the inverse frequency of its class or group.

    Weights are scikit-learn's "balanced" ``n / (k * n_c)``; absent classes/groups get 0.
    """

    name = "reweight"

    def sample_weights(self, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        counts, ids = ((self.class_counts, y) if self.hparams["by"] == "class"
                       else (self.group_counts, g))
        present = counts > 0
        weights = torch.where(present, counts.sum() / (present.sum() * counts.clamp(min=1)),
                              torch.zeros_like(counts))
        return weights[ids]

    def objective(self, x, y, g):
        logits = self.predict(x)
        losses = F.cross_entropy(logits, y, reduction="none")
        loss = (self.sample_weights(y, g) * losses).mean()
        return loss, {"ce": losses.mean().item()}


class GroupDRO(Method):
    """Group DRO (Sagawa et al., 2020): minimise the q-weighted group losses, where q is
    updated by exponentiated gradient ascent ``q_g <- q_g exp(eta * (L_g + C / sqrt(n_g)))``
    on the groups present in the batch, then renormalised."""

    name = "group_dro"

    def __init__(self, model, n_classes, n_groups, hparams=None):
        super().__init__(model, n_classes, n_groups, hparams)
        self.eta = _check_range("eta", self.hparams["eta"], 0.0)
        self.adjustment = _check_range("adjustment", self.hparams["adjustment"], 0.0)
        self.register_buffer("q", torch.full((self.n_groups,), 1.0 / self.n_groups))

    def group_losses(self, losses: torch.Tensor, g: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        onehot = F.one_hot(g, self.n_groups).to(losses.dtype)  # (N, G)
        n_in_batch = onehot.sum(0)
        means = (onehot * losses[:, None]).sum(0) / n_in_batch.clamp(min=1)
        return means, n_in_batch > 0

    def objective(self, x, y, g):
        losses = F.cross_entropy(self.predict(x), y, reduction="none")
        group_loss, present = self.group_losses(losses, g)
        adjusted = group_loss.detach() + self.adjustment / self.group_counts.clamp(min=1).sqrt()
        with torch.no_grad():
            self.q.mul_(torch.where(present, torch.exp(self.eta * adjusted),
                                    torch.ones_like(adjusted)))
            self.q.div_(self.q.sum())
        loss = (self.q * group_loss).sum()
        return loss, {"ce": losses.mean().item(),
                      "worst_batch_group_loss": group_loss[present].max().item()}


class SpectralDecoupling(Method):
    """Spectral decoupling (Pezeshki et al., 2021): CE + lambda/2 * mean ||logits||^2."""

    name = "spectral_decoupling"

    def penalty(self, logits: torch.Tensor) -> torch.Tensor:
        lam = float(self.hparams["lambda"])
        return lam / 2.0 * (logits ** 2).sum(dim=1).mean()

    def objective(self, x, y, g):
        logits = self.predict(x)
        ce = F.cross_entropy(logits, y)
        penalty = self.penalty(logits)
        return ce + penalty, {"ce": ce.item(), "penalty": penalty.item()}


def mmd(a: torch.Tensor, b: torch.Tensor, kernel: str = "gaussian",
        kernel_length: float = 0.1) -> torch.Tensor:
    """Squared MMD (biased V-statistic) between samples ``a (n, d)`` and ``b (m, d)``.

    Kernels as in TensorFlow Model Remediation's MinDiff: Gaussian
    ``exp(-||x - y||^2 / l)`` and Laplacian ``exp(-||x - y|| / l)``.
    """

    def k(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        sq = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        if kernel == "gaussian":
            return torch.exp(-sq / kernel_length)
        # sqrt has an infinite derivative at 0 (every point against itself); the clamp
        # passes no gradient there and changes the value by at most 1e-15.
        return torch.exp(-sq.clamp_min(1e-30).sqrt() / kernel_length)

    return k(a, a).mean() + k(b, b).mean() - 2.0 * k(a, b).mean()


class MinDiff(Method):
    """MinDiff (Prost et al., 2019): CE + weight * MMD between the predicted class
    probabilities of group ``group_a`` and group ``group_b`` (optionally only on examples
    whose true label is ``only_label``, e.g. 0 to equalise false-positive rates)."""

    name = "mindiff"

    def __init__(self, model, n_classes, n_groups, hparams=None):
        super().__init__(model, n_classes, n_groups, hparams)
        hp = self.hparams
        self.weight = _check_range("weight", hp["weight"], 0.0)
        self.kernel_length = _check_range("kernel_length", hp["kernel_length"], 0.0,
                                          low_open=True)
        for key in ("group_a", "group_b"):
            if not isinstance(hp[key], int) or not 0 <= hp[key] < self.n_groups:
                raise TrustlabError(f"mindiff {key} must be a group id in 0..{self.n_groups - 1},"
                                    f" got {hp[key]!r}")
        if hp["group_a"] == hp["group_b"]:
            raise TrustlabError("mindiff group_a and group_b must differ")

    def penalty(self, logits: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(logits, dim=1)
        keep = torch.ones_like(y, dtype=torch.bool)
        if self.hparams["only_label"] is not None:
            keep = y == int(self.hparams["only_label"])
        a = probs[keep & (g == self.hparams["group_a"])]
        b = probs[keep & (g == self.hparams["group_b"])]
        if len(a) == 0 or len(b) == 0:  # one group absent from this batch: nothing to match
            return logits.sum() * 0.0
        return mmd(a, b, self.hparams["kernel"], self.kernel_length)

    def objective(self, x, y, g):
        logits = self.predict(x)
        ce = F.cross_entropy(logits, y)
        penalty = self.penalty(logits, y, g)
        return ce + self.weight * penalty, {"ce": ce.item(), "mmd": penalty.item()}


class Flooding(Method):
    """Flooding (Ishida et al., 2020): |L - b| + b keeps the training loss near level b."""

    name = "flooding"

    def objective(self, x, y, g):
        b = _check_range("b", self.hparams["b"], 0.0)
        ce = F.cross_entropy(self.predict(x), y)
        return (ce - b).abs() + b, {"ce": ce.item()}


class HardExampleMining(Method):
    """Online hard example mining: forward the whole batch (N), back-propagate the mean
    loss of only the B = ceil(keep_fraction * N) samples with the highest loss."""

    name = "hard_example_mining"

    def objective(self, x, y, g):
        keep = _check_range("keep_fraction", self.hparams["keep_fraction"], 0.0, 1.0,
                            low_open=True)
        losses = F.cross_entropy(self.predict(x), y, reduction="none")
        k = max(1, math.ceil(keep * len(losses)))
        top, _ = torch.topk(losses, k)
        return top.mean(), {"ce": losses.mean().item()}


def fgsm_perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float,
                 clip: tuple[float, float] | None = (0.0, 1.0)) -> torch.Tensor:
    """FGSM (Goodfellow et al., 2015): ``x + epsilon * sign(grad_x CE)``, clipped to the
    valid pixel range. The model's parameter gradients are left untouched."""
    x_adv = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x_adv), y)
    (grad,) = torch.autograd.grad(loss, x_adv)
    out = x.detach() + epsilon * grad.sign()
    return out.clamp(*clip).detach() if clip is not None else out.detach()


def pgd_perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float,
                steps: int, step_size: float, clip: tuple[float, float] | None = (0.0, 1.0),
                generator: torch.Generator | None = None) -> torch.Tensor:
    """L-inf PGD (Madry et al., 2018): random start in the epsilon ball, ``steps`` signed
    gradient steps of ``step_size``, each projected back onto the ball (and pixel range)."""
    x0 = x.detach()
    noise = torch.rand(x0.shape, generator=generator, device="cpu").to(x0.device)
    x_adv = x0 + (2 * noise - 1) * epsilon
    for _ in range(steps):
        if clip is not None:
            x_adv = x_adv.clamp(*clip)
        x_adv = x_adv.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + step_size * grad.sign()
        x_adv = x0 + (x_adv - x0).clamp(-epsilon, epsilon)
    return (x_adv.clamp(*clip) if clip is not None else x_adv).detach()


class AdversarialTraining(Method):
    """Adversarial training: ``(1 - w) * CE(clean) + w * CE(adversarial)`` with FGSM or PGD
    examples built against the current model (``w = adversarial_weight``; 1 is Madry's)."""

    name = "adversarial_training"

    def __init__(self, model, n_classes, n_groups, hparams=None):
        super().__init__(model, n_classes, n_groups, hparams)
        hp = self.hparams
        self.epsilon = _check_range("epsilon", hp["epsilon"], 0.0)
        self.adv_weight = _check_range("adversarial_weight", hp["adversarial_weight"], 0.0, 1.0)
        steps = hp["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise TrustlabError(f"hyper-parameter 'steps' must be a positive integer, "
                                f"got {steps!r}")
        # Common default: 2.5 * epsilon / steps lets PGD reach the ball's surface.
        self.step_size = (2.5 * self.epsilon / steps if hp["step_size"] is None
                          else _check_range("step_size", hp["step_size"], 0.0, low_open=True))
        self.clip = (None if hp["clip_min"] is None or hp["clip_max"] is None
                     else (float(hp["clip_min"]), float(hp["clip_max"])))

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.hparams["attack"] == "fgsm":
            return fgsm_perturb(self.model, x, y, self.epsilon, self.clip)
        return pgd_perturb(self.model, x, y, self.epsilon, int(self.hparams["steps"]),
                           self.step_size, self.clip)

    def objective(self, x, y, g):
        x_adv = self.perturb(x, y)
        clean = F.cross_entropy(self.predict(x), y)
        adv = F.cross_entropy(self.predict(x_adv), y)
        loss = (1 - self.adv_weight) * clean + self.adv_weight * adv
        return loss, {"ce": clean.item(), "adversarial_ce": adv.item()}


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def gradient_reversal(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-scale`` backward (Ganin et al.)."""
    return _GradientReversal.apply(x, float(scale))


class DANN(Method):
    """Domain-adversarial training (Ganin et al., 2016) against the group: a small
    discriminator predicts the group id from the model's features through a gradient
    reversal layer, so the features are pushed to carry no group information.
    Loss = CE(label) + CE(group); the reversal scales the features' share by ``lambda``."""

    name = "dann"

    def __init__(self, model, n_classes, n_groups, hparams=None):
        super().__init__(model, n_classes, n_groups, hparams)
        if not hasattr(model, "features") or not hasattr(model, "classifier"):
            raise TrustlabError("dann needs a model with .features and .classifier "
                                "(every trustlab deep model has them)")
        width = self.hparams["discriminator_width"]
        self.discriminator = nn.Sequential(
            nn.Linear(model.feature_dim, width), nn.ReLU(), nn.Linear(width, self.n_groups))
        self.optimizer = self.make_optimizer()  # again, now that the discriminator exists

    def objective(self, x, y, g):
        feats = self.model.features(x)
        ce = F.cross_entropy(self.model.classifier(feats), y)
        group_logits = self.discriminator(gradient_reversal(feats, self.hparams["lambda"]))
        disc = F.cross_entropy(group_logits, g)
        return ce + disc, {"ce": ce.item(), "discriminator_ce": disc.item()}


METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (ERM, Reweight, GroupDRO, SpectralDecoupling, MinDiff, Flooding,
                              HardExampleMining, AdversarialTraining, DANN)
}


def make_method(name: str, model: nn.Module, n_classes: int, n_groups: int,
                hparams: dict[str, Any] | None = None) -> Method:
    if name not in METHODS:
        raise TrustlabError(f"unknown training method {name!r}; choose one of: "
                            f"{', '.join(sorted(METHODS))}")
    return METHODS[name](model, n_classes, n_groups, hparams)
