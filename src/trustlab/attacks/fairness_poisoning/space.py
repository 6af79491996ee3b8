"""Where poison rows live: the feature box of the encoded training data, the search space
of ``n_points`` rows with their labels and groups, and a poison set drawn from it."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np


@dataclass
class FeatureBox:
    """Where poison rows may live in the encoded feature space.

    ``numeric`` columns take floats in ``[lo, hi]``; each of ``blocks`` is a one-hot block
    (column indices) whose row has exactly one 1; ``group_columns`` maps a group value to
    its column in the sensitive attribute's block (empty when the attribute is no input).
    """

    lo: np.ndarray
    hi: np.ndarray
    numeric: list[int]
    blocks: list[list[int]]
    group_columns: dict[str, int] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return len(self.lo)

    @classmethod
    def from_encoded(cls, X: np.ndarray, feature_names: list[str],
                     categorical: dict[str, list[str]], group_feature: str | None = None
                     ) -> "FeatureBox":
        """``categorical`` maps each one-hot-encoded raw column to its levels (in encoder
        order), so blocks are found by exact name ``f"{column}_{level}"``."""
        index = {n: i for i, n in enumerate(feature_names)}
        blocks, group_columns, in_block = [], {}, set()
        for col, levels in categorical.items():
            cols = [index[f"{col}_{lv}"] for lv in levels]
            in_block.update(cols)
            if col == group_feature:
                group_columns = {str(lv): c for lv, c in zip(levels, cols)}
            else:
                blocks.append(cols)
        numeric = [i for i in range(len(feature_names)) if i not in in_block]
        return cls(lo=X.min(axis=0), hi=X.max(axis=0), numeric=numeric, blocks=blocks,
                   group_columns=group_columns)

    def contains(self, X: np.ndarray, atol: float = 1e-9) -> bool:
        """Every row inside ``[lo, hi]`` and one-hot on every block."""
        inside = np.all((X >= self.lo - atol) & (X <= self.hi + atol))
        onehot = all(np.allclose(X[:, b].sum(axis=1), 1) and
                     np.all(np.isin(X[:, b], (0.0, 1.0))) for b in self.all_blocks())
        return bool(inside and onehot)

    def all_blocks(self) -> list[list[int]]:
        extra = [list(self.group_columns.values())] if self.group_columns else []
        return self.blocks + extra


@dataclass
class PoisonSet:
    X: np.ndarray       # (n_points, n_features), encoded
    y: np.ndarray       # labels (0/1)
    group: np.ndarray   # group values (strings)

    def to_npz(self, feature_names: list[str]) -> bytes:
        """The poison as a compressed ``.npz`` (X, y as int8, group, feature_names)."""
        buf = io.BytesIO()
        np.savez_compressed(buf, X=self.X, y=self.y.astype(np.int8),
                            group=self.group.astype(str),
                            feature_names=np.asarray(feature_names, dtype=str))
        return buf.getvalue()


@dataclass
class PoisonSpace:
    """The poison's search space: ``n_points`` rows in ``box``, with labels and groups
    fixed (a value) or optimized (``"optimize"``)."""

    box: FeatureBox
    n_points: int
    label: int | str            # 0, 1 or "optimize"
    group: str                  # a group value or "optimize"
    group_values: tuple[str, str]

    def build(self, numeric: np.ndarray, levels: np.ndarray, labels: np.ndarray,
              groups: np.ndarray) -> PoisonSet:
        """Rows from numeric values ``(n, len(numeric))``, block level indices
        ``(n, len(blocks))``, labels and groups; numerics are clipped to the box."""
        box = self.box
        X = np.zeros((self.n_points, box.n_features))
        X[:, box.numeric] = np.clip(numeric, box.lo[box.numeric], box.hi[box.numeric])
        rows = np.arange(self.n_points)
        for b, cols in enumerate(box.blocks):
            X[rows, np.asarray(cols)[levels[:, b]]] = 1.0
        if box.group_columns:
            for i, g in enumerate(groups):
                X[i, box.group_columns[str(g)]] = 1.0
        return PoisonSet(X=X, y=np.asarray(labels, dtype=np.int64),
                         group=np.asarray(groups).astype(str))

    def suggest(self, trial) -> PoisonSet:
        """One candidate from an optuna trial (TPE or random sampler)."""
        box, n = self.box, self.n_points
        numeric = np.zeros((n, len(box.numeric)))
        levels = np.zeros((n, len(box.blocks)), dtype=np.int64)
        labels = np.zeros(n, dtype=np.int64)
        groups = np.empty(n, dtype=object)
        for i in range(n):
            for k, j in enumerate(box.numeric):
                lo, hi = float(box.lo[j]), float(box.hi[j])
                # a constant column has nothing to search (and optuna wants low < high)
                numeric[i, k] = trial.suggest_float(f"x{i}_{j}", lo, hi) if hi > lo else lo
            for b, cols in enumerate(box.blocks):
                levels[i, b] = (trial.suggest_categorical(f"b{i}_{b}", list(range(len(cols))))
                                if len(cols) > 1 else 0)
            labels[i] = (trial.suggest_categorical(f"y{i}", [0, 1])
                         if self.label == "optimize" else int(self.label))
            groups[i] = (trial.suggest_categorical(f"g{i}", list(self.group_values))
                         if self.group == "optimize" else self.group)
        return self.build(numeric, levels, labels, groups)

    def random(self, rng: np.random.Generator) -> PoisonSet:
        """A uniform draw from the space (the gradient optimizer's starting point)."""
        box, n = self.box, self.n_points
        numeric = rng.uniform(box.lo[box.numeric], box.hi[box.numeric],
                              size=(n, len(box.numeric)))
        levels = np.stack([rng.integers(0, len(c), size=n) for c in box.blocks], axis=1) \
            if box.blocks else np.zeros((n, 0), dtype=np.int64)
        labels = (rng.integers(0, 2, size=n) if self.label == "optimize"
                  else np.full(n, int(self.label)))
        groups = (rng.choice(np.array(self.group_values), size=n) if self.group == "optimize"
                  else np.full(n, self.group))
        return self.build(numeric, levels, labels, groups)


__all__ = ["FeatureBox", "PoisonSet", "PoisonSpace"]
