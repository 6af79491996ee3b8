"""What the report shows for each trial kind: its own sections and the default x axis of
the accuracy-vs-fairness scatter.

The report sits above the experiment engine: it reads stored metrics and artifacts and
draws every figure itself, and this module is the one place that maps a kind to its
sections. Kinds never import the report. A plugin kind adds its sections with
:func:`trustlab.report.register_section` (and its scatter axis with
:func:`trustlab.report.register_fairness_axis`).
"""

from __future__ import annotations

from trustlab.report import PLUGIN_FAIRNESS_AXES, PLUGIN_SECTIONS, SectionFn
from trustlab.report.backdoor import backdoor_section
from trustlab.report.deep import training_curves_section
from trustlab.report.minority_class import heatmap_section, restored_section
from trustlab.report.poisoning import before_after_section, budget_section, trace_section
from trustlab.report.tabular import group_rates_section
from trustlab.report.width_study import width_study_section

SECTIONS: dict[str, list[SectionFn]] = {
    "tabular": [group_rates_section],
    "deep": [width_study_section, training_curves_section],
    "minority_class": [heatmap_section, restored_section, training_curves_section],
    "poisoning": [before_after_section, budget_section, trace_section],
    "backdoor": [backdoor_section],
}

# The scatter's x axis, in order of preference; [] means no scatter (no fairness axis).
DEFAULT_FAIRNESS_AXIS = ["statistical_parity_difference", "demographic_parity_difference"]
FAIRNESS_AXES: dict[str, list[str]] = {
    "tabular": DEFAULT_FAIRNESS_AXIS,
    "deep": ["accuracy_difference", "demographic_parity_difference"],
    "minority_class": ["accuracy_difference"],
    "poisoning": ["fpr_difference", "statistical_parity_difference",
                  "demographic_parity_difference"],
    "backdoor": [],
}


def sections_for(kind: str) -> list[SectionFn]:
    return SECTIONS.get(kind, []) + PLUGIN_SECTIONS.get(kind, [])


def fairness_axis_for(kind: str) -> list[str]:
    if kind in PLUGIN_FAIRNESS_AXES:
        return PLUGIN_FAIRNESS_AXES[kind]
    return FAIRNESS_AXES.get(kind, DEFAULT_FAIRNESS_AXIS)
