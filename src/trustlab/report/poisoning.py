"""Report sections of the poisoning kind (Attack4Good): accuracy vs fairness gap before
and after poisoning, and the outer optimization's best-so-far trace."""

from __future__ import annotations

from trustlab.report import ReportContext, Section
from trustlab.report.artifacts import ArtifactReader


def _ok_frame(results):
    frame = results.frame()
    if frame.empty:
        return frame
    return frame[frame["status"] == "ok"]


def _objectives(results) -> dict[str, str]:
    """trial id -> the attack's objective (default fpr_difference)."""
    return {t["trial_id"]: t["params"].get("attack.objective", "fpr_difference")
            for t in results.ok()}


LEAKY_TAG = " [LEAKY: searched on test]"


def _label(row, keys) -> str:
    """The grid point's label, tagged when its search was scored on the test split."""
    from trustlab.report.plots import point_label

    label = point_label(row, keys) if keys else "all"
    return label + (LEAKY_TAG if row.get("protocol_leaky", 0) == 1 else "")


def leak_warning(results) -> str:
    """A warning paragraph when some trials used the seed's leaky protocol ('' if none)."""
    ok = _ok_frame(results)
    if ok.empty or "protocol_leaky" not in ok.columns or not (ok["protocol_leaky"] == 1).any():
        return ""
    n = int((ok["protocol_leaky"] == 1).sum())
    return (f'<p class="bad"><b>{n} trial(s) use the Attack4Good protocol: their search was '
            "scored on the test split, so their test numbers are not an honest estimate "
            f"(marked{LEAKY_TAG}).</b> Compare them with the leak-free trials.</p>")


def before_after_section(results, ctx: ReportContext) -> Section | None:
    """One arrow per grid point from the clean victim (seed mean) to the poisoned one."""
    from trustlab.report.plots import plt, png_img

    ok = _ok_frame(results)
    if ok.empty or "clean_accuracy" not in ok.columns:
        return None
    keys = results.grid_keys
    objective = ok["trial_id"].map(_objectives(results))
    parts = []
    for obj in sorted(objective.unique()):
        rows = ok[objective == obj]
        cols = ["clean_accuracy", "poisoned_accuracy", f"clean_{obj}", f"poisoned_{obj}"]
        if any(c not in rows.columns for c in cols):
            continue
        labels = rows.apply(lambda r: _label(r, keys), axis=1)
        means = rows[cols].groupby(labels.to_numpy(), sort=False).mean()
        counts = rows.groupby(labels.to_numpy(), sort=False).size()
        fig, ax = plt.subplots(figsize=(8.5, 5.6))
        cmap = plt.get_cmap("tab10" if len(means) <= 10 else "tab20")
        for i, (label, m) in enumerate(means.iterrows()):
            color = cmap(i % cmap.N)
            x0, y0 = m[f"clean_{obj}"], m["clean_accuracy"]
            x1, y1 = m[f"poisoned_{obj}"], m["poisoned_accuracy"]
            ax.plot([x0], [y0], "o", mfc="none", mec=color, ms=9)
            ax.plot([x1], [y1], "o", color=color, ms=9,
                    label=f"{label} (n={int(counts[label])})")
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", color=color, lw=1.5))
        ax.set_xlabel(f"test {obj} (lower is fairer)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"Before (hollow) → after (filled) poisoning, mean over seeds: {obj}")
        ax.grid(True, alpha=0.3)
        ax.margins(0.15)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        parts.append(png_img(fig, f"accuracy vs {obj} before and after poisoning"))
    if not parts:
        return None
    note = ("<p>Each arrow goes from the clean victim to the victim retrained on the "
            "training data plus the best poison the attack found (seed means, test split). "
            "An arrow pointing left is a fairer model.</p>")
    return Section("Fairness poisoning: before → after",
                   leak_warning(results) + note + "\n".join(parts))


def trace_section(results, ctx: ReportContext) -> Section | None:
    """Best-so-far validation objective against the number of victim evaluations."""
    import numpy as np

    from trustlab.report.plots import plt, png_img

    ok = _ok_frame(results)
    if ok.empty:
        return None
    keys = results.grid_keys
    curves: dict[str, list[np.ndarray]] = {}
    cleans: dict[str, list[float]] = {}
    optimizers: dict[str, str] = {}
    reader = ArtifactReader(results.directory)
    for _, row in ok.iterrows():
        trace = reader.json(row["trial_id"], "trace.json")
        if trace is None:
            continue
        try:
            values = np.array([e["objective"] for e in trace.get("evaluations", [])],
                              dtype=float)
            clean = float(trace["clean_validation_objective"])
        except (KeyError, TypeError, ValueError) as exc:
            reader.unreadable.append(f"trials/{row['trial_id']}/trace.json (malformed: {exc!r})")
            continue
        if values.size == 0:
            continue
        label = _label(row, keys)
        curves.setdefault(label, []).append(np.minimum.accumulate(values))
        cleans.setdefault(label, []).append(clean)
        optimizers[label] = trace.get("optimizer", "bayesian")
    if not curves:
        return (Section("Fairness poisoning: optimization trace", reader.note())
                if reader.unreadable else None)
    fig, ax = plt.subplots(figsize=(8.5, 5.0))
    cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for i, (label, runs) in enumerate(curves.items()):
        length = min(len(r) for r in runs)
        values = np.stack([r[:length] for r in runs])
        mean = values.mean(axis=0)
        steps = np.arange(1, length + 1)
        color = cmap(i % cmap.N)
        style = {"random": "--", "gradient": ":"}.get(optimizers[label], "-")
        ax.plot(steps, mean, style, color=color, lw=1.8, label=label)
        if len(runs) > 1:
            std = values.std(axis=0, ddof=1)
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.12)
        ax.axhline(np.mean(cleans[label]), color=color, lw=0.8, alpha=0.5)
    ax.set_xlabel("victim evaluations")
    ax.set_ylabel("best validation objective so far")
    ax.set_title("Outer optimization (mean over seeds; thin lines: clean victim)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    note = ("<p>From each trial's <code>trace.json</code>: the lowest validation objective "
            "found after each refit of the victim (bayesian: solid, random: dashed, "
            "gradient: dotted). Same budget for every optimizer. TPE's first 10 "
            "evaluations are its random start-up draws, the same as the random sampler's "
            "with the same seed, so the two curves agree until TPE starts modelling.</p>")
    return Section("Fairness poisoning: optimization trace",
                   note + png_img(fig, "optimization trace") + reader.note())


