"""The streamed audit at scale: a Parquet prediction log of N rows (default 200M) x 10
dictionary-encoded groups, audited a record batch at a time — rows per second and peak
memory (the process's max RSS, measured before anything else is loaded) — and, at 1M rows with categorical groups, the in-memory
audit against fairlearn's MetricFrame in the same process (equal values asserted).

    .venv/bin/python bench/bench_audit_scale.py [--rows 200000000] [--file /tmp/log.parquet]

The file is written once (streamed, 4M rows per row group) and reused if present.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trustlab import audit
from trustlab.metrics import audit_table

GROUPS = [f"group_{i}" for i in range(10)]


def write_log(path: Path, rows: int, chunk: int = 4_000_000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    schema = pa.schema([("label", pa.int8()), ("pred", pa.int8()),
                        ("group", pa.dictionary(pa.int8(), pa.string()))])
    dictionary = pa.array(GROUPS)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            g = rng.integers(0, len(GROUPS), n, dtype=np.int8)
            y = rng.integers(0, 2, n, dtype=np.int8)
            flip = rng.random(n) < 0.15 + 0.01 * g
            p = np.where(flip, 1 - y, y).astype(np.int8)
            writer.write_table(pa.table({
                "label": y, "pred": p,
                "group": pa.DictionaryArray.from_arrays(pa.array(g), dictionary)}, schema=schema))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000_000)
    ap.add_argument("--file", type=Path, default=Path("/tmp/trustlab_audit_log.parquet"))
    args = ap.parse_args()

    # -- N rows streamed from Parquet -----------------------------------------------------------
    if not args.file.exists() or pq.ParquetFile(args.file).metadata.num_rows != args.rows:
        t0 = time.perf_counter()
        write_log(args.file, args.rows)
        print(f"wrote {args.rows:,} rows to {args.file} "
              f"({args.file.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    before = peak_rss_mb()
    t0 = time.perf_counter()
    result = audit_table(args.file, label="label", pred="pred", groups=["group"], ci=0.95)
    elapsed = time.perf_counter() - t0
    assert result.n == args.rows
    print(f"{args.rows:,} rows streamed: {elapsed:.1f} s, {args.rows / elapsed / 1e6:.1f}M "
          f"rows/s, peak RSS {peak_rss_mb():.0f} MB (before streaming {before:.0f} MB); "
          f"with 95% bootstrap CIs")

    # -- 1M rows in memory, categorical groups: trustlab vs fairlearn -------------------------
    from fairlearn.metrics import (MetricFrame, false_positive_rate, selection_rate,
                                   true_positive_rate)
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(1)
    n = 1_000_000
    y = rng.integers(0, 2, n)
    g_codes = rng.integers(0, 10, n)
    p = np.where(rng.random(n) < 0.15 + 0.01 * g_codes, 1 - y, y)
    groups = pd.Series(pd.Categorical.from_codes(g_codes, GROUPS), name="group")
    best = min(_timed(lambda: audit(y, p, groups)) for _ in range(5))
    t0 = time.perf_counter()
    mf = MetricFrame(metrics={"accuracy": accuracy_score, "selection_rate": selection_rate,
                              "tpr": true_positive_rate, "fpr": false_positive_rate},
                     y_true=y, y_pred=p, sensitive_features=groups)
    t_fl = time.perf_counter() - t0
    ours = audit(y, p, groups).by_group
    for key, row in mf.by_group.iterrows():
        for m in ("accuracy", "selection_rate", "tpr", "fpr"):
            assert abs(ours[str(key)][m] - row[m]) < 1e-9
    print(f"1M rows, categorical groups: trustlab {best:.4f} s, fairlearn {t_fl:.2f} s, "
          f"{t_fl / best:.0f}x (values equal to 1e-9)")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
