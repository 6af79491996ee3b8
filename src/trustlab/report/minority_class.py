"""Report section of the minority_class kind (interclass bias under an induced minority): class x percentage heatmaps.

Rows are the class made the minority, columns the percentage of its training rows kept;
cells are means over seeds. With a balanced ``full`` baseline in the same results, a
second heatmap shows the change against that class's accuracy in the baseline; a third
shows where the minority's errors go at the smallest percentage (which classes absorb it).
"""

from __future__ import annotations

import html

from trustlab.report import ReportContext, Section


NO_DEFENSE = "none (ERM)"


def defense_name(params: dict) -> str:
    """What a trial did against the minority: its method, or its sampler, or nothing."""
    method = params.get("method.name", "erm")
    sampler = params.get("training.sampler", "shuffle")
    if method != "erm":
        return method
    if sampler != "shuffle":
        return f"{sampler} ({params.get('training.balance_by', 'group')})"
    return NO_DEFENSE


def _table(results):
    """One row per ok trial: label, percentage, full flag, defense, and its metrics."""
    import pandas as pd

    rows = []
    for t in results.ok():
        p = t["params"]
        rows.append({"full": bool(p.get("minority.full", False)),
                     "label": p.get("minority.label"),
                     "pct": p.get("minority.target_percentage"),
                     "defense": defense_name(p),
                     "seed": t["params"].get("seed", t.get("seed")),
                     **t["metrics"]})
    return pd.DataFrame(rows)


def _heatmap(matrix, row_labels, col_labels, title, cmap, center=None, fmt="{:.2f}",
             half=None):
    """``half``: 95 % half-widths, written under each cell's mean where finite."""
    import matplotlib.pyplot as plt
    import numpy as np

    values = matrix.to_numpy(dtype=float)
    half = None if half is None else np.asarray(half, dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 * len(col_labels) + 3, 0.45 * len(row_labels) + 1.8))
    kwargs = {}
    if center is not None:
        span = np.nanmax(np.abs(values - center)) if np.isfinite(values).any() else 1.0
        kwargs = {"vmin": center - span, "vmax": center + span}
    im = ax.imshow(values, cmap=cmap, aspect="auto", **kwargs)
    long = max((len(str(c)) for c in col_labels), default=0) > 6
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels],
                  rotation=30 if long else 0, ha="right" if long else "center")
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                text = fmt.format(values[i, j])
                h = half[i, j] if half is not None else np.nan
                if np.isfinite(h):
                    text += f"\n±{h:.2f}"
                r, g, b, _ = im.cmap(im.norm(values[i, j]))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # light text on dark cells
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return fig


def heatmap_section(results, ctx: ReportContext) -> Section | None:
    from trustlab.report.plots import ci95, png_img

    frame = _table(results)
    if frame.empty or "minority_accuracy" not in frame:
        return None
    runs = frame[~frame["full"] & (frame["defense"] == NO_DEFENSE)]
    if runs.empty:
        return None
    runs = runs.assign(label=runs["minority_label"].astype(int))
    acc = runs.pivot_table(index="label", columns="pct", values="minority_accuracy",
                           aggfunc="mean").sort_index()
    half = runs.pivot_table(index="label", columns="pct", values="minority_accuracy",
                            aggfunc=ci95).reindex(index=acc.index, columns=acc.columns)
    acc.columns = [f"{c:g}%" for c in acc.columns]
    seeds = int(runs.groupby(["label", "pct"]).size().max())
    ci = " ± 95% CI" if seeds > 1 else ""
    parts = [png_img(_heatmap(acc, acc.index, acc.columns,
                              f"Minority-class accuracy{ci} (class x % of training rows kept)",
                              "viridis", half=half.to_numpy()), "minority accuracy heatmap")]
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


def restored_section(results, ctx: ReportContext) -> Section | None:
    """Class x defense: how much of the accuracy the minority class lost (balanced baseline
    minus plain ERM on the minority) each defense gives back, at the smallest percentage
    the defenses were run at; and the accuracies with 95 % intervals over seeds."""
    import numpy as np

    from trustlab.report.plots import mean_ci_text, png_img

    frame = _table(results)
    if frame.empty or "minority_accuracy" not in frame or frame["defense"].nunique() < 2:
        return None
    runs = frame[~frame["full"]].assign(label=lambda f: f["minority_label"].astype(int))
    pct = runs[runs["defense"] != NO_DEFENSE]["pct"].min()
    runs = runs[runs["pct"] == pct]
    base = frame[frame["full"]]
    if base.empty or NO_DEFENSE not in set(runs["defense"]):
        return None
    labels = sorted(runs["label"].unique())
    defenses = [NO_DEFENSE] + sorted(d for d in runs["defense"].unique() if d != NO_DEFENSE)
    mean = runs.pivot_table(index="label", columns="defense", values="minority_accuracy",
                            aggfunc="mean")[defenses]
    full = {k: base[f"recall_by_index.{k}"].mean() for k in labels}
    lost = {k: full[k] - mean.loc[k, NO_DEFENSE] for k in labels}
    restored = mean[defenses[1:]].apply(
        lambda col: (col - mean[NO_DEFENSE]) / [lost[k] if lost[k] > 0.01 else np.nan
                                                for k in col.index])
    fig = _heatmap(restored, restored.index, restored.columns,
                   f"Share of the lost accuracy restored at {pct:g}% (1 = back to the "
                   "balanced baseline)", "RdYlGn", center=0.0, fmt="{:+.2f}")

    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["class", "balanced baseline",
                                                         *defenses])
    body = []
    for k in labels:
        row = [str(k), mean_ci_text(base[f"recall_by_index.{k}"])]
        row += [mean_ci_text(
            runs[(runs["label"] == k) & (runs["defense"] == d)]["minority_accuracy"])
            for d in defenses]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    table = (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>'
             f'{"".join(body)}</tbody></table></div>')
    note = (f"<p>Minority-class accuracy at {pct:g}% of its training rows, mean ± 95 % "
            "Student-t interval over seeds; the heatmap divides each defense's gain over "
            "plain ERM by what ERM lost against the balanced baseline (classes that lose "
            "under 1 point are left blank).</p>")
    return Section("Minority classes: defenses", note + png_img(fig, "restored accuracy "
                                                                "heatmap") + table)
