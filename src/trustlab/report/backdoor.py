"""Report section of the backdoor kind: the before/after table of clean accuracy,
attack success rate and robust accuracy per defense, and for each Neural Cleanse run the
reversed triggers (one image per label, flagged labels outlined in red) next to the L1
norms per label with the anomaly threshold (the L1 below which the anomaly index exceeds
the threshold: ``median - threshold * 1.4826 * MAD``).
"""

from __future__ import annotations

import html

import numpy as np

from trustlab.report import ReportContext, Section
from trustlab.report.artifacts import ArtifactReader

# What Neural Cleanse's nc_triggers.npz holds (NeuralCleanse.triggers_npz).
NC_TRIGGER_KEYS = ("masks", "patterns", "l1", "anomaly_index", "flagged", "target")

METRICS = ("clean_accuracy", "attack_success_rate", "robust_accuracy")


def trigger_grid_figure(masks, patterns, l1, anomaly_index, flagged, target=None):
    """One panel per label: the reversed trigger ``mask * pattern`` (grey images)."""
    import matplotlib.pyplot as plt

    import trustlab.report.plots  # noqa: F401  (selects the headless Agg backend first)

    k = len(masks)
    cols = min(k, 10)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.45 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(k):
        ax = axes.ravel()[i]
        img = np.asarray(masks[i])[None] * np.asarray(patterns[i])  # (C, H, W)
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
        colour = "red" if i in set(flagged) else "0.7"
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(3 if i in set(flagged) else 0.8)
        mark = " (target)" if target is not None and i == int(target) else ""
        ax.set_title(f"{i}{mark}\nL1 {l1[i]:.1f}  AI {anomaly_index[i]:.1f}", fontsize=7,
                     color=colour if i in set(flagged) else "black")
    fig.suptitle("Reversed triggers (mask x pattern); red = flagged", fontsize=9)
    return fig


def l1_bar_figure(l1, threshold: float, flagged, target=None, title: str = ""):
    import matplotlib.pyplot as plt

    import trustlab.report.plots  # noqa: F401  (selects the headless Agg backend first)

    l1 = np.asarray(l1, dtype=float)
    med = np.median(l1)
    mad = 1.4826 * np.median(np.abs(l1 - med))
    cut = med - threshold * mad
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    colours = ["tab:red" if i in set(flagged) else "tab:blue" for i in range(len(l1))]
    ax.bar(np.arange(len(l1)), l1, color=colours)
    ax.axhline(med, color="0.4", ls=":", lw=1, label="median")
    ax.axhline(cut, color="tab:red", ls="--", lw=1,
               label=f"anomaly index {threshold:g} (L1 {cut:.1f})")
    if target is not None:
        ax.annotate("target", (int(target), l1[int(target)]), xytext=(0, 8),
                    textcoords="offset points", ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(l1)))
    ax.set_xlabel("label")
    ax.set_ylabel("mask L1 norm")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


def _table(results) -> str:
    from trustlab.report.plots import point_label

    frame = results.frame()
    ok = frame[frame["status"] == "ok"]
    if ok.empty or "attack_success_rate" not in ok:
        return ""
    keys = results.grid_keys
    groups = ok.groupby(keys, sort=False, dropna=False) if keys else [("all", ok)]
    head = ["grid point", "n"] + [f"{m} (before)" for m in METRICS] + \
        [f"{m} (after)" for m in METRICS]
    rows = []
    for _, g in groups:
        label = point_label(g.iloc[0], keys)
        cells = [html.escape(label), str(len(g))]
        for prefix in ("", "repaired."):
            for m in METRICS:
                col = prefix + m
                if col in g and g[col].notna().any():
                    vals = g[col].dropna()
                    sd = f" ± {vals.std(ddof=1):.3f}" if len(vals) > 1 else ""
                    cells.append(f"{vals.mean():.3f}{sd}")
                else:
                    cells.append("—")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>'
            f'{"".join(rows)}</tbody></table></div>')


def _rate(values) -> str:
    values = values.dropna()
    return f"{int(values.sum())}/{len(values)}" if len(values) else "—"


def _mean(values, digits: int = 3) -> str:
    values = values.dropna()
    if not len(values):
        return "—"
    sd = f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else ""
    return f"{values.mean():.{digits}f}{sd}"


