"""The HTML report (S8): one self-contained ``DIR/report.html`` per experiment.

Registry-driven: sections that apply to every experiment (the accuracy-vs-fairness
scatter, the comparison table, run metadata) are built in; a trial kind adds its own plots
with :func:`register_section` (the tabular kind adds per-group rates; later kinds add
heatmaps, reversed triggers, training curves). A section function takes the
:class:`~trustlab.experiments.results.Results` and a :class:`ReportContext` and returns a
:class:`Section` or None (nothing to show). Kept import-light: kinds register sections
from worker processes too.
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
SECTIONS: dict[str, list[SectionFn]] = {}


def register_section(kind: str, fn: SectionFn) -> SectionFn:
    """Add ``fn`` to the report of experiments of ``kind`` (idempotent)."""
    fns = SECTIONS.setdefault(kind, [])
    if fn not in fns:
        fns.append(fn)
    return fn


def write_report(directory: str | Path, *, x_metric: str | None = None) -> Path:
    from trustlab.report.html import write_report as _write

    return _write(directory, x_metric=x_metric)


__all__ = ["ReportContext", "SECTIONS", "Section", "register_section", "write_report"]
