"""The HTML report: one self-contained ``DIR/report.html`` per experiment.

The report sits above the experiment engine: it is built from the results store alone
(metrics and artifacts), and draws every figure itself. Sections that apply to every
experiment (the accuracy-vs-fairness scatter, the comparison table, run metadata) are built
in; :mod:`trustlab.report.kinds` maps each built-in trial kind to its own sections (per-group
rates, training curves, heatmaps, reversed triggers). A plugin kind adds sections with
:func:`register_section`. A section function takes the
:class:`~trustlab.experiments.results.Results` and a :class:`ReportContext` and returns a
:class:`Section` or None (nothing to show).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class Section:
    title: str
    html: str  # a fragment; images are embedded as data: URIs


@dataclass
class ReportContext:
    x_metric: str | None     # the disparity metric on the scatter's x axis
    y_metric: str            # usually accuracy
    absolute_x: bool         # plot |x| (signed metrics such as statistical parity)


SectionFn = Callable[[Any, ReportContext], "Section | None"]
# Added by plugin kinds; the built-in kinds' sections are in trustlab.report.kinds.
PLUGIN_SECTIONS: dict[str, list[SectionFn]] = {}
PLUGIN_FAIRNESS_AXES: dict[str, list[str]] = {}


def register_section(kind: str, fn: SectionFn) -> SectionFn:
    """Add ``fn`` to the report of experiments of ``kind`` (idempotent)."""
    fns = PLUGIN_SECTIONS.setdefault(kind, [])
    if fn not in fns:
        fns.append(fn)
    return fn


def register_fairness_axis(kind: str, metrics: list[str]) -> None:
    """The metrics (in order of preference) the scatter of ``kind`` may put on its x axis;
    an empty list means the kind has no fairness axis and no scatter."""
    PLUGIN_FAIRNESS_AXES[kind] = list(metrics)


def write_report(directory: str | Path, *, x_metric: str | None = None,
                 all_trials: bool = False) -> Path:
    """Write ``directory/report.html`` for the experiment's current trials (``all_trials``:
    earlier configurations' rows too)."""
    from trustlab.report.html import write_report as _write

    return _write(directory, x_metric=x_metric, all_trials=all_trials)


__all__ = ["ReportContext", "Section", "register_fairness_axis", "register_section",
           "write_report"]
