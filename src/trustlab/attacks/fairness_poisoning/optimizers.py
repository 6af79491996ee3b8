"""The outer optimizers of the poisoning attack (the ``optimizers`` registry).

An optimizer is a class with a ``name``, a ``Params`` declaration of its own parameters
and one method, :meth:`Optimizer.search`, that spends exactly ``n_trials`` victim
evaluations of a :class:`~trustlab.attacks.fairness_poisoning.PoisonObjective` on
candidates from a :class:`~trustlab.attacks.fairness_poisoning.PoisonSpace` and returns
the best one with the whole trace. Adding an optimizer is one subclass plus one line in
:data:`OPTIMIZERS`::

    class Annealing(Optimizer):
        \"\"\"Simulated annealing over the poison space.\"\"\"

        name: ClassVar[str] = "annealing"

        class Params(registry.Params):
            temperature: float = Field(1.0, gt=0, description="initial temperature")

        def search(self, objective, space, *, n_trials, seed, threads=1):
            ...
            return AttackResult.of(candidates, trace)

Built in: ``bayesian`` (optuna's TPE sampler), ``random`` (optuna's random sampler over
the same space, same budget and evaluation) and ``gradient`` (projected Adam on a smooth
surrogate of the gap, differentiated through unrolled gradient steps of a torch logistic
regression; every iterate is scored with the real victim, so all three report the same
objective).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from trustlab import registry
from trustlab.errors import TrustlabError
from trustlab.registry import Configurable, Registry

if TYPE_CHECKING:
    from trustlab.attacks.fairness_poisoning.objective import Evaluation, PoisonObjective
    from trustlab.attacks.fairness_poisoning.space import PoisonSet, PoisonSpace


@dataclass
class AttackResult:
    best: PoisonSet
    best_evaluation: Evaluation
    trace: list[Evaluation]

    @property
    def n_evaluations(self) -> int:
        return len(self.trace)

    @classmethod
    def of(cls, candidates: list[PoisonSet], trace: list[Evaluation]) -> "AttackResult":
        """The best of the evaluated ``candidates`` (the first of ties, like optuna)."""
        best = int(np.argmin([e.objective for e in trace]))
        return cls(best=candidates[best], best_evaluation=trace[best], trace=trace)


class Optimizer(Configurable):
    """Base of the poisoning attack's outer optimizers (see the module docstring)."""

    name: ClassVar[str] = ""

    class Params(registry.Params):
        pass

    def __init__(self, **params: Any):
        self._set_params(params)

    def search(self, objective: PoisonObjective, space: PoisonSpace, *, n_trials: int,
               seed: int, threads: int = 1) -> AttackResult:
        """The best of ``n_trials`` candidates, each scored by ``objective.evaluate``.

        ``seed`` fixes the search; ``threads`` is how many cores the search may use to
        evaluate candidates (the built-in optimizers evaluate one at a time).
        """
        raise NotImplementedError

    @staticmethod
    def _check_budget(n_trials: int) -> None:
        if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) \
                or n_trials < 1:
            raise TrustlabError(f"n_trials must be an integer >= 1, got {n_trials!r}")


