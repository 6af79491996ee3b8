"""What several trial kinds' configs share: the ``subsample`` key and how it draws rows."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import AfterValidator


def _check_subsample(v):
    if v is None:
        return v
    if isinstance(v, bool) or v <= 0 or (isinstance(v, float) and v > 1):
        raise ValueError("must be a fraction in (0, 1] or a row count >= 1")
    return v


# Training rows to keep: a fraction in (0, 1] or a count, drawn with the trial seed.
Subsample = Annotated[int | float | None, AfterValidator(_check_subsample)]


def subsample_rows(train_idx: np.ndarray, subsample: int | float | None, seed: int,
                   minimum: int = 1) -> np.ndarray:
    """``subsample`` of ``train_idx`` (sorted), drawn with the trial seed; all if None."""
    train_idx = np.asarray(train_idx)
    if subsample is None:
        return train_idx
    n = (int(round(subsample * len(train_idx))) if isinstance(subsample, float)
         else int(subsample))
    n = max(minimum, min(n, len(train_idx)))
    return np.sort(np.random.default_rng(seed).choice(train_idx, size=n, replace=False))
