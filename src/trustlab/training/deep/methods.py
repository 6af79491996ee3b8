"""In-processing training methods, one small class each on one base (DomainBed style).

A method owns the model and its optimizer. ``update((x, y, g))`` does one optimizer step
on a minibatch of inputs, labels and group ids and returns floats to log (``loss`` is the
objective that was back-propagated, ``ce`` the plain mean cross-entropy); ``predict(x)``
returns logits. The trainer knows nothing about any method: adding one is a class here
(with its ``name`` and its ``Params``, a subclass of :class:`Method.Params`, which declares
the optimizer's parameters every method shares) and a line in :data:`METHODS`.

The methods are written by hand: no maintained library implements this set of
losses on a plain PyTorch model.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn import functional as F

from trustlab import registry
from trustlab.errors import TrustlabError
from trustlab.registry import Configurable, ParamError, Registry

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Method(Configurable, nn.Module):
    """Base: plain ERM's optimizer and bookkeeping; subclasses override :meth:`objective`.

    ``hparams`` holds every declared parameter, optimizer ones included, under its YAML
    name (``hparams["lambda"]``); each is also an attribute (``self.eta``), except that
    ``self.optimizer`` is the torch optimizer built from ``hparams["optimizer"]``.
    """

    name: ClassVar[str] = "base"
    # Random-search distributions of the hyper-parameters (DomainBed / SubpopBench style),
    # as (kind, low, high) with kind "log" (log-uniform), "uniform", "int" or
    # ("choice", values); a subclass adds its own to the optimizer's. Read by
    # trustlab.training.deep.search.
    search_space: ClassVar[dict[str, tuple]] = {"lr": ("log", 1e-4, 1e-2),
                                                "weight_decay": ("log", 1e-6, 1e-2)}

    class Params(registry.Params):
        """The optimizer's parameters, shared by every method."""

        optimizer: Literal["adam", "sgd"] = Field("adam", description="optimizer")
        lr: float = Field(1e-3, gt=0.0, description="learning rate")
        weight_decay: float = Field(0.0, ge=0.0,
                                    description="L2 penalty applied by the optimizer")
        momentum: float = Field(0.9, ge=0.0, le=1.0, description="momentum (sgd only)")

    def __init__(self, model: nn.Module, n_classes: int, n_groups: int, **params):
        super().__init__()
        self._set_params(params)
        self.hparams: dict[str, Any] = self.params.to_dict()
        self.model = model
        self.n_classes = int(n_classes)
        self.n_groups = int(n_groups)
        # Training-set frequencies; the trainer fills them through prepare().
        self.register_buffer("class_counts", torch.ones(self.n_classes))
        self.register_buffer("group_counts", torch.ones(self.n_groups))
        self.optimizer = self.make_optimizer()

    def make_optimizer(self) -> torch.optim.Optimizer:
        hp = self.hparams
        lr, wd = hp["lr"], hp["weight_decay"]
        if hp["optimizer"] == "sgd":
            return torch.optim.SGD(self.parameters(), lr=lr, weight_decay=wd,
                                   momentum=hp["momentum"])
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

    def training_set(self, data, seed: int, batch_size: int):
        """The rows the loop trains on (a :class:`~trustlab.training.deep.data.SplitTensors`):
        ``data`` itself, except for methods that reshape their training set first (JTT
        repeats the rows a first model gets wrong). The trainer evaluates on ``data``."""
        return data

    def finish(self, data, seed: int) -> None:
        """Hook run once after the last epoch on the training rows ``data`` (embedding
        SMOTE refits the classifier head there); the base does nothing."""

    def bind_data(self, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, seed: int) -> None:
        """Hook for methods that draw their own rows from the training set (MinDiff's
        separate stream); the trainer calls it once, after :meth:`prepare`."""

    def update(self, batch: Batch, flooding: float | None = None) -> dict[str, float]:
        """One optimizer step on ``batch``; with ``flooding`` (a flood level b) the loss
        back-propagated is ``|L - b| + b`` of the method's whole objective L."""
        x, y, g = batch
        loss, logs = self.objective(x, y, g)
        if flooding is not None:
            logs = {**logs, "unflooded_loss": loss.item()}
            loss = flood(loss, flooding)
        self.step(loss)
        return {"loss": loss.item(), **logs}


