"""Report sections of the tabular kind: per-group selection rate and accuracy."""

from __future__ import annotations

import html
import re

from trustlab.report import ReportContext, Section

_GROUP_METRIC = re.compile(r"^group\.(?P<group>.+)\.(?P<metric>selection_rate|accuracy|tpr)$")


def group_rates_section(results, ctx: ReportContext) -> Section | None:
    """Bars per grid point and group of the seed-mean selection rate, TPR and accuracy."""
    import pandas as pd

    from trustlab.report.plots import grouped_bars, png_img, point_label

    frame = results.frame()
    ok = frame[frame["status"] == "ok"] if not frame.empty else frame
    cols = [c for c in ok.columns if _GROUP_METRIC.match(str(c))]
    if ok.empty or not cols:
        return None
    keys = results.grid_keys
    labels = ok.apply(lambda r: point_label(r, keys), axis=1) if keys else \
        pd.Series("all", index=ok.index)
    parts = []
    for metric, nice in (("selection_rate", "Selection rate P(ŷ=1)"),
                         ("tpr", "True positive rate"), ("accuracy", "Accuracy")):
        mcols = [c for c in cols if _GROUP_METRIC.match(c)["metric"] == metric]
        if not mcols:
            continue
        data = ok[mcols].rename(columns=lambda c: _GROUP_METRIC.match(c)["group"])
        grouped = data.groupby(labels.to_numpy(), sort=False)
        fig = grouped_bars(grouped.mean(), grouped.std(), nice,
                           f"{nice} per group (mean ± std over seeds)")
        parts.append(png_img(fig, f"{nice} per group"))
    note = ""
    if results.ok():
        s = results.ok()[0]["params"].get("dataset.sensitive")
        if s:
            note = f"<p>Groups: values of <code>{html.escape(str(s))}</code>.</p>"
    return Section("Per-group rates", note + "\n".join(parts))
