"""Tabular bias mitigations, one small class per method, registered by name.

``trustlab list mitigations`` shows each one with its parameters. A new method is one
:class:`~trustlab.mitigations.base.Mitigation` subclass (``name``, ``Params``, ``fit``,
``predict``) and one line below.
"""

from __future__ import annotations

from typing import Any

from trustlab.registry import Registry

MITIGATIONS = Registry("mitigations", "mitigation", {
    "none": "trustlab.mitigations.base:NoMitigation",
    "reweighing": "trustlab.mitigations.reweighing:Reweighing",
    "massaging": "trustlab.mitigations.massaging:Massaging",
    "oversample": "trustlab.mitigations.resampling:Oversample",
    "undersample": "trustlab.mitigations.resampling:Undersample",
    "smote": "trustlab.mitigations.resampling:Smote",
    "exponentiated_gradient":
        "trustlab.mitigations.fairlearn_wrappers:ExponentiatedGradientMitigation",
    "threshold_optimizer": "trustlab.mitigations.fairlearn_wrappers:ThresholdOptimizerMitigation",
    "group_thresholds": "trustlab.mitigations.group_thresholds:GroupThresholds",
    "lfr": "trustlab.mitigations.lfr:LearningFairRepresentations",
    "calibrated_equalized_odds":
        "trustlab.mitigations.calibrated_equalized_odds:CalibratedEqualizedOdds",
    "reject_option_classification":
        "trustlab.mitigations.reject_option:RejectOptionClassification",
    "correlation_remover":
        "trustlab.mitigations.correlation_remover:CorrelationRemoverMitigation",
    "grid_search": "trustlab.mitigations.fairlearn_wrappers:GridSearchMitigation",
    "disparate_impact_remover":
        "trustlab.mitigations.disparate_impact_remover:DisparateImpactRemover",
})


def make_mitigation(name: str, params: dict[str, Any] | None = None, seed: int = 0):
    """An unfitted mitigation ``name`` with ``params`` (checked against its ``Params``)."""
    return MITIGATIONS.get(name)(seed=seed, **(params or {}))


def __getattr__(name: str):  # the base class without importing scikit-learn up front
    if name == "Mitigation":
        from trustlab.mitigations.base import Mitigation

        return Mitigation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MITIGATIONS", "Mitigation", "make_mitigation"]
