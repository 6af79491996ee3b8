#!/usr/bin/env python
"""The four claims of the MinDiff over-parameterization study (Veldanda et al.), decided
from a finished run of ``experiments/mindiff_overparam.yaml``:

    .venv/bin/python scripts/mindiff_claims.py runs/mindiff_overparam

Prints, per dataset, the numbers each claim rests on (means over seeds with 95 %
Student-t intervals) in Markdown, as the README quotes them:

1. MinDiff improves fairness for under-parameterized models: the test FPR gap of ERM and
   MinDiff at the narrowest widths;
2. ...and is ineffective for over-parameterized ones, whose training loss is ~0 and whose
   *training* gap is closed (the "illusion of fairness"): the same at the widest width;
3. under-parameterized MinDiff is sensitive to the batch size: its gap across batch sizes
   at the narrow widths, beside ERM's, with TF-MR's separate MinDiff stream and with the
   MinDiff rows taken from the training batch;
4. L2, early stopping and flooding make wide MinDiff models fair again, fairer than the
   narrow ones: the widest width's gap with each regularizer against MinDiff's best
   narrow gap.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from scipy import stats

from trustlab.experiments import load_results

GAP = "false_positive_rate_difference"


def ci(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return (float(v.mean()) if len(v) else float("nan")), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def fmt(values) -> str:
    mean, half = ci(values)
    return f"{mean:.3f} ± {half:.3f}"


def variant(p: dict) -> str:
    """A short name for a trial's method + regularizer."""
    if p["method.name"] == "erm":
        name = "ERM"
    else:
        name = f"MinDiff {p['method.params.weight']:g}"
        if p.get("method.params.weight_decay"):
            name += " + L2"
        if p.get("training.flooding") is not None:
            name += " + flooding"
        if p.get("training.early_stopping.metric"):
            name += " + early stopping"
        if p.get("method.params.stream") == "in_batch":
            name += " (in-batch)"
    return name


def frame(directory: str) -> pd.DataFrame:
    results = load_results(directory)
    rows = []
    for t in results.ok():
        p, m = t["params"], t["metrics"]
        rows.append({"dataset": p["dataset.name"], "width": p["model.params.width"],
                     "batch": p["training.batch_size"], "variant": variant(p),
                     "gap": m[GAP], "train_gap": m[f"train.{GAP}"],
                     "train_loss": m["train.log_loss"], "error": 1 - m["accuracy"]})
    return pd.DataFrame(rows)


def main(directory: str) -> None:
    f = frame(directory)
    for dataset, d in f.groupby("dataset", sort=False):
        widths = sorted(d["width"].unique())
        narrow = [int(w) for w in widths[:2]]
        std = d[d["batch"] == 64]
        print(f"\n### {dataset}\n")
        print("| width | variant | test FPR gap | train FPR gap | train log loss | test error |")
        print("| --- | --- | --- | --- | --- | --- |")
        for (w, v), part in std.groupby(["width", "variant"], sort=True):
            print(f"| {w} | {v} | {fmt(part['gap'])} | {fmt(part['train_gap'])} | "
                  f"{fmt(part['train_loss'])} | {fmt(part['error'])} |")
        if d["batch"].nunique() < 2:
            continue
        print(f"\nbatch size at widths {narrow} (test FPR gap, mean test error):\n")
        print("| width | variant | " + " | ".join(f"batch {b}" for b in
                                                sorted(d['batch'].unique())) + " |")
        print("| --- | --- |" + " --- |" * d["batch"].nunique())
        for w in narrow:
            for v in ("ERM", "MinDiff 1.5", "MinDiff 1.5 (in-batch)"):
                cells = []
                for b in sorted(d["batch"].unique()):
                    part = d[(d["width"] == w) & (d["variant"] == v) & (d["batch"] == b)]
                    cells.append(f"{fmt(part['gap'])} (error {part['error'].mean():.3f})"
                                 if len(part) else "-")
                print(f"| {w} | {v} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/mindiff_overparam")
