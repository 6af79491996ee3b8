"""Report section of a width sweep of the deep kind (the MinDiff over-parameterization
study, Veldanda et al.): the fairness gap on the test and on the training rows, and the
training loss, against the network's width, per method, with 95 % confidence intervals
over seeds; then error against gap, and which configuration has the lowest error within
a gap bound.

It appears when ``model.params.width`` is a grid axis with at least two values. The gap is
``false_positive_rate_difference`` (the gap MinDiff closes with ``only_label: 0``) on a
binary task, else ``accuracy_difference``. A grid over the
dataset draws one row of panels per dataset.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from trustlab.report import ReportContext, Section
from trustlab.report.plots import ci95

WIDTH = "model.params.width"
GAPS = ("false_positive_rate_difference", "accuracy_difference")


def gap_metric(frame: pd.DataFrame) -> str | None:
    for metric in GAPS:
        if metric in frame.columns and f"train.{metric}" in frame.columns:
            return metric
    return None


def width_table(frame: pd.DataFrame, keys: list[str], gap: str) -> pd.DataFrame:
    """One row per grid point: mean and 95 % CI half-width of the test gap, the train gap,
    the training log loss and the test error, plus n (seeds)."""
    ok = frame[frame["status"] == "ok"].assign(error=lambda f: 1.0 - f["accuracy"])
    columns = {"gap": gap, "train_gap": f"train.{gap}", "train_loss": "train.log_loss",
               "error": "error"}
    rows = []
    for point, part in ok.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, point if isinstance(point, tuple) else (point,)))
        row["n"] = len(part)
        for name, column in columns.items():
            series = part[column] if column in part else pd.Series(dtype=float)
            row[name] = float(series.mean()) if len(series) else float("nan")
            row[f"{name}_ci"] = ci95(series)
        rows.append(row)
    return pd.DataFrame(rows)


def best_within_bounds(table: pd.DataFrame, label_of, bounds: list[float]) -> list[dict]:
    """For each gap bound, the grid point with the lowest mean test error among those whose
    mean test gap is within it."""
    out = []
    for bound in bounds:
        inside = table[table["gap"] <= bound]
        if inside.empty:
            out.append({"bound": bound, "point": None})
            continue
        best = inside.loc[inside["error"].idxmin()]
        out.append({"bound": bound, "point": label_of(best), "width": int(best[WIDTH]),
                    "error": best["error"], "error_ci": best["error_ci"], "gap": best["gap"]})
    return out


def short_label(row: pd.Series, keys: list[str], table: pd.DataFrame) -> str:
    """``row``'s point label naming only what sets it apart: each ``.name`` key, and any
    other key whose value is not the most common one in ``table`` (a default)."""
    from trustlab.report.plots import point_label

    if not keys:
        return "all"
    shown = [k for k in keys if k.endswith(".name")
             or str(row[k]) != table[k].map(str).mode().iloc[0]]
    return point_label(row, shown or keys[:1])


def _bounds(gaps: pd.Series) -> list[float]:
    """Three bounds spread over the observed gaps (their quartiles, rounded up)."""
    q = np.nanquantile(gaps.to_numpy(dtype=float), [0.25, 0.5, 0.75])
    return sorted({float(np.ceil(v * 100) / 100) for v in q if np.isfinite(v)})


def width_study_section(results, ctx: ReportContext) -> Section | None:
    import matplotlib.pyplot as plt

    from trustlab.report.plots import png_img

    keys = results.grid_keys
    frame = results.frame()
    if WIDTH not in keys or frame.empty or frame[WIDTH].nunique() < 2:
        return None
    gap = gap_metric(frame)
    if gap is None:
        return None
    facets = [k for k in keys if k.startswith("dataset.") and frame[k].nunique() > 1]
    series_keys = [k for k in keys if k != WIDTH and k not in facets]
    table = width_table(frame, keys, gap)
    if table.empty:
        return None
    facet_groups = (list(table.groupby(facets, sort=False)) if facets else [((), table)])

    panels = [("gap", f"test {gap}"), ("train_gap", f"train {gap}"),
              ("train_loss", "training log loss")]
    parts = [f"<p>Mean over seeds, bars: 95 % t-interval. The gap is <code>{gap}</code> on "
             "the test split and on the fitted training rows (<code>train.</code>); the "
             "training log loss is the final model's mean cross-entropy on those rows. "
             "MinDiff's &ldquo;illusion of fairness&rdquo;: once a wide network drives the "
             "training loss to ~0 its training gap closes and the penalty stops acting, "
             "while the test gap stays.</p>"]
    for facet, sub in facet_groups:
        title = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in
                          zip(facets, facet if isinstance(facet, tuple) else (facet,)))
        fig, axes = plt.subplots(1, 4, figsize=(21, 4.2))
        # a key constant within this dataset (its epochs...) does not tell lines apart
        line_keys = [k for k in series_keys if sub[k].map(str).nunique() > 1]
        lines = list(sub.groupby(line_keys, sort=False, dropna=False)) if line_keys \
            else [((), sub)]
        # A variant swept at a few widths only (a batch-size check at the narrow ones) is
        # in the table below, not drawn as a curve.
        curves = [line for _, line in lines if line[WIDTH].nunique() >= 3] or \
            [line for _, line in lines]
        cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
        for i, line in enumerate(curves):
            line = line.sort_values(WIDTH)
            label = short_label(line.iloc[0], line_keys, sub)
            color = cmap(i % cmap.N)
            for ax, (column, ylabel) in zip(axes[:3], panels):
                ax.errorbar(line[WIDTH], line[column], yerr=line[f"{column}_ci"],
                            marker="o", ms=4, capsize=3, color=color, label=label)
                ax.set_xscale("log", base=2)
                ax.set_xlabel("width (hidden units)")
                ax.set_title(ylabel, fontsize=10)
                ax.grid(True, alpha=0.3)
            axes[3].errorbar(line["gap"], line["error"], xerr=line["gap_ci"],
                             yerr=line["error_ci"], fmt="o", ms=4, capsize=2, color=color,
                             alpha=0.8)
            for _, point in line.iterrows():
                axes[3].annotate(str(int(point[WIDTH])), (point["gap"], point["error"]),
                                 fontsize=6, xytext=(3, 2), textcoords="offset points")
        axes[3].set_xlabel(f"test {gap}")
        axes[3].set_ylabel("test error")
        axes[3].set_title("error vs gap (labels: width)", fontsize=10)
        axes[3].grid(True, alpha=0.3)
        axes[2].legend(fontsize=7, loc="upper center", bbox_to_anchor=(1.1, -0.16), ncol=3)
        fig.suptitle(title or "width sweep", fontsize=11)

        def label_of(row, keys=tuple(line_keys), sub=sub) -> str:
            return short_label(row, list(keys), sub)

        rows = []
        for best in best_within_bounds(sub, label_of, _bounds(sub["gap"])):
            if best["point"] is None:
                rows.append(f"<tr><td>&le; {best['bound']:.2f}</td><td colspan=4>none</td></tr>")
                continue
            rows.append(f"<tr><td>&le; {best['bound']:.2f}</td>"
                        f"<td>{html.escape(best['point'])}</td><td>{best['width']}</td>"
                        f"<td>{best['error']:.3f} &plusmn; {best['error_ci']:.3f}</td>"
                        f"<td>{best['gap']:.3f}</td></tr>")
        parts.append(f"<h3>{html.escape(title)}</h3>" if title else "")
        parts.append(png_img(fig, f"width sweep {title}"))
        parts.append("<p>Within a gap bound, the lowest test error:</p><table><thead><tr>"
                     f"<th>mean test {gap}</th><th>method</th><th>width</th>"
                     "<th>test error (95 % CI)</th><th>its gap</th></tr></thead><tbody>"
                     + "".join(rows) + "</tbody></table>")
    return Section("Fairness against width", "".join(parts))
