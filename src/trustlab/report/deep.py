"""Report sections of the deep kind: training curves per grid point (mean over seeds).

The curves come from each trial's ``history.json`` artifact. The training loss is shown
on its own panel because MinDiff's "illusion of fairness" lives there: once an
over-parameterized model drives the training loss to ~0, the fairness penalty has
nothing left to act on.
"""

from __future__ import annotations

from trustlab.report import ReportContext, Section
from trustlab.report.artifacts import ArtifactReader

CURVES = (("train_loss", "training loss"),
          ("train_worst_group_accuracy", "worst-group accuracy (train)"),
          ("val_worst_group_accuracy", "worst-group accuracy (validation)"))


def _histories(results, reader: ArtifactReader) -> dict[str, list[list[dict]]]:
    """Grid-point label -> the per-epoch records of each of its ok trials."""
    from trustlab.report.plots import point_label

    frame = results.frame()
    if frame.empty:
        return {}
    keys = results.grid_keys
    out: dict[str, list[list[dict]]] = {}
    for _, row in frame[frame["status"] == "ok"].iterrows():
        history = reader.json(row["trial_id"], "history.json")
        epochs = history.get("epochs") if history is not None else None
        if isinstance(epochs, list) and epochs and all(isinstance(e, dict) for e in epochs):
            out.setdefault(point_label(row, keys), []).append(epochs)
    return out


def training_curves_section(results, ctx: ReportContext) -> Section | None:
    import matplotlib.pyplot as plt
    import numpy as np

    from trustlab.report.plots import png_img

    reader = ArtifactReader(results.directory)
    histories = _histories(results, reader)
    panels = [(m, title) for m, title in CURVES
              if any(m in e for runs in histories.values() for run in runs for e in run)]
    if not histories or not panels:
        return Section("Training curves", reader.note()) if reader.unreadable else None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(histories) <= 10 else "tab20")
    for ax, (metric, title) in zip(axes[0], panels):
        for i, (label, runs) in enumerate(histories.items()):
            length = min(len(r) for r in runs)  # early stopping may end seeds apart
            values = np.array([[e.get(metric, np.nan) for e in r[:length]] for r in runs],
                              dtype=float)
            if np.all(np.isnan(values)):
                continue
            mean = np.nanmean(values, axis=0)
            epochs = np.arange(1, length + 1)
            ax.plot(epochs, mean, marker="o", ms=3, color=cmap(i % cmap.N), label=label)
            if len(runs) > 1:
                std = np.nanstd(values, axis=0, ddof=1)
                ax.fill_between(epochs, mean - std, mean + std, color=cmap(i % cmap.N),
                                alpha=0.15)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    note = ("<p>Mean over seeds per grid point (band: ± one standard deviation), from each "
            "trial's <code>history.json</code>.</p>")
    return Section("Training curves", note + png_img(fig, "training curves") + reader.note())