def budget_section(results, ctx: ReportContext) -> Section | None:
    """Test gap and accuracy against the poison budget (``attack.n_points`` as a grid
    axis): mean and 95 % Student-t interval over seeds, clean victim beside the poisoned
    one."""
    import numpy as np

    from trustlab.report.plots import ci95, plt, png_img

    ok = _ok_frame(results)
    key = "attack.n_points"
    if ok.empty or key not in results.grid_keys or ok[key].nunique() < 2:
        return None
    objective = next(iter(_objectives(results).values()), "fpr_difference")
    budgets = sorted(ok[key].astype(int).unique())

    def mean_ci(values):
        half = ci95(values)
        return np.mean(values), (half if np.isfinite(half) else 0.0)  # no band for one seed

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (metric, title) in zip(axes, ((objective, f"test {objective}"),
                                          ("accuracy", "test accuracy"))):
        for which, style in (("clean", "--"), ("poisoned", "-")):
            col = f"{which}_{metric}"
            stats_ = [mean_ci(ok.loc[ok[key].astype(int) == b, col]) for b in budgets]
            m = np.array([s[0] for s in stats_])
            h = np.array([s[1] for s in stats_])
            ax.plot(budgets, m, style, marker="o", label=which)
            ax.fill_between(budgets, m - h, m + h, alpha=0.15)
        ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.set_xlabel("poison rows (n_points)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    n = int(ok.groupby(ok[key].astype(int)).size().min())
    note = (f"<p>Mean over seeds (n = {n} per budget) with 95 % Student-t intervals; the "
            "dashed line is the clean victim of the same seeds.</p>")
    return Section("Fairness poisoning: budget curve",
                   leak_warning(results) + note + png_img(fig, "poisoning budget curve"))