def detection_table(results) -> str:
    """Per grid point: how often the detector was right (Neural Cleanse: target flagged on
    backdoored models, any label flagged on clean ones), its sample-level ROC AUC (the
    ``<defense>.auc`` metrics), attack success and clean accuracy before/after repair, and
    the defense's time."""
    from trustlab.report.plots import point_label

    frame = results.frame()
    ok = frame[frame["status"] == "ok"]
    if ok.empty or "attack_success_rate" not in ok:
        return ""
    keys = results.grid_keys
    groups = ok.groupby(keys, sort=False, dropna=False) if keys else [("all", ok)]
    auc_cols = [c for c in ok.columns if c.endswith(".auc")]
    head = ["grid point", "n", "NC: target flagged", "NC: clean model flagged", "AUC",
            "ASR before", "ASR after", "clean acc. before", "clean acc. after",
            "defense time (s)"]
    rows = []
    for _, g in groups:
        poisoned = g["n_poison"] > 0 if "n_poison" in g else g["attack_success_rate"] > -1
        cells = [html.escape(point_label(g.iloc[0], keys)), str(len(g))]
        if "nc.flagged_target" in g:
            cells.append(_rate(g.loc[poisoned, "nc.flagged_target"]))
            cells.append(_rate((g.loc[~poisoned, "nc.n_flagged"] > 0).astype(float)))
        else:
            cells += ["—", "—"]
        aucs = g[auc_cols].mean(axis=1) if auc_cols else g["attack_success_rate"] * np.nan
        cells.append(_mean(aucs))
        for col in ("attack_success_rate", "repaired.attack_success_rate", "clean_accuracy",
                    "repaired.clean_accuracy"):
            cells.append(_mean(g[col]) if col in g else "—")
        cells.append(_mean(g["defense_time_s"], 1) if "defense_time_s" in g else "—")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>'
            f'{"".join(rows)}</tbody></table></div>')


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str):
    """ROC curves of one detector, one per attack: ``{label: (scores, is_poison)}``."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    import trustlab.report.plots  # noqa: F401  (selects the headless Agg backend first)

    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    for label, (scores, truth) in curves.items():
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, scores)
        ax.plot(fpr, tpr, lw=1.4, label=f"{label} (AUC {roc_auc_score(truth, scores):.2f})")
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1)
    ax.set_xlabel("false positive rate (clean samples flagged)")
    ax.set_ylabel("true positive rate (poisoned samples flagged)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    return fig


def _roc_parts(results, ok, keys, reader: ArtifactReader) -> list[str]:
    """One ROC figure per detector that stored ``<name>_scores.npz``, a curve per grid
    point of the other axes (each point's lowest seed)."""
    from trustlab.report.plots import png_img, point_label

    others = [k for k in keys if not k.startswith("defense.")]
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for _, row in ok.iterrows():
        folder = results.directory / "trials" / row["trial_id"]
        for path in sorted(folder.glob("*_scores.npz")):
            name = path.name[: -len("_scores.npz")]
            label = point_label(row, others) if others else "all"
            if label in curves.setdefault(name, {}):
                continue
            z = reader.npz(row["trial_id"], path.name, ("scores", "is_poison"))
            if z is not None:
                curves[name][label] = (z["scores"], z["is_poison"].astype(bool))
    parts = []
    for name, by_point in curves.items():
        parts.append(png_img(roc_figure(by_point, f"{name}: poisoned vs clean samples"),
                             f"ROC {name}"))
    return parts


def backdoor_section(results, ctx: ReportContext) -> Section | None:
    from trustlab.report.plots import png_img, point_label

    table = _table(results)
    if not table:
        return None
    intro = ("<p>Mean ± standard deviation over seeds. <em>before</em>: the backdoored "
             "model; <em>after</em>: the repaired model (unlearning, fine-pruning). Attack "
             "success rate and robust accuracy are measured on triggered test inputs whose "
             "true label is not the target.</p>")
    detection = detection_table(results)
    parts = [intro, table, "<h3>Detection</h3><p>Counts over seeds. Neural Cleanse (run by "
             "the neural_cleanse and unlearning defenses): how often the target label is "
             "flagged on backdoored models (anomaly index above the threshold, L1 below the "
             "median), and how often any label is flagged on clean models (poison rate 0). "
             "AUC: ROC AUC of a detector's per-sample scores, poisoned vs clean.</p>",
             detection]
    frame = results.frame()
    ok = frame[frame["status"] == "ok"].sort_values("seed", kind="stable")
    keys = results.grid_keys
    reader = ArtifactReader(results.directory)
    roc = _roc_parts(results, ok, keys, reader)
    if roc:
        parts.append("<h3>ROC curves of the detectors</h3><p>Training-set filters score "
                     "every training row (poisoned rows are the positives); STRIP scores "
                     "test inputs (triggered ones are the positives). One curve per "
                     "attack, its lowest seed.</p>")
        parts.extend(roc)
    shown: set[str] = set()
    for _, row in ok.iterrows():
        label = point_label(row, keys)
        if label in shown:
            continue
        z = reader.npz(row["trial_id"], "nc_triggers.npz", NC_TRIGGER_KEYS)
        if z is None:
            continue
        shown.add(label)  # one Neural Cleanse run per grid point: its lowest seed
        flagged = [int(v) for v in z["flagged"]]
        target = int(z["target"])
        thr = float(z["anomaly_threshold"]) if "anomaly_threshold" in z else 2.0
        title = f"{label}, seed {row['seed']}"
        verdict = ("the target label is flagged" if target in flagged else
                   "the target label is NOT flagged")
        ai = z["anomaly_index"][target]
        parts.append(f"<h3>Neural Cleanse: {html.escape(title)}</h3>"
                     f"<p>Flagged labels: {', '.join(map(str, flagged)) or 'none'}; "
                     f"{verdict} (target {target}, anomaly index {ai:.2f}).</p>")
        parts.append(png_img(trigger_grid_figure(z["masks"], z["patterns"], z["l1"],
                                                 z["anomaly_index"], flagged, target),
                             f"reversed triggers {title}"))
        parts.append(png_img(l1_bar_figure(z["l1"], thr, flagged, target,
                                           f"mask L1 per label ({title})"),
                             f"L1 norms {title}"))
    parts.append(reader.note())
    return Section("Backdoor: detection and repair", "".join(parts))


__all__ = ["backdoor_section", "l1_bar_figure", "trigger_grid_figure"]
