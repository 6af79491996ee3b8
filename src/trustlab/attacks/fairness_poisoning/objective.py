"""The outer objective: refit the victim on ``fit + poison`` and score a fairness gap of
the refit victim on the attacker's validation split, with an optional accuracy floor."""

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


class PoisonObjective:
    """Refit the victim on ``fit + poison`` and score it on the validation split.

    ``make_victim()`` returns a fresh, unfitted scikit-learn-compatible estimator; a
    picklable factory (e.g. ``functools.partial``) lets the objective travel to workers.
    """

    def __init__(self, make_victim: Callable[[], Any], X_fit, y_fit, X_val, y_val, g_val, *,
                 objective: Objective, accuracy_floor: float | None = None):
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


__all__ = ["Evaluation", "FLOOR_PENALTY", "OBJECTIVES", "Objective", "PoisonObjective",
           "fairness_gaps"]
