"""Audit speed: trustlab.audit vs fairlearn MetricFrame on the same data, same process.

Both compute accuracy, selection rate, TPR and FPR per group (10 groups) plus the overall
values; trustlab additionally derives every other group-fairness metric from the same counts.

    .venv/bin/python bench/bench_metrics.py            # 1M and 10M rows
    .venv/bin/python bench/bench_metrics.py --rows 1000000 --repeats 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import accuracy_score

from trustlab import audit


def make_data(n: int, n_groups: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # predictions agree with the label 80% of the time, with a group-dependent bias
    g = rng.integers(0, n_groups, n)
    flip = rng.random(n) < 0.15 + 0.01 * g
    p = np.where(flip, 1 - y, y)
    groups = np.array([f"group_{i}" for i in range(n_groups)], dtype=object)[g]
    return y, p, groups


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(n: int, n_groups: int, repeats: int, peer_repeats: int) -> dict:
    y, p, groups = make_data(n, n_groups)
    t_ours, ours = best_of(lambda: audit(y, p, groups), repeats)

    def peer():
        return MetricFrame(
            metrics={"accuracy": accuracy_score, "selection_rate": selection_rate,
                     "tpr": true_positive_rate, "fpr": false_positive_rate},
            y_true=y, y_pred=p, sensitive_features=groups)

    t_peer, frame = best_of(peer, peer_repeats)
    # the two must agree, or the timing means nothing
    for key, row in frame.by_group.iterrows():
        for metric in ("accuracy", "selection_rate", "tpr", "fpr"):
            assert abs(ours.by_group[str(key)][metric] - row[metric]) < 1e-9
    return {"rows": n, "groups": n_groups, "trustlab_s": t_ours, "fairlearn_s": t_peer,
            "speedup": t_peer / t_ours}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--groups", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--peer-repeats", type=int, default=1)
    args = ap.parse_args()
    print(f"{'rows':>11} {'groups':>6} {'trustlab (s)':>13} {'fairlearn (s)':>14} {'speedup':>9}")
    for n in args.rows:
        r = run(n, args.groups, args.repeats, args.peer_repeats)
        print(f"{r['rows']:>11,} {r['groups']:>6} {r['trustlab_s']:>13.4f} "
              f"{r['fairlearn_s']:>14.2f} {r['speedup']:>8.0f}x", flush=True)


if __name__ == "__main__":
    main()
