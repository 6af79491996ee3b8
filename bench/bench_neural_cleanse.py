"""Neural Cleanse: one batched scan of all labels against a one-label-at-a-time scan.

The reference implementation (Wang et al. 2019) reverse-engineers one label after the
other; trustlab optimizes every label in one batched run. Both scans here run the same
optimizer, schedule and number of mini-batches per label (early stop off), on the same
BadNets-backdoored ``badnets_cnn`` trained on the 5,000 bundled MNIST digits, in the same
process and with the same thread budget. No maintained library ships Neural Cleanse for
plain PyTorch models (ART's is tied to its Keras classifiers), so the peer is the
reference code's loop structure.

    .venv/bin/python bench/bench_neural_cleanse.py [--steps 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from trustlab.attacks.backdoor import build_backdoor, make_trigger
from trustlab.data import load_dataset
from trustlab.defenses.neural_cleanse import NeuralCleanse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="mini-batches per label")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("mnist", seed=0)
    x = np.asarray(ds.X, dtype=np.float32)
    trigger = make_trigger("patch", x.shape[1:], size=4, position="bottom_right")
    case = build_backdoor(x, ds.y, ds.train_idx, ds.test_idx, trigger=trigger, target=0,
                          poison_rate=0.1, clean_fraction=0.1, network="badnets_cnn",
                          training={"device": "cpu"}, seed=0, n_classes=10)
    # early stop off: both scans run exactly `steps` mini-batches per label
    params = {"steps": args.steps, "early_stop_patience": 10 ** 6, "device": "cpu"}
    t0 = time.perf_counter()
    NeuralCleanse(seed=0, **params).fit(case.model, case.x_clean, 10)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(10):
        NeuralCleanse(seed=0, **params).fit(case.model, case.x_clean, 10, labels=[k])
    sequential = time.perf_counter() - t0
    row = {"labels": 10, "steps_per_label": args.steps, "threads": args.threads,
           "batched_s": round(batched, 2), "sequential_s": round(sequential, 2),
           "speedup": round(sequential / batched, 2)}
    if args.json:
        print(json.dumps(row))
        return
    print(f"Neural Cleanse, 10 labels x {args.steps} mini-batches, {args.threads} threads")
    print(f"  batched (trustlab):       {batched:6.1f} s")
    print(f"  one label at a time:      {sequential:6.1f} s")
    print(f"  ratio sequential/batched: {sequential / batched:6.2f}x")


if __name__ == "__main__":
    main()
