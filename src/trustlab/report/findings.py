"""The report's first section: each study's answer in a few sentences, computed from the
stored numbers (never written by hand), so a reader sees the result before any figure.

One function per built-in kind; a kind without one gets no findings block.
"""

from __future__ import annotations

import html
from typing import Callable

import numpy as np

from trustlab.report import ReportContext, Section
from trustlab.report.plots import mean_ci_text

DISPARITY_BOUND = 0.05  # "fair enough" for the tabular finding: |disparity| at most this


_fmt = mean_ci_text


def _points(results):
    """(label, rows) per grid point of the ok trials."""
    from trustlab.report.plots import point_label

    frame = results.frame()
    if frame.empty:
        return frame, []
    ok = frame[frame["status"] == "ok"]
    keys = results.grid_keys
    if not keys:
        return ok, [("all", ok)]
    labels = ok.apply(lambda r: point_label(r, keys), axis=1)
    return ok, [(label, ok[labels == label]) for label in dict.fromkeys(labels)]


def tabular(results, ctx: ReportContext) -> list[str]:
    x = ctx.x_metric
    ok, points = _points(results)
    if not points or x is None or x not in ok or "accuracy" not in ok:
        return []
    stats = [(label, rows["accuracy"].mean(), rows[x].abs().mean()) for label, rows in points]
    stats = [s for s in stats if np.isfinite(s[1]) and np.isfinite(s[2])]
    if not stats:
        return []
    fair = [s for s in stats if s[2] <= DISPARITY_BOUND]
    out = []
    best_acc = max(stats, key=lambda s: s[1])
    out.append(f"Most accurate: <b>{html.escape(best_acc[0])}</b> (accuracy {best_acc[1]:.3f}, "
               f"|{html.escape(x)}| {best_acc[2]:.3f}).")
    if fair:
        b = max(fair, key=lambda s: s[1])
        out.append(f"Best with |{html.escape(x)}| ≤ {DISPARITY_BOUND}: <b>{html.escape(b[0])}"
                   f"</b> (accuracy {b[1]:.3f}, |{html.escape(x)}| {b[2]:.3f}): "
                   f"{best_acc[1] - b[1]:.3f} accuracy for {best_acc[2] - b[2]:.3f} less "
                   "disparity.")
    else:
        least = min(stats, key=lambda s: s[2])
        out.append(f"No grid point reaches |{html.escape(x)}| ≤ {DISPARITY_BOUND}; the fairest "
                   f"is <b>{html.escape(least[0])}</b> ({least[2]:.3f}).")
    return out


def deep(results, ctx: ReportContext) -> list[str]:
    ok, points = _points(results)
    if not points or "worst_group_accuracy" not in ok:
        return []
    def rank(point):
        m = point[1]["worst_group_accuracy"].mean()
        return (not np.isfinite(m), -m if np.isfinite(m) else 0.0)

    ranked = sorted(points, key=rank)
    items = "; ".join(f"{html.escape(label)} {_fmt(rows['worst_group_accuracy'])}"
                      for label, rows in ranked[:5])
    more = f" (top 5 of {len(ranked)})" if len(ranked) > 5 else ""
    return [f"Worst-group test accuracy, mean ± 95% CI over seeds{more}: {items}."]


