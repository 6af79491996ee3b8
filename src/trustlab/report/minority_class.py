"""Report section of the minority_class kind (interclass bias under an induced minority): class x percentage heatmaps.

Rows are the class made the minority, columns the percentage of its training rows kept;
cells are means over seeds. With a balanced ``full`` baseline in the same results, a
second heatmap shows the change against that class's accuracy in the baseline; a third
shows where the minority's errors go at the smallest percentage (which classes absorb it).
"""

from __future__ import annotations

import html

from trustlab.report import ReportContext, Section


def _table(results):
    """One row per ok trial: label, percentage, full flag, and its metrics."""
    import pandas as pd

    rows = []
    for t in results.ok():
        p = t["params"]
        rows.append({"full": bool(p.get("minority.full", False)),
                     "label": p.get("minority.label"),
                     "pct": p.get("minority.target_percentage"),
                     "seed": t["params"].get("seed", t.get("seed")),
                     **t["metrics"]})
    return pd.DataFrame(rows)


def _heatmap(matrix, row_labels, col_labels, title, cmap, center=None, fmt="{:.2f}"):
    import matplotlib.pyplot as plt
    import numpy as np

    values = matrix.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 * len(col_labels) + 3, 0.45 * len(row_labels) + 1.8))
    kwargs = {}
    if center is not None:
        span = np.nanmax(np.abs(values - center)) if np.isfinite(values).any() else 1.0
        kwargs = {"vmin": center - span, "vmax": center + span}
    im = ax.imshow(values, cmap=cmap, aspect="auto", **kwargs)
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=7)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return fig


def heatmap_section(results, ctx: ReportContext) -> Section | None:
    from trustlab.report.plots import png_img

    frame = _table(results)
    if frame.empty or "minority_accuracy" not in frame:
        return None
    runs = frame[~frame["full"]]
    if runs.empty:
        return None
    runs = runs.assign(label=runs["minority_label"].astype(int))
    acc = runs.pivot_table(index="label", columns="pct", values="minority_accuracy",
                           aggfunc="mean").sort_index()
    acc.columns = [f"{c:g}%" for c in acc.columns]
    parts = [png_img(_heatmap(acc, acc.index, acc.columns,
                              "Minority-class accuracy (class x % of its training rows kept)",
                              "viridis"), "minority accuracy heatmap")]
    notes = []
    base = frame[frame["full"]]
    if not base.empty:
        delta = acc.copy()
        for label in acc.index:
            key = f"recall_by_index.{int(label)}"
            delta.loc[label] = acc.loc[label] - (base[key].mean() if key in base else float("nan"))
        parts.append(png_img(_heatmap(delta, delta.index, delta.columns,
                                      "Change vs the balanced baseline (accuracy points)",
                                      "RdBu", center=0.0, fmt="{:+.2f}"),
                             "change vs baseline heatmap"))
    else:
        notes.append("No balanced baseline (<code>minority.full: true</code>) in these "
                     "results, so no change-vs-baseline heatmap.")
    absorbed = [c for c in runs.columns if str(c).startswith("absorbed.")]
    if absorbed:
        smallest = runs["pct"].min()
        at = runs[runs["pct"] == smallest]
        shares = at.groupby("label")[absorbed].mean().sort_index()
        shares.columns = [c.split(".", 1)[1] for c in shares.columns]
        shares = shares[sorted(shares.columns, key=_natural)]
        parts.append(png_img(_heatmap(shares, shares.index, shares.columns,
                                      f"Where the minority's test rows go at {smallest:g}% "
                                      "(row: minority class, column: predicted class)",
                                      "Oranges"), "absorbing classes heatmap"))
    text = "".join(f"<p>{n}</p>" for n in notes)
    return Section("Minority classes", f"<p>Means over seeds of "
                   f"{html.escape(str(len(frame)))} trials.</p>{text}" + "\n".join(parts))


def _natural(name: str):
    """Class names in their natural order: "2" before "10"; words alphabetically."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)
