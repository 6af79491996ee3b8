"""Sweep throughput: trials/minute on local with 1 and 2 workers and on Dask with 2.

A small real tabular sweep (Adult, a quarter of the training rows, logistic regression and
XGBoost x seeds), run from scratch into a temporary directory by each executor. Wall time
includes starting the worker processes / the Dask LocalCluster, as a user would see it.
Scaling efficiency = (throughput with 2 workers / throughput with 1) / 2.

    .venv/bin/python bench/bench_sweep.py [--seeds 6] [--subsample 0.25]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from trustlab.experiments.config import build_experiment
from trustlab.experiments.executors import cpu_count
from trustlab.experiments.runner import run_experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--subsample", type=float, default=0.25)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    exp = build_experiment({
        "name": "bench-sweep", "kind": "tabular",
        "dataset": {"name": "adult", "sensitive": "sex", "privileged": "Male",
                    "subsample": args.subsample},
        "model": {"name": "logistic_regression"},
        "seeds": list(range(args.seeds)),
        "grid": {"model.name": ["logistic_regression", "xgboost"]},
    })
    n = len(exp.trials)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up, not timed: imports and the OS file cache would otherwise bill the first
        # executor measured for what every later one gets for free.
        warm = build_experiment({**exp.raw, "name": "bench-warmup", "seeds": [0]})
        run_experiment(warm, Path(tmp) / "warmup", progress=False)
        for label, executor, workers in (("local x1", "local", 1), ("local x2", "local", 2),
                                         ("dask x2", "dask", 2)):
            t0 = time.perf_counter()
            summary = run_experiment(exp, Path(tmp) / label.replace(" ", "_"),
                                     executor=executor, workers=workers, progress=False)
            wall = time.perf_counter() - t0
            if not summary.ok:
                raise SystemExit(f"{label}: {summary.failure_line()}")
            rows[label] = {"trials": n, "wall_s": round(wall, 2),
                           "trials_per_min": round(60 * n / wall, 1)}
    base = rows["local x1"]["trials_per_min"]
    for label in ("local x2", "dask x2"):
        rows[label]["scaling_efficiency"] = round(rows[label]["trials_per_min"] / base / 2, 2)
    if args.json:
        print(json.dumps({"cores": cpu_count(), "results": rows}))
        return
    print(f"{n} trials (adult, subsample {args.subsample}, logistic_regression/xgboost x "
          f"{args.seeds} seeds) on {cpu_count()} cores")
    print(f"{'executor':<10} {'wall s':>8} {'trials/min':>11} {'efficiency':>11}")
    for label, r in rows.items():
        eff = r.get("scaling_efficiency")
        print(f"{label:<10} {r['wall_s']:>8.1f} {r['trials_per_min']:>11.1f} "
              f"{'' if eff is None else f'{eff:.2f}':>11}")


if __name__ == "__main__":
    main()