def minority_class(results, ctx: ReportContext) -> list[str]:
    from trustlab.report.minority_class import NO_DEFENSE, _table

    f = _table(results)
    if f.empty or "minority_accuracy" not in f:
        return []
    runs = f[~f["full"] & (f["defense"] == NO_DEFENSE)].dropna(subset=["minority_accuracy"])
    out = []
    if not runs.empty:
        pct = sorted(p for p in runs["pct"].unique() if p > 1) or sorted(runs["pct"].unique())
        at = runs[runs["pct"] == pct[0]]
        by = at.groupby("minority_label")["minority_accuracy"].mean().sort_values()
        worst = ", ".join(f"{int(k)} ({v:.2f})" for k, v in by.head(3).items())
        best = ", ".join(f"{int(k)} ({v:.2f})" for k, v in by.tail(2)[::-1].items())
        out.append(f"At {pct[0]:g}% of its rows, the classes that suffer most: <b>{worst}</b>; "
                   f"the most resilient: {best} (minority accuracy, mean over seeds).")
        absorbed = [c for c in at.columns if str(c).startswith("absorbed.")]
        shares = at.groupby("minority_label")[absorbed].mean() if absorbed else None
        if shares is not None and np.isfinite(shares.to_numpy()).any():
            k, col = np.unravel_index(np.nanargmax(shares.to_numpy()), shares.shape)
            out.append(f"Strongest absorber: class {int(shares.index[k])}'s test rows go to "
                       f"{html.escape(absorbed[col].split('.', 1)[1])} "
                       f"({shares.to_numpy()[k, col]:.0%}).")
    defended = f[~f["full"] & (f["defense"] != NO_DEFENSE)]
    if not defended.empty:
        pct = defended["pct"].min()
        base = f[~f["full"] & (f["defense"] == NO_DEFENSE) & (f["pct"] == pct)]
        gains = []
        for d, rows in defended[defended["pct"] == pct].groupby("defense"):
            gains.append((rows["minority_accuracy"].mean() - base["minority_accuracy"].mean(), d))
        gains.sort(reverse=True)
        out.append(f"Best defense at {pct:g}%: <b>{html.escape(gains[0][1])}</b> "
                   f"({gains[0][0]:+.2f} minority accuracy against plain ERM, averaged over "
                   "classes).")
    return out


def poisoning(results, ctx: ReportContext) -> list[str]:
    ok, points = _points(results)
    if not points or "clean_fpr_difference" not in ok:
        return []
    out = []
    for label, rows in points[:8]:
        cut = (rows["clean_fpr_difference"] - rows["poisoned_fpr_difference"]) \
            / rows["clean_fpr_difference"]
        leaky = (" [LEAKY: searched on test]" if "protocol_leaky" in rows
                 and (rows["protocol_leaky"] == 1).any() else "")
        out.append(f"{html.escape(label)}{leaky}: test FPR gap "
                   f"{rows['clean_fpr_difference'].mean():.4f} → "
                   f"{rows['poisoned_fpr_difference'].mean():.4f}, cut {_fmt(100 * cut, 1)} %.")
    return out


def backdoor(results, ctx: ReportContext) -> list[str]:
    """Per defense (over every attack of the sweep): repaired attack success, Neural
    Cleanse's detection count, detectors' AUC; and the attacks' success before repair."""
    ok, points = _points(results)
    if not points or "attack_success_rate" not in ok:
        return []
    poisoned = ok[ok["n_poison"] > 0] if "n_poison" in ok else ok
    if poisoned.empty:
        return []
    out = [f"Backdoored models: attack success {poisoned['attack_success_rate'].min():.3f}-"
           f"{poisoned['attack_success_rate'].max():.3f} at clean accuracy "
           f"{poisoned['clean_accuracy'].mean():.3f} (mean)."]
    if "defense.name" not in ok:
        return out
    for name, rows in poisoned.groupby("defense.name", sort=False):
        bits = []
        if "repaired.attack_success_rate" in rows and rows["repaired.attack_success_rate"].notna().any():
            bits.append(f"attack success after repair {_fmt(rows['repaired.attack_success_rate'])}")
        if "nc.flagged_target" in rows and rows["nc.flagged_target"].notna().any():
            flagged = rows["nc.flagged_target"].dropna()
            bits.append(f"Neural Cleanse flags the target on {int(flagged.sum())}/{len(flagged)} "
                        "backdoored models")
        aucs = [c for c in rows.columns if str(c).endswith(".auc") and rows[c].notna().any()]
        for c in aucs:
            bits.append(f"{html.escape(c)} {_fmt(rows[c])}")
        if bits:
            out.append(f"<b>{html.escape(str(name))}</b>: " + "; ".join(bits) + ".")
    return out


FINDINGS: dict[str, Callable] = {"tabular": tabular, "deep": deep,
                                 "minority_class": minority_class, "poisoning": poisoning,
                                 "backdoor": backdoor}


def findings_section(results, ctx: ReportContext) -> Section | None:
    fn = FINDINGS.get(results.kind)
    items = fn(results, ctx) if fn else []
    if not items:
        return None
    body = "".join(f"<li>{item}</li>" for item in items)
    return Section("Findings", f'<ul class="findings">{body}</ul>')


__all__ = ["FINDINGS", "findings_section"]
