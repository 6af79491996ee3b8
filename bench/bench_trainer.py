"""The deep training loop's overhead: trustlab's ``train()`` against a bare PyTorch loop.

Same network (an MLP, built from the same seed), same data (colored_mnist's training
rows), same optimizer (Adam), batch size, shuffling and number of epochs, in the same
process and thread budget. The bare loop is what a PyTorch user writes: a ``DataLoader``
over a ``TensorDataset``, forward, cross-entropy, backward, step. trustlab's loop is
timed twice: with its per-epoch evaluation off (``eval_train=False``, no validation
split: the loop itself) and as the ``deep`` kind runs it (accuracy and worst-group
accuracy of the training rows after every epoch).

    .venv/bin/python bench/bench_trainer.py [--epochs 5] [--width 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from trustlab.data import load_dataset
from trustlab.training.deep import build_method, split_tensors, train


def bare_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
              batch_size: int, lr: float, seed: int) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            optimizer.step()


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("colored_mnist", seed=0)
    data = split_tensors(ds, "train", group_column="group")
    kw = {"model_params": {"width": args.width}, "hparams": {"lr": 1e-3}, "seed": 0,
          "device": "cpu"}

    def trustlab_loop(eval_train: bool):
        method = build_method("erm", "mlp", data, **kw)
        train(method, data, epochs=args.epochs, batch_size=args.batch_size, seed=0,
              device="cpu", eval_train=eval_train)

    def bare():
        method = build_method("erm", "mlp", data, **kw)  # the same initial weights
        bare_loop(method.model, data.x, data.y, epochs=args.epochs,
                  batch_size=args.batch_size, lr=1e-3, seed=0)

    t_bare = best_of(args.repeats, bare)
    t_loop = best_of(args.repeats, lambda: trustlab_loop(False))
    t_kind = best_of(args.repeats, lambda: trustlab_loop(True))
    out = {"rows": len(data), "epochs": args.epochs, "width": args.width,
           "batch_size": args.batch_size, "threads": args.threads,
           "bare_pytorch_s": round(t_bare, 3), "trustlab_loop_s": round(t_loop, 3),
           "trustlab_loop_with_epoch_eval_s": round(t_kind, 3),
           "ratio_loop": round(t_loop / t_bare, 3),
           "ratio_with_epoch_eval": round(t_kind / t_bare, 3)}
    if args.json:
        print(json.dumps(out))
        return
    print(f"{out['rows']} rows x {args.epochs} epochs, MLP width {args.width}, batch "
          f"{args.batch_size}, {args.threads} threads (best of {args.repeats})")
    print(f"  bare PyTorch loop          {t_bare:7.3f} s")
    print(f"  trustlab train()           {t_loop:7.3f} s   ratio {t_loop / t_bare:.3f}")
    print(f"  + per-epoch train eval     {t_kind:7.3f} s   ratio {t_kind / t_bare:.3f}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
