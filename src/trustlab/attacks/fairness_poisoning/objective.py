"""The outer objective: refit the victim on ``fit + poison`` and score a fairness gap of
the refit victim on the attacker's validation split, with an optional accuracy floor.

A *robust* objective scores each candidate on several parts — victim refits with other
seeds, and folds of the attacker's data (cross-fitting: the victim is refit on the other
folds plus the poison and scored on the held-out one) — and takes the mean of the parts'
gaps, optionally plus a penalty on their spread: a poison that only fits one validation
split or one victim's randomness scores worse."""

from __future__ import annotations

import time
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np

from trustlab.errors import TrustlabError

if typing.TYPE_CHECKING:
    from trustlab.attacks.fairness_poisoning.space import PoisonSet

# The gaps an attack can minimize (fairlearn's definitions: max - min over groups).
Objective = Literal["fpr_difference", "demographic_parity_difference"]
OBJECTIVES: tuple[str, ...] = typing.get_args(Objective)
# Added to the gap of a candidate below the accuracy floor: any infeasible candidate then
# scores worse than every feasible one (gaps are at most 1), and the shortfall still ranks
# infeasible candidates among themselves.
FLOOR_PENALTY = 1.0


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
    """One victim evaluation: the score the search minimizes (``objective``: the gap plus
    the floor penalty, if any), the gap itself and the validation metrics."""

    objective: float
    gap: float
    accuracy: float
    fpr_difference: float
    demographic_parity_difference: float
    fit_time_s: float
    n_refits: int = 1          # victim refits behind this evaluation (robust: one per part)
    gap_spread: float = 0.0    # standard deviation of the parts' gaps (0 with one part)


@dataclass(frozen=True)
class ScoringPart:
    """One refit of a robust objective: the victim (seeded ``victim_seed``; None: the
    factory's own seed) trained on ``X_fit`` plus the poison, scored on ``X_val``."""

    X_fit: np.ndarray
    y_fit: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    g_val: np.ndarray
    victim_seed: int | None = None


class PoisonObjective:
    """Refit the victim on ``fit + poison`` and score it on the validation split.

    ``make_victim()`` returns a fresh, unfitted scikit-learn-compatible estimator (called
    with ``seed=`` for a part that names one); a picklable factory (e.g.
    ``functools.partial``) lets the objective travel to workers. ``parts`` (default: the
    one fit/validation split) are what :meth:`evaluate` averages over;
    ``spread_penalty`` x the standard deviation of the parts' gaps is added to the mean.
    """

    def __init__(self, make_victim: Callable[..., Any], X_fit, y_fit, X_val, y_val, g_val, *,
                 objective: Objective, accuracy_floor: float | None = None,
                 parts: list[ScoringPart] | None = None, spread_penalty: float = 0.0):
        if objective not in OBJECTIVES:
            raise TrustlabError(f"unknown poisoning objective {objective!r}; choose one of: "
                                f"{', '.join(OBJECTIVES)}")
        self.make_victim = make_victim
        self.X_fit, self.y_fit = np.asarray(X_fit), np.asarray(y_fit)
        self.X_val, self.y_val = np.asarray(X_val), np.asarray(y_val)
        self.g_val = np.asarray(g_val).astype(str)
        self.objective = objective
        self.accuracy_floor = accuracy_floor
        self.parts = parts or [ScoringPart(self.X_fit, self.y_fit, self.X_val, self.y_val,
                                           self.g_val)]
        self.spread_penalty = float(spread_penalty)

    def _victim(self, seed: int | None):
        return self.make_victim() if seed is None else self.make_victim(seed=seed)

    @staticmethod
    def _with(X, y, poison: PoisonSet | None):
        if poison is None:
            return X, y
        return np.vstack([X, poison.X]), np.concatenate([y, poison.y])

    def fit(self, poison: PoisonSet | None):
        """The victim trained on the fit split plus ``poison`` (None: the clean victim)."""
        return self._victim(None).fit(*self._with(self.X_fit, self.y_fit, poison))

    def score(self, gaps: dict[str, float]) -> float:
        value = gaps[self.objective]
        if self.accuracy_floor is not None and gaps["accuracy"] < self.accuracy_floor:
            value += FLOOR_PENALTY + (self.accuracy_floor - gaps["accuracy"])
        return float(value)

    def evaluate(self, poison: PoisonSet | None) -> Evaluation:
        """Refit per part; the mean of the parts' gaps, scored, plus the spread penalty."""
        t0 = time.perf_counter()
        per_part = []
        for part in self.parts:
            model = self._victim(part.victim_seed).fit(
                *self._with(part.X_fit, part.y_fit, poison))
            per_part.append(fairness_gaps(part.y_val, model.predict(part.X_val),
                                          np.asarray(part.g_val).astype(str)))
        elapsed = time.perf_counter() - t0
        gaps = {k: float(np.mean([g[k] for g in per_part])) for k in per_part[0]}
        spread = float(np.std([g[self.objective] for g in per_part]))
        return Evaluation(objective=self.score(gaps) + self.spread_penalty * spread,
                          gap=gaps[self.objective], accuracy=gaps["accuracy"],
                          fpr_difference=gaps["fpr_difference"],
                          demographic_parity_difference=gaps["demographic_parity_difference"],
                          fit_time_s=elapsed, n_refits=len(self.parts), gap_spread=spread)


__all__ = ["Evaluation", "FLOOR_PENALTY", "OBJECTIVES", "Objective", "PoisonObjective",
           "ScoringPart", "fairness_gaps"]
