"""Tabular bias mitigations (S3), one small class per method, registered by name."""

from __future__ import annotations

from typing import Any

from trustlab.errors import TrustlabError
from trustlab.mitigations.base import Mitigation, NoMitigation
from trustlab.mitigations.fairlearn_wrappers import (ExponentiatedGradientMitigation,
                                                      ThresholdOptimizerMitigation)
from trustlab.mitigations.group_thresholds import GroupThresholds
from trustlab.mitigations.massaging import Massaging
from trustlab.mitigations.resampling import Oversample, Smote, Undersample
from trustlab.mitigations.reweighing import Reweighing

MITIGATIONS: dict[str, type[Mitigation]] = {
    "none": NoMitigation,
    "reweighing": Reweighing,
    "massaging": Massaging,
    "oversample": Oversample,
    "undersample": Undersample,
    "smote": Smote,
    "exponentiated_gradient": ExponentiatedGradientMitigation,
    "threshold_optimizer": ThresholdOptimizerMitigation,
    "group_thresholds": GroupThresholds,
}


def make_mitigation(name: str, params: dict[str, Any] | None = None, seed: int = 0
                    ) -> Mitigation:
    if name not in MITIGATIONS:
        raise TrustlabError(
            f"unknown mitigation {name!r}; choose one of: {', '.join(MITIGATIONS)}")
    try:
        return MITIGATIONS[name](seed=seed, **(params or {}))
    except TypeError as exc:
        raise TrustlabError(f"mitigation {name!r}: {exc}") from None


__all__ = ["MITIGATIONS", "Mitigation", "make_mitigation"]
