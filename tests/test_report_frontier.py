"""The Pareto front drawn on the accuracy-vs-fairness plot, against brute force."""

from __future__ import annotations

import numpy as np

from trustlab.report.plots import pareto_front


def brute_force_front(x: np.ndarray, y: np.ndarray) -> set[int]:
    front = set()
    for i in range(len(x)):
        dominated = any((x[j] <= x[i] and y[j] >= y[i]) and (x[j] < x[i] or y[j] > y[i])
                        for j in range(len(x)))
        if not dominated:
            front.add(i)
    return front


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        # few distinct values so ties are common
        x = rng.integers(0, 5, n).astype(float) / 10
        y = rng.integers(0, 5, n).astype(float) / 10
        got = pareto_front(x, y)
        expected = brute_force_front(x, y)
        # among exact duplicates only one is kept; compare by coordinates
        assert {(x[i], y[i]) for i in got} == {(x[i], y[i]) for i in expected}
        assert np.all(np.diff(x[got]) > 0) and np.all(np.diff(y[got]) > 0)
