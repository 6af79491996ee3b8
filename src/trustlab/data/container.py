"""One container for every dataset, tabular or image."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Dataset:
    """Features, labels, group attributes and a train/test split.

    ``X`` is a :class:`pandas.DataFrame` of raw features for tabular data (categorical
    columns stay strings; models encode them) and a float32 array ``(N, C, H, W)`` for
    images. ``y`` holds integer class indices ``0..K-1`` named by ``class_names``.
    ``groups`` has one column per group attribute (several are allowed), aligned with
    ``y``. The split is given as row indices so transforms can touch one side only.
    """

    name: str
    X: Any
    y: np.ndarray
    groups: pd.DataFrame
    train_idx: np.ndarray
    test_idx: np.ndarray
    class_names: list[str]
    image_shape: tuple[int, ...] | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    # -- views ---------------------------------------------------------------
    def _rows(self, idx: np.ndarray):
        if isinstance(self.X, pd.DataFrame):
            return self.X.iloc[idx].reset_index(drop=True)
        return self.X[idx]

    @property
    def n_rows(self) -> int:
        return int(len(self.y))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        return self.image_shape is not None

    @property
    def X_train(self):
        return self._rows(self.train_idx)

    @property
    def X_test(self):
        return self._rows(self.test_idx)

    @property
    def y_train(self) -> np.ndarray:
        return self.y[self.train_idx]

    @property
    def y_test(self) -> np.ndarray:
        return self.y[self.test_idx]

    @property
    def groups_train(self) -> pd.DataFrame:
        return self.groups.iloc[self.train_idx].reset_index(drop=True)

    @property
    def groups_test(self) -> pd.DataFrame:
        return self.groups.iloc[self.test_idx].reset_index(drop=True)

    def with_split(self, train_idx: np.ndarray, test_idx: np.ndarray) -> "Dataset":
        """A copy sharing the arrays but with another split (used by bias transforms)."""
        return replace(self, train_idx=np.asarray(train_idx, dtype=np.int64),
                       test_idx=np.asarray(test_idx, dtype=np.int64), meta=dict(self.meta))

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows": self.n_rows,
            "train": int(len(self.train_idx)),
            "test": int(len(self.test_idx)),
            "classes": list(self.class_names),
            "groups": list(self.groups.columns),
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "source": self.source,
        }
