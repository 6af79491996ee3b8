"""Victim evaluations per second of the poisoning search: trustlab's batched ask/tell
search (candidates of a batch refit concurrently on the trial's cores) against a plain
sequential optuna loop (``study.optimize``, one refit at a time) — same data, victim,
sampler, seed and budget, in the same process.

Adult (sex), 3,000 training rows as the attack4good study draws them, a random forest
victim with default hyper-parameters (the study's), random sampler (so both loops try
the very same candidates and the script can assert equal results before timing).

    .venv/bin/python bench/bench_poisoning.py [--trials 24] [--threads 2] [--batch 4]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

from trustlab.attacks.fairness_poisoning import attack, make_objective, prepare
from trustlab.data import load_dataset
from trustlab.experiments.kinds.common import subsample_rows
from trustlab.training.tabular_models import make_model


def sequential_optuna(objective, space, n_trials: int, seed: int) -> list[float]:
    """What an optuna user writes: one candidate, one refit, one score at a time."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(lambda t: objective.evaluate(space.suggest(t)).objective, n_trials=n_trials)
    return [t.value for t in study.trials]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    seed = 0
    ds = load_dataset("adult", seed=seed)
    ds = ds.with_split(subsample_rows(ds.train_idx, 3000, seed), ds.test_idx)
    data = prepare(ds, "sex", privileged="Male", val_fraction=0.3, n_points=20,
                   poison_label=1, poison_group="unprivileged", seed=seed)
    objective = make_objective(data, partial(make_model, "random_forest", {}, seed=seed),
                               objective="fpr_difference")

    t0 = time.perf_counter()
    plain = sequential_optuna(objective, data.space, args.trials, seed)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = attack(objective, data.space, optimizer="random", n_trials=args.trials, seed=seed,
                  threads=args.threads, batch_size=args.batch)
    t_ours = time.perf_counter() - t0
    assert np.allclose(plain, [e.objective for e in ours.trace]), "the two loops differ"

    print(f"{args.trials} victim refits (random forest, {len(data.fit)} + 20 rows)")
    print(f"  plain optuna, sequential      : {t_plain:6.1f} s  "
          f"{args.trials / t_plain:5.2f} evaluations/s")
    print(f"  trustlab, batch {args.batch}, {args.threads} threads : {t_ours:6.1f} s  "
          f"{args.trials / t_ours:5.2f} evaluations/s")
    print(f"  speed-up: {t_plain / t_ours:.2f}x")


if __name__ == "__main__":
    main()