class _OptunaSearch(Optimizer):
    """An optuna study over the poison space; subclasses choose the sampler.

    Candidates are asked for in batches of ``batch_size`` (optuna's ask/tell), evaluated
    concurrently on up to ``threads`` threads (a victim refit spends its time in
    scikit-learn's tree builders and numpy, which release the GIL) and told back in order.
    The batch size, not the thread count, fixes which candidates are tried, so the result
    is the same on 1 or 8 cores."""

    class Params(registry.Params):
        batch_size: int = Field(4, ge=1, description="candidates asked for before the "
                                                     "sampler sees their scores (evaluated "
                                                     "in parallel on the trial's cores)")

    def sampler(self, seed: int):
        raise NotImplementedError

    def search(self, objective, space, *, n_trials, seed, threads=1) -> AttackResult:
        import optuna

        self._check_budget(n_trials)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="minimize", sampler=self.sampler(seed))
        candidates: list[PoisonSet] = []
        trace: list[Evaluation] = []
        workers = max(1, min(int(threads), int(self.batch_size)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            while len(trace) < n_trials:
                trials = [study.ask() for _ in range(min(self.batch_size,
                                                         n_trials - len(trace)))]
                poisons = [space.suggest(t) for t in trials]
                for trial, poison, ev in zip(trials, poisons,
                                             pool.map(objective.evaluate, poisons)):
                    study.tell(trial, ev.objective)
                    candidates.append(poison)
                    trace.append(ev)
        return AttackResult.of(candidates, trace)


class BayesianSearch(_OptunaSearch):
    """Bayesian optimization: optuna's TPE sampler over the poison space.

    TPE's start-up trials (optuna's default: 10) are drawn by a random sampler with the
    same seed, so ``bayesian`` and ``random`` share their first candidates: a paired
    comparison.
    """

    name: ClassVar[str] = "bayesian"

    def sampler(self, seed: int):
        import optuna

        return optuna.samplers.TPESampler(seed=seed)


class RandomSearch(_OptunaSearch):
    """Random search: optuna's random sampler over the poison space (TPE's baseline)."""

    name: ClassVar[str] = "random"

    def sampler(self, seed: int):
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)


class GradientSearch(Optimizer):
    """Gradient descent: projected Adam on the poison through an unrolled, differentiable
    surrogate victim.

    The surrogate is an L2-regularized logistic regression in torch, warm-started at its
    clean optimum (scikit-learn's fit); each outer step unrolls ``inner_steps`` gradient
    steps on ``fit + poison`` and differentiates a smooth surrogate of the gap on the
    validation split (gap of mean predicted probabilities — over negatives for FPR, over
    all rows for demographic parity — with a smooth absolute value, plus a hinge on the
    soft accuracy when a floor is set). One-hot blocks are softmax-relaxed and labels /
    groups (when optimized) sigmoid-relaxed; each iterate is hardened (argmax, clip) and
    scored with the real victim, ``n_trials`` times in all, starting from a uniform draw.
    """

    name: ClassVar[str] = "gradient"

    class Params(registry.Params):
        learning_rate: float = Field(0.3, gt=0, description="outer Adam step on the poison")
        inner_steps: int = Field(20, ge=1, description="unrolled gradient steps of the "
                                                       "surrogate victim per outer step")
        inner_lr: float = Field(1.0, gt=0, description="step size of the unrolled steps")

    def search(self, objective, space, *, n_trials, seed, threads=1) -> AttackResult:
        import torch

        self._check_budget(n_trials)
        # Tiny tensors: torch's intra-op threads only contend with the victim's refits (and
        # other trials on the machine), measured 10-100x slower unrolls with 2 threads.
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._search(objective, space, n_trials=n_trials, seed=seed)
        finally:
            torch.set_num_threads(previous)

    def _search(self, objective, space, *, n_trials, seed) -> AttackResult:
        import torch
        from sklearn.linear_model import LogisticRegression

        learning_rate, inner_steps, inner_lr = self.learning_rate, self.inner_steps, \
            self.inner_lr
        torch.manual_seed(seed)
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        f64 = dict(dtype=torch.float64, device=dev)
        box, n = space.box, space.n_points
        rng = np.random.default_rng(seed)
        start = space.random(rng)

        clean = LogisticRegression(max_iter=1000).fit(objective.X_fit, objective.y_fit)
        w0 = torch.tensor(clean.coef_[0], **f64)
        b0 = torch.tensor(clean.intercept_[0], **f64)
        reg = 1.0 / len(objective.y_fit)  # C=1 on a summed loss == this on the mean loss
        Xf = torch.tensor(objective.X_fit, **f64)
        yf = torch.tensor(objective.y_fit, **f64)
        Xv = torch.tensor(objective.X_val, **f64)
        yv = torch.tensor(objective.y_val, **f64)
        priv_like = objective.g_val == space.group_values[1]
        gmask = torch.tensor(priv_like, device=dev)
        rows = (yv == 0) if objective.objective == "fpr_difference" else torch.ones_like(gmask)
        a_mask, b_mask = rows & ~gmask, rows & gmask

        num_idx = torch.tensor(box.numeric, device=dev, dtype=torch.long)
        lo = torch.tensor(box.lo[box.numeric], **f64)
        hi = torch.tensor(box.hi[box.numeric], **f64)
        numeric = torch.tensor(start.X[:, box.numeric], **f64).requires_grad_(True)
        # block logits start at the sampled level (+2) so the relaxation begins near it
        logits = [torch.tensor(2.0 * start.X[:, c], **f64).requires_grad_(True)
                  for c in box.blocks]
        params = [numeric, *logits]
        label_logit = group_logit = None
        if space.label == "optimize":
            label_logit = torch.tensor(2.0 * start.y - 1.0, **f64).requires_grad_(True)
            params.append(label_logit)
        group_cols = [box.group_columns[g] for g in space.group_values] \
            if box.group_columns else []
        if space.group == "optimize":
            group_logit = torch.tensor(np.where(start.group == space.group_values[1], 1.0,
                                                -1.0), **f64).requires_grad_(True)
            params.append(group_logit)
        opt = torch.optim.Adam(params, lr=learning_rate)

        def relaxed() -> tuple[torch.Tensor, torch.Tensor]:
            X = torch.zeros((n, box.n_features), **f64)
            X = X.index_copy(1, num_idx, numeric)
            for cols, lg in zip(box.blocks, logits):
                X = X.index_copy(1, torch.tensor(cols, device=dev), torch.softmax(lg, dim=1))
            if group_cols:
                if group_logit is not None:
                    p = torch.sigmoid(group_logit)
                    onehot = torch.stack([1 - p, p], dim=1)
                else:
                    onehot = torch.zeros((n, 2), **f64)
                    onehot[:, space.group_values.index(space.group)] = 1.0
                X = X.index_copy(1, torch.tensor(group_cols, device=dev), onehot)
            y = (torch.sigmoid(label_logit) if label_logit is not None
                 else torch.full((n,), float(space.label), **f64))
            return X, y

        def surrogate_loss() -> torch.Tensor:
            Xp, yp = relaxed()
            X, y = torch.cat([Xf, Xp]), torch.cat([yf, yp])
            w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
            for _ in range(inner_steps):  # unrolled inner training, differentiable in Xp, yp
                z = X @ w + b
                inner = torch.nn.functional.binary_cross_entropy_with_logits(z, y) \
                    + 0.5 * reg * (w @ w)
                gw, gb = torch.autograd.grad(inner, (w, b), create_graph=True)
                w, b = w - inner_lr * gw, b - inner_lr * gb
            p = torch.sigmoid(Xv @ w + b)
            diff = p[a_mask].mean() - p[b_mask].mean()
            loss = torch.sqrt(diff * diff + 1e-6)  # smooth |.|
            if objective.accuracy_floor is not None:
                soft_acc = (yv * p + (1 - yv) * (1 - p)).mean()
                loss = loss + 10.0 * torch.relu(objective.accuracy_floor - soft_acc)
            return loss

        def harden() -> PoisonSet:
            with torch.no_grad():
                levels = (np.stack([lg.argmax(dim=1).cpu().numpy() for lg in logits], axis=1)
                          if logits else np.zeros((n, 0), dtype=np.int64))
                labels = ((label_logit > 0).long().cpu().numpy() if label_logit is not None
                          else np.full(n, int(space.label)))
                groups = (np.where(group_logit.cpu().numpy() > 0, space.group_values[1],
                                   space.group_values[0]) if group_logit is not None
                          else np.full(n, space.group))
                return space.build(numeric.detach().cpu().numpy(), levels, labels, groups)

        candidates, trace = [], []
        for step in range(n_trials):
            poison = harden()
            candidates.append(poison)
            trace.append(objective.evaluate(poison))
            if step == n_trials - 1:
                break  # the last iterate is scored, no need for another update
            opt.zero_grad()
            surrogate_loss().backward()
            opt.step()
            with torch.no_grad():  # projection onto the feature box
                numeric.copy_(torch.minimum(torch.maximum(numeric, lo), hi))
        return AttackResult.of(candidates, trace)


OPTIMIZERS = Registry("optimizers", "poisoning optimizer", {
    "bayesian": "trustlab.attacks.fairness_poisoning.optimizers:BayesianSearch",
    "random": "trustlab.attacks.fairness_poisoning.optimizers:RandomSearch",
    "gradient": "trustlab.attacks.fairness_poisoning.optimizers:GradientSearch",
})


def attack(objective: PoisonObjective, space: PoisonSpace, *, optimizer: str, n_trials: int,
           seed: int, threads: int = 1, **params: Any) -> AttackResult:
    """Run the outer optimizer ``optimizer`` (built with its ``params``) for ``n_trials``
    victim evaluations."""
    return OPTIMIZERS.get(optimizer)(**params).search(objective, space, n_trials=n_trials,
                                                      seed=seed, threads=threads)


__all__ = ["AttackResult", "BayesianSearch", "GradientSearch", "OPTIMIZERS", "Optimizer",
           "RandomSearch", "attack"]
