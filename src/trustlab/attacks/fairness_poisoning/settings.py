"""The attack's settings besides its optimizer, declared once: a YAML ``attack:`` block is
this model (plus ``optimizer`` and that optimizer's own parameters, written flat)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trustlab import registry
from trustlab.attacks.fairness_poisoning.objective import Objective

# The label of every poison row (0, 1) or one label per row chosen by the search.
PoisonLabel = Literal[0, 1, "optimize"]
# The group of every poison row, by role, or one group per row chosen by the search.
PoisonGroup = Literal["unprivileged", "privileged", "optimize"]
# Where the outer objective is scored: the attacker's own validation rows (leak-free), or
# the test split, as the Attack4Good seed evaluated it (leaky: the search sees the rows its
# result is judged on).
Protocol = Literal["leak_free", "attack4good"]


class RobustSettings(registry.Params):
    """Score each candidate as the mean over victim refits and validation folds."""

    refits: int = Field(1, ge=1, description="victim refits per fold, each with its own "
                                             "seed (not the final victim's)")
    folds: int = Field(1, ge=1, description="folds of the attacker's data (fit + validation "
                                            "rows) for cross-fitting; 1: the validation "
                                            "split as it is")
    spread_penalty: float = Field(0.0, ge=0, description="added to the mean: this times "
                                                         "the standard deviation of the "
                                                         "parts' gaps")


class AttackSettings(registry.Params):
    """The poison's size, labels and groups, the attacker's validation split, the search
    budget and the outer objective."""

    n_points: int = Field(20, ge=1, description="poison rows added to the victim's "
                                                "training data")
    n_trials: int = Field(30, ge=1, description="victim evaluations (refits) of the search")
    objective: Objective = Field("fpr_difference",
                                 description="the validation gap the search minimizes")
    accuracy_floor: float | None = Field(
        None, ge=0, le=1, description="validation accuracy under which a candidate is "
                                      "penalized (null: no floor)")
    poison_label: PoisonLabel = Field(1, description="label of the poison rows (optimize: "
                                                     "one per row, searched)")
    poison_group: PoisonGroup = Field("unprivileged", description="group of the poison rows "
                                                                  "(optimize: searched)")
    val_fraction: float = Field(0.3, gt=0, lt=1,
                                description="share of the training rows held out as the "
                                            "attacker's validation split")
    protocol: Protocol = Field("leak_free", description="leak_free: the objective is scored "
                                                        "on the attacker's validation rows; "
                                                        "attack4good: on the TEST split, as "
                                                        "the seed did (leaky, labelled so)")
    robust: RobustSettings | None = Field(None, description="{refits, folds, "
                                          "spread_penalty}: average each candidate over "
                                          "victim refits and folds (null: one refit on the "
                                          "validation split)")


__all__ = ["AttackSettings", "PoisonGroup", "PoisonLabel", "Protocol", "RobustSettings"]
