#!/usr/bin/env python
"""The minority-class studies' tables (means with 95 % Student-t intervals over seeds), as
the README quotes them:

    .venv/bin/python scripts/minority_tables.py runs/minority-mnist [runs/minority-mnist-defenses]

1. the interclass-bias study: minority-class accuracy per class and percentage, and the
   balanced baseline's accuracy of that class;
2. the defenses at 5 %: per class, the balanced baseline, plain ERM on the minority and
   each defense, and the share of the lost accuracy each defense restores (with the rank
   correlation between how much a class loses and how much it gets back).
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import stats

from trustlab.experiments import load_results
from trustlab.report.minority_class import NO_DEFENSE, _table
from trustlab.report.plots import mean_ci_text


def ci(values) -> str:
    return mean_ci_text(values, digits=2)


def main() -> None:
    f = _table(load_results(sys.argv[1]))
    base = f[f["full"]]
    runs = f[~f["full"]].assign(label=lambda x: x["minority_label"].astype(int))
    pcts = sorted(runs["pct"].unique())
    print("| class | balanced | " + " | ".join(f"{p:g} %" for p in pcts) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in pcts) + " |")
    for k in sorted(runs["label"].unique()):
        cells = [ci(runs[(runs["label"] == k) & (runs["pct"] == p)]["minority_accuracy"])
                 for p in pcts]
        print(f"| {k} | {ci(base[f'recall_by_index.{k}'])} | " + " | ".join(cells) + " |")
    if len(sys.argv) < 3:
        return
    f = _table(load_results(sys.argv[2]))
    base = f[f["full"]]
    runs = f[~f["full"]].assign(label=lambda x: x["minority_label"].astype(int))
    defenses = [NO_DEFENSE] + sorted(d for d in runs["defense"].unique() if d != NO_DEFENSE)
    print()
    print("| class | balanced | " + " | ".join(defenses) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in defenses) + " |")
    lost, back = {}, {d: {} for d in defenses[1:]}
    for k in sorted(runs["label"].unique()):
        full = base[f"recall_by_index.{k}"].mean()
        row = [ci(runs[(runs["label"] == k) & (runs["defense"] == d)]["minority_accuracy"])
               for d in defenses]
        erm = runs[(runs["label"] == k) & (runs["defense"] == NO_DEFENSE)]["minority_accuracy"]
        lost[k] = full - erm.mean()
        for d in defenses[1:]:
            acc = runs[(runs["label"] == k) & (runs["defense"] == d)]["minority_accuracy"]
            back[d][k] = (acc.mean() - erm.mean()) / lost[k] if lost[k] > 0.01 else np.nan
        print(f"| {k} | {ci(base[f'recall_by_index.{k}'])} | " + " | ".join(row) + " |")
    print()
    for d in defenses[1:]:
        ks = [k for k in lost if np.isfinite(back[d][k])]
        rho = stats.spearmanr([lost[k] for k in ks], [back[d][k] for k in ks]).statistic
        mean_back = np.mean([back[d][k] for k in ks])
        print(f"- {d}: restores {100 * mean_back:.0f} % of the lost accuracy on average; "
              f"Spearman rho(loss, share restored) = {rho:+.2f}")


if __name__ == "__main__":
    main()
