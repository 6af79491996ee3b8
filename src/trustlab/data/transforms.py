"""Transforms that induce bias in a dataset's training split (minority classes, label bias).

Each takes a :class:`~trustlab.data.container.Dataset` and returns a new one; the input is
never modified and the test split is never touched, so a model trained on the biased
training rows is still scored on the original test distribution. All are deterministic
given ``seed``. Each appends a record of what it did to ``meta["transforms"]``.

Row selection uses imbalanced-learn's :class:`RandomUnderSampler` (its ``sample_indices_``
say which training rows survive); only the label flips of :func:`label_bias` are written
here, as no library induces label bias on a group.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from imblearn.under_sampling import RandomUnderSampler

from trustlab.data.container import Dataset
from trustlab.errors import TrustlabError


def _class_index(ds: Dataset, label: int | str, what: str = "label") -> int:
    """A class given by index or by name -> its index, validated."""
    if isinstance(label, str):
        if label in ds.class_names:
            return ds.class_names.index(label)
        if not label.isdigit():
            raise TrustlabError(f"{ds.name} has no class {label!r}; classes: "
                                f"{', '.join(ds.class_names)}")
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) \
            or not 0 <= label < ds.n_classes:
        raise TrustlabError(f"{what} must be a class index in 0..{ds.n_classes - 1} "
                            f"or a class name of {ds.name}, got {label!r}")
    return int(label)


def _with_record(ds: Dataset, record: dict[str, Any], **changes: Any) -> Dataset:
    # A fresh meta dict: dataclasses.replace would otherwise share (and let us mutate)
    # the input's.
    meta = dict(ds.meta)
    meta["transforms"] = [*ds.meta.get("transforms", []), record]
    return replace(ds, meta=meta, **changes)


def _undersample(ds: Dataset, strategy: Any, seed: int) -> np.ndarray:
    """Training row indices kept by RandomUnderSampler(strategy), sorted."""
    train = np.asarray(ds.train_idx, dtype=np.int64)
    sampler = RandomUnderSampler(sampling_strategy=strategy, random_state=seed)
    # The sampler only needs something row-shaped; the row positions stand in for X.
    sampler.fit_resample(np.arange(len(train)).reshape(-1, 1), ds.y[train])
    return np.sort(train[sampler.sample_indices_])


def subsample_class(ds: Dataset, label: int | str, target_percentage: float,
                    seed: int = 0) -> Dataset:
    """Make class ``label`` a minority: keep ``target_percentage`` % of its training rows.

    The percentage is of that class's *original* number of training rows (not of the
    training set): with 400 training rows of the class, 5 keeps
    ``floor(400 * 5 / 100) = 20``; at least one row is always kept, and 100 keeps all.
    Other classes and the test split are unchanged. Rows are drawn at random (``seed``).
    """
    cls = _class_index(ds, label)
    try:
        pct = float(target_percentage)
    except (TypeError, ValueError):
        raise TrustlabError(f"target_percentage must be a number in (0, 100], "
                            f"got {target_percentage!r}") from None
    if not 0.0 < pct <= 100.0:
        raise TrustlabError(f"target_percentage must be in (0, 100], got {target_percentage}")
    n_class = int(np.sum(ds.y[ds.train_idx] == cls))
    if n_class == 0:
        raise TrustlabError(f"{ds.name}: class {ds.class_names[cls]!r} has no training rows")
    # The small epsilon keeps e.g. 400 * 29 / 100 = 115.99999... from flooring to 115.
    keep = max(1, min(n_class, math.floor(n_class * pct / 100.0 + 1e-9)))
    train = _undersample(ds, {cls: keep}, seed)
    record = {"transform": "subsample_class", "label": cls,
              "class_name": ds.class_names[cls], "target_percentage": pct,
              "kept": keep, "original": n_class, "seed": seed}
    return _with_record(ds, record, train_idx=train,
                        test_idx=np.asarray(ds.test_idx, dtype=np.int64).copy())


def balanced_full(ds: Dataset, seed: int = 0) -> Dataset:
    """The balanced "full" baseline: undersample every class in the training split to the
    size of the smallest one (test split unchanged)."""
    counts = np.bincount(ds.y[ds.train_idx], minlength=ds.n_classes)
    present = counts[counts > 0]
    if len(present) < 2:
        raise TrustlabError(f"{ds.name}: balancing needs at least two classes in training")
    train = _undersample(ds, "all", seed)
    record = {"transform": "balanced_full", "per_class": int(present.min()),
              "original_counts": counts.tolist(), "seed": seed}
    return _with_record(ds, record, train_idx=train,
                        test_idx=np.asarray(ds.test_idx, dtype=np.int64).copy())


def label_bias(ds: Dataset, group_column: str, group_value: Any, flip_rate: float,
               seed: int = 0, positive: int | str = 1, negative: int | str = 0) -> Dataset:
    """Label bias against a group: flip training labels ``positive -> negative`` for rows of
    ``group_column == group_value``.

    Exactly ``round(flip_rate * n)`` of the group's ``n`` positive training rows are flipped,
    chosen at random (``seed``); ``y`` is copied, so the input and the test labels are
    untouched. The flipped row indices are in the ``meta["transforms"]`` record. Group
    columns (e.g. a ``label`` column mirroring ``y``) are left describing the original data.
    """
    if group_column not in ds.groups.columns:
        raise TrustlabError(f"{ds.name} has no group column {group_column!r}; columns: "
                            f"{', '.join(map(str, ds.groups.columns))}")
    try:
        rate = float(flip_rate)
    except (TypeError, ValueError):
        raise TrustlabError(f"flip_rate must be a number in [0, 1], got {flip_rate!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise TrustlabError(f"flip_rate must be in [0, 1], got {flip_rate}")
    pos = _class_index(ds, positive, "positive")
    neg = _class_index(ds, negative, "negative")
    if pos == neg:
        raise TrustlabError("positive and negative must be different classes")

    train = np.asarray(ds.train_idx, dtype=np.int64)
    column = ds.groups[group_column].to_numpy()
    in_group = column[train] == group_value
    if not in_group.any():
        values = sorted(map(str, pd.unique(column[train])))
        raise TrustlabError(f"no training row has {group_column} == {group_value!r}; values: "
                            f"{', '.join(values)}")
    candidates = train[in_group & (ds.y[train] == pos)]
    n_flip = int(round(rate * len(candidates)))
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(candidates, size=n_flip, replace=False)) if n_flip else \
        np.empty(0, dtype=np.int64)
    y = ds.y.copy()
    y[flipped] = neg
    record = {"transform": "label_bias", "group_column": group_column,
              "group_value": group_value.item() if isinstance(group_value, np.generic)
              else group_value, "flip_rate": rate, "positive": pos,
              "negative": neg, "candidates": int(len(candidates)),
              "flipped": int(n_flip), "flipped_idx": flipped.tolist(), "seed": seed}
    return _with_record(ds, record, y=y, train_idx=train.copy(),
                        test_idx=np.asarray(ds.test_idx, dtype=np.int64).copy())

