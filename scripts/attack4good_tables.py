#!/usr/bin/env python
"""The Attack4Good generalization study's tables, from finished runs of
``experiments/attack4good_generalization.yaml`` (and optionally
``experiments/attack4good_budget.yaml``):

    .venv/bin/python scripts/attack4good_tables.py runs/attack4good-generalization \\
        [runs/attack4good-budget]

Per victim and variant (optimizer, robust objective, protocol): the test FPR gap clean ->
poisoned, its relative cut (mean of the per-seed cuts with a 95 % Student-t interval),
the accuracy change, the validation objective's cut and the victim refits spent — and how
much of the leaky protocol's test cut the leak explains. Markdown, as the README quotes.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from trustlab.experiments import load_results
from trustlab.report.plots import ci95


def ci(values) -> tuple[float, float]:
    return float(np.mean(values)), ci95(values)


def fmt(values, pct: bool = False, digits: int = 4) -> str:
    m, h = ci(values)
    if pct:
        return f"{100 * m:+.1f} % ± {100 * h:.1f}"
    return f"{m:+.{digits}f} ± {h:.{digits}f}"


def variant(row) -> str:
    if row.get("protocol_leaky") == 1:
        return "attack4good protocol (LEAKY), bayesian"
    robust = row.get("attack.robust.folds")
    if isinstance(robust, (int, float)) and not pd.isna(robust):
        return (f"robust ({int(row['attack.robust.folds'])} folds x "
                f"{int(row['attack.robust.refits'])} refits), bayesian")
    return f"plain, {row['attack.optimizer']}"


def frame(directory: str) -> pd.DataFrame:
    res = load_results(directory)
    rows = []
    for t in res.ok():
        row = dict(t["params"])
        row.update(t["metrics"])
        rows.append(row)
    f = pd.DataFrame(rows)
    f["variant"] = f.apply(variant, axis=1)
    f["test_cut"] = (f["clean_fpr_difference"] - f["poisoned_fpr_difference"]) / \
        f["clean_fpr_difference"]
    f["val_cut"] = (f["clean_validation_objective"] - f["best_validation_objective"]) / \
        f["clean_validation_objective"]
    return f


def main() -> None:
    f = frame(sys.argv[1])
    print("| victim | variant | test FPR gap: clean → poisoned | test gap cut (95 % CI) | "
          "accuracy change | search's own objective cut | refits |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (victim, var), g in f.groupby(["victim.name", "variant"], sort=True):
        print(f"| {victim} | {var} | {g['clean_fpr_difference'].mean():.4f} → "
              f"{g['poisoned_fpr_difference'].mean():.4f} | {fmt(g['test_cut'], pct=True)} | "
              f"{fmt(g['accuracy_change'], pct=True)} | {fmt(g['val_cut'], pct=True)} | "
              f"{int(g['n_victim_refits'].mean())} (n = {len(g)}) |")
    print()
    for victim, g in f.groupby("victim.name"):
        leaky = g[g["variant"].str.startswith("attack4good")]["test_cut"]
        honest = g[g["variant"] == "plain, bayesian"]["test_cut"]
        if len(leaky) and len(honest):
            share = (leaky.mean() - honest.mean()) / leaky.mean() if leaky.mean() else np.nan
            print(f"- {victim}: the leaky protocol's test cut {100 * leaky.mean():.1f} % "
                  f"against {100 * honest.mean():.1f} % leak-free: the leak explains "
                  f"{100 * share:.0f} % of it")
    if len(sys.argv) > 2:
        b = frame(sys.argv[2])
        print()
        print("| n_points | test FPR gap: clean → poisoned | test gap cut | accuracy change |")
        print("| --- | --- | --- | --- |")
        for n, g in b.groupby("attack.n_points"):
            print(f"| {int(n)} | {g['clean_fpr_difference'].mean():.4f} → "
                  f"{g['poisoned_fpr_difference'].mean():.4f} | {fmt(g['test_cut'], pct=True)} "
                  f"| {fmt(g['accuracy_change'], pct=True)} |")


if __name__ == "__main__":
    main()