def flood(loss: torch.Tensor, level: float) -> torch.Tensor:
    """Flooding (Ishida et al., 2020): ``|L - b| + b``. Equal to L above the flood level b;
    below it the gradient's sign flips, so training ascends back to b instead of driving
    the training loss to zero."""
    return (loss - level).abs() + level


class ERM(Method):
    """Empirical risk minimisation: the mean cross-entropy."""

    name: ClassVar[str] = "erm"


class Reweight(Method):
    """Cross-entropy weighted per sample by the inverse frequency of its class or group.

    Weights are scikit-learn's "balanced" ``n / (k * n_c)``; absent classes/groups get 0.
    """

    name: ClassVar[str] = "reweight"

    class Params(Method.Params):
        by: Literal["group", "class"] = Field("group", description="the strata weighted")

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
    """Group DRO (Sagawa et al., 2020): minimise an adversarially weighted sum of the
    group losses.

    The loss is the q-weighted group losses, where q is updated by exponentiated gradient
    ascent ``q_g <- q_g exp(eta * (L_g + C / sqrt(n_g)))`` on the groups present in the
    batch, then renormalised."""

    name: ClassVar[str] = "group_dro"
    search_space = {**Method.search_space, "eta": ("log", 1e-3, 1e-1)}

    class Params(Method.Params):
        eta: float = Field(0.01, ge=0.0, description="step size of the group weights q")
        adjustment: float = Field(0.0, ge=0.0, description="C of the generalisation "
                                                           "adjustment C / sqrt(n_g)")

    def __init__(self, model, n_classes, n_groups, **params):
        super().__init__(model, n_classes, n_groups, **params)
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
    """Spectral decoupling (Pezeshki et al., 2021, "Gradient Starvation"):
    CE + lambda/2 * mean_i ||z_i - gamma_{y_i}||^2 over the batch's logits z.

    Without ``gamma`` the logits are pulled toward 0 (the paper's plain SD); with it, each
    row's logits are pulled toward its class's target ``gamma`` (one number for every
    class, or one per class: the paper's "SD with gamma", which it tunes per class on
    CelebA)."""

    name: ClassVar[str] = "spectral_decoupling"
    search_space = {**Method.search_space, "lambda": ("log", 1e-3, 10.0)}

    class Params(Method.Params):
        # The authors' Colored-MNIST code (Gradient_Starvation, Figure_4_and_table_1/
        # cmnist.py) trains BCE + mean(s^2) on one logit s after annealing; with two
        # softmax logits at their smallest norm (z = -s/2, +s/2) that is lambda = 4 here.
        lambda_: float = Field(4.0, alias="lambda", ge=0.0, description="weight of the "
                                                                        "penalty (4: the "
                                                                        "paper's Colored-"
                                                                        "MNIST weight)")
        gamma: float | list[float] | None = Field(
            None, description="logit target per class (a number for all, or a list of "
                              "n_classes); null: 0")
        anneal_steps: int = Field(0, ge=0, description="updates of plain cross-entropy "
                                                      "before the penalty starts (the "
                                                      "authors' Colored-MNIST code: 450 of "
                                                      "2001 full-batch steps)")

    def __init__(self, model, n_classes, n_groups, **params):
        super().__init__(model, n_classes, n_groups, **params)
        gamma = self.hparams["gamma"]
        if isinstance(gamma, list) and len(gamma) != self.n_classes:
            raise ParamError("gamma", f"needs one value per class ({self.n_classes}), got "
                                      f"{len(gamma)}")
        values = [0.0] * self.n_classes if gamma is None else (
            gamma if isinstance(gamma, list) else [gamma] * self.n_classes)
        self.register_buffer("gammas", torch.tensor(values, dtype=torch.float32))
        self._updates = 0  # training updates so far (objective calls), for anneal_steps

    def penalty(self, logits: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        lam = float(self.hparams["lambda"])
        target = self.gammas[y][:, None] if y is not None else 0.0
        return lam / 2.0 * ((logits - target) ** 2).sum(dim=1).mean()

    def objective(self, x, y, g):
        logits = self.predict(x)
        ce = F.cross_entropy(logits, y)
        penalty = self.penalty(logits, y)
        # Like the authors' code, the penalty waits for `anneal_steps` updates (the
        # network first learns from the data alone).
        active = self._updates >= int(self.hparams["anneal_steps"])
        self._updates += 1
        loss = ce + penalty if active else ce
        return loss, {"ce": ce.item(), "penalty": penalty.item()}


def mmd(a: torch.Tensor, b: torch.Tensor, kernel: str, kernel_length: float) -> torch.Tensor:
    """Squared MMD (biased V-statistic) between samples ``a (n, d)`` and ``b (m, d)``:
    ``mean k(a, a') + mean k(b, b') - 2 mean k(a, b)``, as TensorFlow Model Remediation's
    ``MMDLoss`` computes it (not its square root, whose gradient blows up near 0).

    Kernels as TF-MR's: Gaussian ``exp(-||x - y||^2 / l^2)`` and Laplacian
    ``exp(-||x - y|| / l)`` with ``l = kernel_length``.
    """

    def k(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        sq = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        if kernel == "gaussian":
            return torch.exp(-sq / kernel_length ** 2)
        # sqrt has an infinite derivative at 0 (every point against itself); the clamp
        # passes no gradient there and changes the value by at most 1e-15.
        return torch.exp(-sq.clamp_min(1e-30).sqrt() / kernel_length)

    return k(a, a).mean() + k(b, b).mean() - 2.0 * k(a, b).mean()


class MinDiff(Method):
    """MinDiff (Prost et al., 2019) as TensorFlow Model Remediation trains it:
    cross-entropy on the training batch plus ``weight`` x the MMD between the predicted
    scores of group ``group_a`` and group ``group_b``.

    The scores are the positive class's probability for a binary task (TF-MR's sigmoid
    output) and the class-probability vector otherwise. With ``only_label`` (e.g. 0: the
    negatives, to equalise false-positive rates) only rows of that true label are compared.

    ``stream: separate`` (the default, as TF-MR's ``pack_min_diff_data``): every step
    also draws ``batch_size`` rows of each group (of ``only_label``) from the whole
    training set, so each MinDiff batch always holds both groups, whatever the training
    batch holds. ``stream: in_batch`` compares the rows of the training batch itself
    (zero penalty when a group is absent from it)."""

    name: ClassVar[str] = "mindiff"
    search_space = {**Method.search_space, "weight": ("log", 0.1, 10.0)}

    class Params(Method.Params):
        weight: float = Field(1.0, ge=0.0, description="weight of the MMD penalty")
        kernel: Literal["gaussian", "laplacian"] = Field("gaussian", description="MMD kernel")
        kernel_length: float = Field(0.1, gt=0.0, description="kernel length scale")
        group_a: int = Field(0, ge=0, description="group id of the first group compared")
        group_b: int = Field(1, ge=0, description="group id of the second group compared")
        only_label: int | None = Field(None, description="compare only examples of this "
                                                         "true label (null: all)")
        stream: Literal["separate", "in_batch"] = Field(
            "separate", description="MinDiff rows drawn per step from the whole training "
                                    "set (separate) or taken from the training batch")
        batch_size: int | None = Field(None, ge=1, description="rows of each group in a "
                                                               "separate-stream MinDiff batch "
                                                               "(null: the training batch's "
                                                               "size)")

        @model_validator(mode="after")
        def _two_groups(self):
            if self.group_a == self.group_b:
                raise ParamError("group_b", "must differ from group_a")
            return self

    def __init__(self, model, n_classes, n_groups, **params):
        super().__init__(model, n_classes, n_groups, **params)
        for key in ("group_a", "group_b"):  # the group ids exist only in the data
            if not self.hparams[key] < self.n_groups:
                raise TrustlabError(f"mindiff {key} must be a group id in 0..{self.n_groups - 1},"
                                    f" got {self.hparams[key]!r}")
        self._pools: tuple[torch.Tensor, torch.Tensor] | None = None

    def _selected(self, y: torch.Tensor, g: torch.Tensor, group: int) -> torch.Tensor:
        keep = g == group
        if self.hparams["only_label"] is not None:
            keep &= y == int(self.hparams["only_label"])
        return keep

    def bind_data(self, x, y, g, seed):
        if self.hparams["stream"] != "separate":
            return
        pools = []
        for key in ("group_a", "group_b"):
            rows = torch.nonzero(self._selected(y, g, self.hparams[key])).flatten()
            if len(rows) == 0:
                label = self.hparams["only_label"]
                raise TrustlabError(f"mindiff: no training rows of group {self.hparams[key]}"
                                    + (f" with label {label}" if label is not None else "")
                                    + " to compare")
            pools.append(rows)
        self._x = x
        self._pools = (pools[0], pools[1])
        # Its own generator: the MinDiff draws leave the loader's shuffling untouched.
        self._generator = torch.Generator().manual_seed(int(seed) + 7919)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(logits, dim=1)
        return probs[:, 1:] if self.n_classes == 2 else probs

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` rows of each group's pool, uniformly with replacement."""
        assert self._pools is not None, "bind_data() first"
        return tuple(pool[torch.randint(len(pool), (n,), generator=self._generator)]
                     for pool in self._pools)

    def penalty(self, logits: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The MMD on the training batch's own rows (the ``in_batch`` stream)."""
        s = self.scores(logits)
        a = s[self._selected(y, g, self.hparams["group_a"])]
        b = s[self._selected(y, g, self.hparams["group_b"])]
        if len(a) == 0 or len(b) == 0:  # one group absent from this batch: nothing to match
            return logits.sum() * 0.0
        return mmd(a, b, self.hparams["kernel"], self.kernel_length)

    def separate_penalty(self, n: int, device: torch.device) -> torch.Tensor:
        """The MMD on a freshly drawn MinDiff batch of ``n`` rows per group."""
        rows_a, rows_b = self.draw(n)
        s = self.scores(self.predict(self._x[torch.cat([rows_a, rows_b])].to(device)))
        return mmd(s[:n], s[n:], self.hparams["kernel"], self.kernel_length)

    def objective(self, x, y, g):
        logits = self.predict(x)
        ce = F.cross_entropy(logits, y)
        if self.hparams["stream"] == "separate":
            if self._pools is None:  # called outside train(): bind to this batch
                self.bind_data(x.detach().cpu(), y.cpu(), g.cpu(), 0)
            penalty = self.separate_penalty(self.hparams["batch_size"] or len(y), x.device)
        else:
            penalty = self.penalty(logits, y, g)
        return ce + self.weight * penalty, {"ce": ce.item(), "mmd": penalty.item()}


class Flooding(Method):
    """Flooding (Ishida et al., 2020): |L - b| + b keeps the training loss near level b.
    The same as method ``erm`` with ``training.flooding: b``; that option floods any
    method's objective (MinDiff's included)."""

    name: ClassVar[str] = "flooding"
    search_space = {**Method.search_space, "b": ("uniform", 0.0, 0.5)}

    class Params(Method.Params):
        b: float = Field(0.05, ge=0.0, description="flood level")

    def objective(self, x, y, g):
        ce = F.cross_entropy(self.predict(x), y)
        return flood(ce, self.b), {"ce": ce.item()}

    def update(self, batch, flooding=None):
        if flooding is not None:  # flooding twice would hide which level applies
            raise TrustlabError("method flooding already floods the loss; use method erm "
                                "(or any other) with training.flooding instead")
        return super().update(batch)


class HardExampleMining(Method):
    """Online hard example mining: back-propagate only each batch's highest losses.

    Forward the whole batch (N), back-propagate the mean loss of only the
    B = ceil(keep_fraction * N) samples with the highest loss."""

    name: ClassVar[str] = "hard_example_mining"
    search_space = {**Method.search_space, "keep_fraction": ("uniform", 0.1, 0.9)}

    class Params(Method.Params):
        keep_fraction: float = Field(0.5, gt=0.0, le=1.0,
                                     description="share of each batch back-propagated")

    def objective(self, x, y, g):
        keep = self.keep_fraction
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
    """Adversarial training: clean and FGSM/PGD adversarial cross-entropy, mixed.

    Loss = ``(1 - w) * CE(clean) + w * CE(adversarial)`` with examples built against the
    current model (``w = adversarial_weight``; 1 is Madry's)."""

    name: ClassVar[str] = "adversarial_training"
    search_space = {**Method.search_space, "epsilon": ("uniform", 0.01, 0.3)}

    class Params(Method.Params):
        attack: Literal["fgsm", "pgd"] = Field("fgsm", description="how examples are built")
        epsilon: float = Field(0.1, ge=0.0, description="L-inf radius of the perturbation")
        steps: int = Field(1, ge=1, description="PGD steps")
        step_size: float | None = Field(None, gt=0.0, description="PGD step (null: 2.5 * "
                                                                  "epsilon / steps)")
        adversarial_weight: float = Field(0.5, ge=0.0, le=1.0,
                                          description="share of the adversarial loss")
        clip_min: float | None = Field(0.0, description="lowest valid input (null: no clip)")
        clip_max: float | None = Field(1.0, description="highest valid input (null: no clip)")

    def __init__(self, model, n_classes, n_groups, **params):
        super().__init__(model, n_classes, n_groups, **params)
        hp = self.hparams
        # Common default: 2.5 * epsilon / steps lets PGD reach the ball's surface.
        if hp["step_size"] is None:
            self.step_size = 2.5 * self.epsilon / hp["steps"]
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
        loss = (1 - self.adversarial_weight) * clean + self.adversarial_weight * adv
        return loss, {"ce": clean.item(), "adversarial_ce": adv.item()}


class AdversarialSampling(AdversarialTraining):
    """Adversarial sampling of the minority class (seed 000's "adversarial sampling as a
    defense"): every batch's rows of the rarest classes are joined by ``copies`` FGSM/PGD
    versions of themselves (built against the current model, true labels kept), so the
    minority is oversampled with perturbed rather than repeated examples.

    The minority classes are those with fewer than ``minority_share`` x the median class
    count in the training set (at least the rarest one). The loss is the mean
    cross-entropy over the batch and its adversarial copies."""

    name: ClassVar[str] = "adversarial_sampling"

    class Params(AdversarialTraining.Params):
        copies: int = Field(3, ge=1, description="adversarial copies per minority row")
        minority_share: float = Field(0.5, gt=0.0, le=1.0,
                                      description="classes under this share of the median "
                                                  "class count are the minority")

    def minority_classes(self) -> torch.Tensor:
        counts = self.class_counts
        present = counts > 0
        cut = float(self.minority_share) * counts[present].median()
        rare = present & (counts < cut)
        if not rare.any():  # balanced data: the rarest class still gets the copies
            rare = counts == counts[present].min()
        return torch.nonzero(rare).flatten()

    def augment(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch plus ``copies`` adversarial versions of its minority rows."""
        rows = torch.isin(y, self.minority_classes().to(y.device))
        if not rows.any():
            return x, y
        xm, ym = x[rows].repeat((int(self.copies),) + (1,) * (x.dim() - 1)), \
            y[rows].repeat(int(self.copies))
        return torch.cat([x, self.perturb(xm, ym)]), torch.cat([y, ym])

    def objective(self, x, y, g):
        xa, ya = self.augment(x, y)
        loss = F.cross_entropy(self.predict(xa), ya)
        return loss, {"ce": loss.item(), "adversarial_rows": float(len(ya) - len(y))}


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
    """Domain-adversarial training (Ganin et al., 2016) against the group.

    A small discriminator predicts the group id from the model's features through a
    gradient reversal layer, so the features are pushed to carry no group information.
    Loss = CE(label) + CE(group); the reversal scales the features' share by ``lambda``."""

    name: ClassVar[str] = "dann"
    search_space = {**Method.search_space, "lambda": ("log", 0.01, 10.0)}

    class Params(Method.Params):
        lambda_: float = Field(1.0, alias="lambda",
                               description="gradient reversal scale of the group loss")
        discriminator_width: int = Field(64, ge=1, description="hidden units of the group "
                                                               "discriminator")

    def __init__(self, model, n_classes, n_groups, **params):
        super().__init__(model, n_classes, n_groups, **params)
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


class JTT(Method):
    """Just Train Twice (Liu et al., 2021), a group-agnostic baseline: train a first model
    with ERM for ``id_epochs`` (T), take the training rows it gets wrong (the error set),
    then train the final model from its initial weights on the training set with every
    error-set row repeated ``upweight`` (lambda_up) times in all, as the paper upsamples it.

    After training: ``identification_model_`` (the first model) and ``error_rows_`` (the
    indices of the error set in the training split)."""

    name: ClassVar[str] = "jtt"
    search_space = {**Method.search_space, "id_epochs": ("int", 1, 3),
                    "upweight": ("choice", [5, 20, 50, 100])}

    class Params(Method.Params):
        id_epochs: int = Field(1, ge=1, description="epochs of the first (ERM) model, T")
        upweight: int = Field(20, ge=1, description="lambda_up: how many times each "
                                                    "error-set row appears")

    def training_set(self, data, seed, batch_size):
        import copy

        from trustlab.training.deep.trainer import fit_erm, predict

        hp = self.hparams
        first = fit_erm(copy.deepcopy(self.model),  # the final model's initial weights
                        data, epochs=self.id_epochs, batch_size=batch_size, seed=seed,
                        hparams={k: hp[k] for k in Method.Params.model_fields},
                        device=next(self.model.parameters()).device)
        pred = torch.as_tensor(predict(first, data.x))
        self.identification_model_ = first.model.eval()
        self.error_rows_ = torch.nonzero(pred != data.y).flatten()
        extra = self.error_rows_.repeat(int(self.upweight) - 1)
        return data.subset(torch.cat([torch.arange(len(data)), extra]).numpy())


class EmbeddingSMOTE(Method):
    """SMOTE in embedding space (the "SMOTE only works on embeddings" of the interclass
    bias study): train the network with ERM, embed the training rows with
    ``model.features``, oversample every class (``by: class``) or every label x group cell
    (``by: group``) to the size of the largest with imbalanced-learn's ``SMOTE``, and
    refit the classifier head (one linear layer) on the balanced embeddings for
    ``head_epochs`` (Adam, the method's ``lr``). The feature extractor is not changed.

    After training: ``resampled_`` (the balanced embeddings and their labels) and
    ``strata_counts_`` (rows per stratum before SMOTE)."""

    name: ClassVar[str] = "embedding_smote"
    search_space = {**Method.search_space, "k_neighbors": ("int", 1, 10)}

    class Params(Method.Params):
        by: Literal["class", "group"] = Field("class", description="the strata SMOTE "
                                                                   "balances: classes, or "
                                                                   "label x group cells")
        k_neighbors: int = Field(5, ge=1, description="SMOTE's neighbours (fewer when a "
                                                      "stratum is smaller)")
        head_epochs: int = Field(20, ge=1, description="epochs refitting the classifier "
                                                       "head on the balanced embeddings")
        head_batch_size: int = Field(128, ge=1, description="batch size of that refit")

    def finish(self, data, seed):
        import numpy as np
        from imblearn.over_sampling import SMOTE

        from trustlab.training.deep.data import SplitTensors
        from trustlab.training.deep.trainer import fit_erm

        if not hasattr(self.model, "features") or not hasattr(self.model, "classifier"):
            raise TrustlabError("embedding_smote needs a model with .features and "
                                ".classifier (every trustlab network has them)")
        device = next(self.model.parameters()).device
        self.model.eval()
        with torch.no_grad():
            emb = torch.cat([self.model.features(data.x[i:i + 1024].to(device)).flatten(1)
                             .cpu() for i in range(0, len(data), 1024)]).numpy()
        y = data.y.numpy()
        strata = y if self.hparams["by"] == "class" else y * self.n_groups + data.g.numpy()
        counts = np.bincount(strata)
        self.strata_counts_ = {int(k): int(c) for k, c in enumerate(counts) if c > 0}
        smallest = min(self.strata_counts_.values())
        if len(self.strata_counts_) < 2 or smallest < 2:  # nothing SMOTE can interpolate
            x_res, s_res = emb, strata
        else:
            k = min(int(self.k_neighbors), smallest - 1)
            x_res, s_res = SMOTE(k_neighbors=k, random_state=int(seed)).fit_resample(
                emb, strata)
        y_res = s_res if self.hparams["by"] == "class" else s_res // self.n_groups
        self.resampled_ = (x_res, y_res)
        embedded = SplitTensors(torch.as_tensor(x_res, dtype=torch.float32),
                                torch.as_tensor(y_res, dtype=torch.long),
                                torch.zeros(len(y_res), dtype=torch.long), ["all"],
                                self.n_classes)
        fit_erm(self.model.classifier, embedded, epochs=self.head_epochs,
                batch_size=self.head_batch_size, seed=seed,
                hparams={"lr": self.hparams["lr"]}, device=device)
        self.model.train()


METHODS = Registry("methods", "training method", {
    "erm": "trustlab.training.deep.methods:ERM",
    "reweight": "trustlab.training.deep.methods:Reweight",
    "group_dro": "trustlab.training.deep.methods:GroupDRO",
    "spectral_decoupling": "trustlab.training.deep.methods:SpectralDecoupling",
    "mindiff": "trustlab.training.deep.methods:MinDiff",
    "flooding": "trustlab.training.deep.methods:Flooding",
    "hard_example_mining": "trustlab.training.deep.methods:HardExampleMining",
    "adversarial_training": "trustlab.training.deep.methods:AdversarialTraining",
    "adversarial_sampling": "trustlab.training.deep.methods:AdversarialSampling",
    "dann": "trustlab.training.deep.methods:DANN",
    "jtt": "trustlab.training.deep.methods:JTT",
    "embedding_smote": "trustlab.training.deep.methods:EmbeddingSMOTE",
    "occam": "trustlab.training.deep.occam:OccamNets",
})


def make_method(name: str, model: nn.Module, n_classes: int, n_groups: int,
                hparams: dict[str, Any] | None = None) -> Method:
    """Wrap ``model`` in the registered method ``name`` with ``hparams`` (the method's and
    the optimizer's parameters; defaults for the others). An unknown name or a bad value
    raises ``TrustlabError`` (a bad value a :class:`~trustlab.registry.ParamError`)."""
    return METHODS.get(name)(model, n_classes, n_groups, **(hparams or {}))
