"""Matplotlib (Agg) figures for the report, embedded as base64 PNGs."""

from __future__ import annotations

import base64
import html
import io
import math

import matplotlib

matplotlib.use("Agg")  # headless: the report is written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


MARGIN_X, MARGIN_Y = 0.12, 0.08  # scatter margins, as fractions of the data span


def ci_half_width(std, n: int):
    """Half-width of the 95 % Student-t interval of a mean of ``n`` values with standard
    deviation ``std`` (None below two values)."""
    import math

    from scipy import stats

    if std is None or n < 2 or (isinstance(std, float) and math.isnan(std)):
        return None
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def ci95(values) -> float:
    """Half-width of the 95 % Student-t interval of the mean of the finite ``values``
    (NaN below two)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    half = ci_half_width(float(v.std(ddof=1)) if len(v) > 1 else None, len(v))
    return float("nan") if half is None else half


def mean_ci_text(values, digits: int = 3) -> str:
    """"mean ± half-width" of the finite ``values`` (the mean alone below two)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    mean = float(v.mean()) if len(v) else float("nan")
    half = ci95(v)
    return f"{mean:.{digits}f}" if not np.isfinite(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def png_img(fig, alt: str) -> str:
    """An ``<img>`` tag holding the figure as a base64 PNG (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<img class="plot" alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{data}">')


def point_label(row: pd.Series, keys: list[str]) -> str:
    # The last part of each dotted key is enough on a plot (model.name -> name=...).
    if not keys:
        return "all"
    if len(keys) == 1:
        return str(row[keys[0]])
    shown = [k for k in keys if not _nan(row[k])]  # a param only some grid points set
    if len(shown) == 1 and shown[0].endswith(".name"):
        return str(row[shown[0]])
    return ", ".join(f"{k.split('.')[-1]}={row[k]}" if not k.endswith(".name") else
                     str(row[k]) for k in shown)


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both axes (lower x, higher y),
    ordered by x. Hand-written: a sort and a running maximum, no library needed."""
    order = np.lexsort((-y, x))  # by x, best y first among equal x
    front, best_y = [], -np.inf
    for i in order:
        if y[i] > best_y:
            front.append(i)
            best_y = y[i]
    return np.asarray(front, dtype=int)


NUMBERED_ABOVE = 8


def scatter_with_errorbars(points: pd.DataFrame, keys: list[str], x: str, y: str,
                           xlabel: str, ylabel: str, title: str):
    """One point per grid point at the seed mean, error bars = std over seeds, and the
    Pareto front (the best accuracy reachable at each level of disparity) drawn through
    the non-dominated points."""
    fig, ax = plt.subplots(figsize=(8.5, 5.6))
    cmap = plt.get_cmap("tab10" if len(points) <= 10 else "tab20")
    xs = points[f"{x}_mean"].to_numpy(dtype=float)
    ys = points[f"{y}_mean"].to_numpy(dtype=float)
    labels = [point_label(row, keys) for _, row in points.iterrows()]
    # Beyond NUMBERED_ABOVE points the markers carry numbers, explained in the legend,
    # instead of overlapping text labels.
    numbered = len(points) > NUMBERED_ABOVE
    tags = [str(i + 1) for i in range(len(labels))] if numbered else labels
    offsets = _label_offsets(xs, ys, tags)
    finite_x = xs[np.isfinite(xs)]
    x_split = (finite_x.min() + 0.6 * np.ptp(finite_x)) if finite_x.size else np.inf
    for i, (_, row) in enumerate(points.iterrows()):
        xerr = row[f"{x}_std"]
        yerr = row[f"{y}_std"]
        label = tags[i]
        ax.errorbar(xs[i], ys[i],
                    xerr=None if _nan(xerr) else xerr, yerr=None if _nan(yerr) else yerr,
                    fmt="o", ms=8, capsize=4, color=cmap(i % cmap.N),
                    label=(f"{i + 1}: " if numbered else "") + f"{labels[i]} (n={int(row['n'])})")
        if len(points) > 1:
            # points in the right part of the plot are labelled on their left, so no label
            # runs past the axes into the legend beside them
            left = bool(np.isfinite(xs[i]) and xs[i] > x_split)
            ax.annotate(label, (xs[i], ys[i]), xytext=(-9 if left else 9, offsets[i]),
                        textcoords="offset points", fontsize=7, color=cmap(i % cmap.N),
                        ha="right" if left else "left")
    finite = np.isfinite(xs) & np.isfinite(ys)
    if finite.sum() >= 2:
        idx = np.flatnonzero(finite)[pareto_front(xs[finite], ys[finite])]
        # drawn above the error bars, with the front's points ringed, so it stays visible
        ax.plot(xs[idx], ys[idx], "-", color="black", lw=1.6, alpha=0.75, zorder=3,
                label="Pareto front (ringed points)", drawstyle="steps-post")
        ax.plot(xs[idx], ys[idx], "o", ms=15, mfc="none", mec="black", mew=1.4, zorder=4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.margins(x=MARGIN_X, y=MARGIN_Y)  # room for the point labels
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), framealpha=0.8)
    ax.annotate("better: up and left", xy=(0.01, 0.01), xycoords="axes fraction",
                fontsize=8, color="gray")
    return fig


def grouped_bars(values: pd.DataFrame, errors: pd.DataFrame | None, ylabel: str, title: str):
    """Bars per row of ``values`` (a grid point), one colour per column (a group)."""
    n_rows, n_cols = values.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * n_rows + 3), 4.2))
    width = 0.8 / max(1, n_cols)
    xs = np.arange(n_rows)
    for j, col in enumerate(values.columns):
        err = None if errors is None else errors[col].fillna(0).to_numpy()
        ax.bar(xs + j * width - 0.4 + width / 2, values[col].to_numpy(), width,
               yerr=err, capsize=3, label=str(col))
    ax.set_xticks(xs, [str(i) for i in values.index], rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    # outside the axes: a legend inside would sit on top of some bar
    ax.legend(fontsize=8, title="group", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _label_offsets(xs: np.ndarray, ys: np.ndarray, labels: list[str]) -> list[float]:
    """Vertical offsets (in points) that keep the point labels from overlapping.

    Greedy, in axes-fraction units: each label is a box running right from its point; try
    the nearest free line above or below. Hand-written: matplotlib has no label placer.
    """
    def frac(v):
        finite = v[np.isfinite(v)]
        lo = finite.min() if finite.size else 0.0
        width = float(np.ptp(finite)) if finite.size else 0.0
        return (v - lo) / (width if width > 0 else 1.0)

    # where the data sits inside the axes, given the margins the scatter sets
    fx = (frac(xs) + MARGIN_X) / (1 + 2 * MARGIN_X)
    fy = (frac(ys) + MARGIN_Y) / (1 + 2 * MARGIN_Y)
    line, char = 0.032, 0.0095  # one 7-pt text line / character, as a fraction of the axes
    placed: list[tuple[float, float, float, float]] = []
    offsets = []
    for i, label in enumerate(labels):
        x0, x1 = fx[i] + 0.01, fx[i] + 0.01 + char * len(label)
        for k in (0, -1, 1, -2, 2, -3, 3, -4, 4):
            y0 = fy[i] + 0.01 + k * line
            if not any(x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y0 + line
                       for bx0, bx1, by0, by1 in placed):
                break
        placed.append((x0, x1, y0, y0 + line))
        offsets.append(4 + k * 9)
    return offsets


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
