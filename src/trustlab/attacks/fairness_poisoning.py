"""Attack4Good (S4, seed 001): poisoning points that make a third party's model *fairer*.

Bi-level problem ``argmin_h g(w*(h), h)  s.t.  w*(h) in argmin_w f(w, h)``:

* inner ``f``: the victim (a scikit-learn estimator with default hyper-parameters, built by
  a factory) is refit from scratch on ``train + h`` for every candidate ``h``;
* outer ``g``: a fairness gap of the refit victim on a held-out validation split —
  ``fpr_difference`` (max - min of the per-group false positive rates, i.e.
  ``|FPR_unpriv - FPR_priv|`` for a binary group; fairlearn's
  ``false_positive_rate_difference``) or ``demographic_parity_difference`` — plus a penalty
  when an ``accuracy_floor`` is set and the candidate's validation accuracy falls below it.

The poison ``h`` is ``n_points`` rows of the *encoded* feature space (one-hot categoricals,
standardized numerics) with a label and a group each. The search space is the feature box
of the training data:

* numeric columns: a float in ``[min, max]`` of the training column;
* one-hot blocks: a categorical choice of one level per block (TPE handles categoricals
  natively; the gradient variant relaxes a block to a softmax and takes its argmax), so a
  poison row is always a valid one-hot encoding;
* the sensitive attribute's block (when it is a model input) is set by the point's group,
  which is fixed (``privileged``/``unprivileged``) or optimized; labels likewise.

Outer optimizers: ``bayesian`` (optuna's TPE sampler), ``random`` (optuna's random
sampler over the same space, same budget and evaluation), ``gradient`` (projected Adam on
a smooth surrogate of the gap, differentiated through unrolled gradient steps of a torch
logistic regression; every iterate is scored with the real victim, so all three report
the same objective). Each makes exactly ``n_trials`` victim evaluations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from trustlab.errors import TrustlabError

OBJECTIVES = ("fpr_difference", "demographic_parity_difference")
OPTIMIZERS = ("bayesian", "random", "gradient")
# Added to the gap of a candidate below the accuracy floor: any infeasible candidate then
# scores worse than every feasible one (gaps are at most 1), and the shortfall still ranks
# infeasible candidates among themselves.
FLOOR_PENALTY = 1.0


# -- the feature box --------------------------------------------------------------------
@dataclass
class FeatureBox:
    """Where poison rows may live in the encoded feature space.

    ``numeric`` columns take floats in ``[lo, hi]``; each of ``blocks`` is a one-hot block
    (column indices) whose row has exactly one 1; ``group_columns`` maps a group value to
    its column in the sensitive attribute's block (empty when the attribute is no input).
    """

    lo: np.ndarray
    hi: np.ndarray
    numeric: list[int]
    blocks: list[list[int]]
    group_columns: dict[str, int] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return len(self.lo)

    @classmethod
    def from_encoded(cls, X: np.ndarray, feature_names: list[str],
                     categorical: dict[str, list[str]], group_feature: str | None = None
                     ) -> "FeatureBox":
        """``categorical`` maps each one-hot-encoded raw column to its levels (in encoder
        order), so blocks are found by exact name ``f"{column}_{level}"``."""
        index = {n: i for i, n in enumerate(feature_names)}
        blocks, group_columns, in_block = [], {}, set()
        for col, levels in categorical.items():
            cols = [index[f"{col}_{lv}"] for lv in levels]
            in_block.update(cols)
            if col == group_feature:
                group_columns = {str(lv): c for lv, c in zip(levels, cols)}
            else:
                blocks.append(cols)
        numeric = [i for i in range(len(feature_names)) if i not in in_block]
        return cls(lo=X.min(axis=0), hi=X.max(axis=0), numeric=numeric, blocks=blocks,
                   group_columns=group_columns)

    def contains(self, X: np.ndarray, atol: float = 1e-9) -> bool:
        """Every row inside ``[lo, hi]`` and one-hot on every block."""
        inside = np.all((X >= self.lo - atol) & (X <= self.hi + atol))
        onehot = all(np.allclose(X[:, b].sum(axis=1), 1) and
                     np.all(np.isin(X[:, b], (0.0, 1.0))) for b in self.all_blocks())
        return bool(inside and onehot)

    def all_blocks(self) -> list[list[int]]:
        extra = [list(self.group_columns.values())] if self.group_columns else []
        return self.blocks + extra


@dataclass
class PoisonSet:
    X: np.ndarray       # (n_points, n_features), encoded
    y: np.ndarray       # labels (0/1)
    group: np.ndarray   # group values (strings)


@dataclass
class PoisonSpace:
    """The poison's search space: ``n_points`` rows in ``box``, with labels and groups
    fixed (a value) or optimized (``"optimize"``)."""

    box: FeatureBox
    n_points: int
    label: int | str            # 0, 1 or "optimize"
    group: str                  # a group value or "optimize"
    group_values: tuple[str, str]

    def build(self, numeric: np.ndarray, levels: np.ndarray, labels: np.ndarray,
              groups: np.ndarray) -> PoisonSet:
        """Rows from numeric values ``(n, len(numeric))``, block level indices
        ``(n, len(blocks))``, labels and groups; numerics are clipped to the box."""
        box = self.box
        X = np.zeros((self.n_points, box.n_features))
        X[:, box.numeric] = np.clip(numeric, box.lo[box.numeric], box.hi[box.numeric])
        rows = np.arange(self.n_points)
        for b, cols in enumerate(box.blocks):
            X[rows, np.asarray(cols)[levels[:, b]]] = 1.0
        if box.group_columns:
            for i, g in enumerate(groups):
                X[i, box.group_columns[str(g)]] = 1.0
        return PoisonSet(X=X, y=np.asarray(labels, dtype=np.int64),
                         group=np.asarray(groups).astype(str))

    def suggest(self, trial) -> PoisonSet:
        """One candidate from an optuna trial (TPE or random sampler)."""
        box, n = self.box, self.n_points
        numeric = np.zeros((n, len(box.numeric)))
        levels = np.zeros((n, len(box.blocks)), dtype=np.int64)
        labels = np.zeros(n, dtype=np.int64)
        groups = np.empty(n, dtype=object)
        for i in range(n):
            for k, j in enumerate(box.numeric):
                lo, hi = float(box.lo[j]), float(box.hi[j])
                # a constant column has nothing to search (and optuna wants low < high)
                numeric[i, k] = trial.suggest_float(f"x{i}_{j}", lo, hi) if hi > lo else lo
            for b, cols in enumerate(box.blocks):
                levels[i, b] = (trial.suggest_categorical(f"b{i}_{b}", list(range(len(cols))))
                                if len(cols) > 1 else 0)
            labels[i] = (trial.suggest_categorical(f"y{i}", [0, 1])
                         if self.label == "optimize" else int(self.label))
            groups[i] = (trial.suggest_categorical(f"g{i}", list(self.group_values))
                         if self.group == "optimize" else self.group)
        return self.build(numeric, levels, labels, groups)

    def random(self, rng: np.random.Generator) -> PoisonSet:
        """A uniform draw from the space (the gradient variant's starting point)."""
        box, n = self.box, self.n_points
        numeric = rng.uniform(box.lo[box.numeric], box.hi[box.numeric],
                              size=(n, len(box.numeric)))
        levels = np.stack([rng.integers(0, len(c), size=n) for c in box.blocks], axis=1) \
            if box.blocks else np.zeros((n, 0), dtype=np.int64)
        labels = (rng.integers(0, 2, size=n) if self.label == "optimize"
                  else np.full(n, int(self.label)))
        groups = (rng.choice(np.array(self.group_values), size=n) if self.group == "optimize"
                  else np.full(n, self.group))
        return self.build(numeric, levels, labels, groups)


# -- the outer objective --------------------------------------------------------------
def fairness_gaps(y_true, y_pred, groups) -> dict[str, float]:
    """Accuracy, FPR difference and demographic parity difference (max - min over groups,
    fairlearn's definitions), from trustlab's metrics engine."""
    from trustlab.metrics import audit

    res = audit(np.asarray(y_true), np.asarray(y_pred), np.asarray(groups).astype(str),
                pos_label=1)
    fpr = [v["fpr"] for v in res.by_group.values()]
    fpr = [v for v in fpr if np.isfinite(v)]  # a group with no negatives has no FPR
    return {"accuracy": float(res.overall["accuracy"]),
            "fpr_difference": float(max(fpr) - min(fpr)) if fpr else 0.0,
            "demographic_parity_difference":
                float(res.disparities["demographic_parity_difference"])}


@dataclass
class Evaluation:
    objective: float
    gap: float
    accuracy: float
    fpr_difference: float
    demographic_parity_difference: float
    fit_time_s: float


class PoisonObjective:
    """Refit the victim on ``fit + poison`` and score it on the validation split."""

    def __init__(self, make_victim: Callable[[], Any], X_fit, y_fit, X_val, y_val, g_val,
                 objective: str = "fpr_difference", accuracy_floor: float | None = None):
        if objective not in OBJECTIVES:
            raise TrustlabError(f"unknown poisoning objective {objective!r}; choose one of: "
                                f"{', '.join(OBJECTIVES)}")
        self.make_victim = make_victim
        self.X_fit, self.y_fit = np.asarray(X_fit), np.asarray(y_fit)
        self.X_val, self.y_val = np.asarray(X_val), np.asarray(y_val)
        self.g_val = np.asarray(g_val).astype(str)
        self.objective = objective
        self.accuracy_floor = accuracy_floor

    def fit(self, poison: PoisonSet | None):
        """The victim trained on the fit split plus ``poison`` (None: the clean victim)."""
        X, y = self.X_fit, self.y_fit
        if poison is not None:
            X, y = np.vstack([X, poison.X]), np.concatenate([y, poison.y])
        return self.make_victim().fit(X, y)

    def score(self, gaps: dict[str, float]) -> float:
        value = gaps[self.objective]
        if self.accuracy_floor is not None and gaps["accuracy"] < self.accuracy_floor:
            value += FLOOR_PENALTY + (self.accuracy_floor - gaps["accuracy"])
        return float(value)

    def evaluate(self, poison: PoisonSet | None) -> Evaluation:
        t0 = time.perf_counter()
        model = self.fit(poison)
        elapsed = time.perf_counter() - t0
        gaps = fairness_gaps(self.y_val, model.predict(self.X_val), self.g_val)
        return Evaluation(objective=self.score(gaps), gap=gaps[self.objective],
                          accuracy=gaps["accuracy"], fpr_difference=gaps["fpr_difference"],
                          demographic_parity_difference=gaps["demographic_parity_difference"],
                          fit_time_s=elapsed)


# -- the outer optimizers ---------------------------------------------------------------
@dataclass
class AttackResult:
    best: PoisonSet
    best_evaluation: Evaluation
    trace: list[Evaluation]

    @property
    def n_evaluations(self) -> int:
        return len(self.trace)


def optuna_attack(objective: PoisonObjective, space: PoisonSpace, *, sampler: str,
                  n_trials: int, seed: int) -> AttackResult:
    """TPE (``bayesian``) or random search (``random``) over the poison space; both see the
    same parameterization and the same evaluation, so only the sampler differs. TPE's
    start-up trials (optuna's default: 10) are drawn by a random sampler with the same
    seed, so the two searches share their first candidates: a paired comparison."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {"bayesian": lambda: optuna.samplers.TPESampler(seed=seed),
                "random": lambda: optuna.samplers.RandomSampler(seed=seed)}
    study = optuna.create_study(direction="minimize", sampler=samplers[sampler]())
    candidates: list[PoisonSet] = []
    trace: list[Evaluation] = []

    def run(trial) -> float:
        poison = space.suggest(trial)
        ev = objective.evaluate(poison)
        candidates.append(poison)
        trace.append(ev)
        return ev.objective

    study.optimize(run, n_trials=n_trials)
    best = int(np.argmin([e.objective for e in trace]))  # first of ties, like optuna
    return AttackResult(best=candidates[best], best_evaluation=trace[best], trace=trace)


def gradient_attack(objective: PoisonObjective, space: PoisonSpace, *, n_trials: int,
                    seed: int, learning_rate: float = 0.3, inner_steps: int = 20,
                    inner_lr: float = 1.0, threads: int = 1) -> AttackResult:
    """Projected Adam on the poison through a differentiable surrogate victim.

    The surrogate is an L2-regularized logistic regression in torch, warm-started at its
    clean optimum (scikit-learn's fit); each outer step unrolls ``inner_steps`` gradient
    steps on ``fit + poison`` and differentiates a smooth surrogate of the gap on the
    validation split (gap of mean predicted probabilities — over negatives for FPR, over
    all rows for demographic parity — with a smooth absolute value, plus a hinge on the
    soft accuracy when a floor is set). One-hot blocks are softmax-relaxed and labels /
    groups (when optimized) sigmoid-relaxed; each iterate is hardened (argmax, clip) and
    scored with the real victim, ``n_trials`` times in all.
    """
    import torch

    # Tiny tensors: torch's intra-op threads only contend with the victim's refits (and
    # other trials on the machine), measured 10-100x slower unrolls with 2 threads.
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        return _gradient_attack(objective, space, n_trials=n_trials, seed=seed,
                                learning_rate=learning_rate, inner_steps=inner_steps,
                                inner_lr=inner_lr)
    finally:
        torch.set_num_threads(previous)


def _gradient_attack(objective, space, *, n_trials, seed, learning_rate, inner_steps,
                     inner_lr) -> AttackResult:
    import torch
    from sklearn.linear_model import LogisticRegression

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
    group_cols = [box.group_columns[g] for g in space.group_values] if box.group_columns \
        else []
    if space.group == "optimize":
        group_logit = torch.tensor(np.where(start.group == space.group_values[1], 1.0, -1.0),
                                   **f64).requires_grad_(True)
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
    best = int(np.argmin([e.objective for e in trace]))
    return AttackResult(best=candidates[best], best_evaluation=trace[best], trace=trace)


def attack(objective: PoisonObjective, space: PoisonSpace, *, optimizer: str, n_trials: int,
           seed: int, **gradient_options: Any) -> AttackResult:
    """Run the outer optimizer ``optimizer`` for ``n_trials`` victim evaluations."""
    if optimizer not in OPTIMIZERS:
        raise TrustlabError(f"unknown poisoning optimizer {optimizer!r}; choose one of: "
                            f"{', '.join(OPTIMIZERS)}")
    if n_trials < 1:
        raise TrustlabError(f"n_trials must be at least 1, got {n_trials}")
    if optimizer == "gradient":
        return gradient_attack(objective, space, n_trials=n_trials, seed=seed,
                               **gradient_options)
    return optuna_attack(objective, space, sampler=optimizer, n_trials=n_trials, seed=seed)


__all__ = ["AttackResult", "Evaluation", "FeatureBox", "OBJECTIVES", "OPTIMIZERS",
           "PoisonObjective", "PoisonSet", "PoisonSpace", "attack", "fairness_gaps",
           "gradient_attack", "optuna_attack"]
