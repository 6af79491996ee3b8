"""Random over-/under-sampling and SMOTE per (group, label) cell, through imbalanced-learn.

Each training row gets a cell id (group index * 2 + label). The imbalanced-learn sampler
resamples on that id as if it were the class; afterwards the label (and group) are read
back from the cell id, and the id is dropped. SMOTE's synthetic rows therefore belong to
the cell they were interpolated in. Note SMOTE interpolates one-hot columns too (values
between 0 and 1), as it does on any encoded matrix.

Cell targets (param ``target``):
- ``equal`` (default): every cell ends as large as the largest cell (over-sampling, SMOTE)
  or as small as the smallest (under-sampling) — "balance the cells";
- ``independent``: cell sizes proportional to n_s * n_y / n, i.e. Kamiran & Calders'
  uniform sampling: the label distribution is kept and becomes independent of the group.
Other params are the sampler's own (e.g. ``k_neighbors`` for SMOTE).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler
from sklearn.base import clone

from trustlab.errors import TrustlabError
from trustlab.mitigations._checks import check_fit_inputs, group_codes
from trustlab.mitigations.base import Mitigation

TARGETS = ("equal", "independent")


def cell_targets(counts: np.ndarray, n_groups: int, target: str, grow: bool
                 ) -> dict[int, int]:
    """Desired size per cell id (``counts`` indexed by cell id = group * 2 + label)."""
    if target == "equal":
        size = counts.max() if grow else counts.min()
        return {c: int(size) for c in range(len(counts))}
    # independent: expected sizes n_s n_y / n, scaled so no cell shrinks (grow) or grows.
    table = counts.reshape(n_groups, 2)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    ratio = table / expected
    scale = ratio.max() if grow else ratio.min()
    wanted = np.rint(scale * expected).astype(np.int64)
    wanted = np.maximum(wanted, table) if grow else np.minimum(wanted, table)
    return {c: int(v) for c, v in enumerate(wanted.ravel())}


class _CellResampler(Mitigation):
    """Shared logic; subclasses name the imbalanced-learn sampler and its direction."""

    sampler_cls: type = RandomOverSampler
    grow = True

    def __init__(self, seed: int = 0, target: str = "equal", **sampler_params: Any) -> None:
        super().__init__(seed=seed, target=target, **sampler_params)
        if target not in TARGETS:
            raise TrustlabError(
                f"{self.name}: target must be one of {', '.join(TARGETS)}, got {target!r}")
        allowed = set(self.sampler_cls._get_param_names()) - {"sampling_strategy",
                                                               "random_state"}
        unknown = sorted(set(sampler_params) - allowed)
        if unknown:
            raise TrustlabError(
                f"{self.name}: unknown param {unknown[0]!r}; sampler params: "
                f"{', '.join(sorted(allowed)) or '(none)'}; plus target")
        self.target = target
        self.sampler_params = sampler_params

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    def fit_resample(self, X, y, sensitive):
        """Resampled ``(X, y, sensitive)``; sets ``cell_counts_`` and ``sample_indices_``."""
        X, y, sensitive = check_fit_inputs(X, y, sensitive)
        groups, s = group_codes(sensitive)
        cell = s * 2 + y
        counts = np.bincount(cell, minlength=2 * len(groups))
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            c = int(empty[0])
            raise TrustlabError(
                f"{self.name}: no training rows with group {groups.tolist()[c // 2]!r} and label "
                f"{c % 2}; every (group, label) cell needs rows to resample")
        sampler = self.sampler_cls(
            sampling_strategy=cell_targets(counts, len(groups), self.target, self.grow),
            random_state=self.seed, **self._params_for(counts))
        try:
            X_res, cell_res = sampler.fit_resample(X, cell)
        except ValueError as exc:  # e.g. SMOTE with a cell smaller than k_neighbors + 1
            raise TrustlabError(f"{self.name}: {exc}".replace("\n", " ")) from None
        cell_res = np.asarray(cell_res, dtype=np.int64)
        self.sampler_ = sampler
        self.groups_ = groups
        self.cell_counts_ = np.bincount(cell_res, minlength=2 * len(groups))
        if hasattr(sampler, "sample_indices_"):
            self.sample_indices_ = np.asarray(sampler.sample_indices_)
        return np.asarray(X_res, dtype=np.float64), cell_res % 2, groups[cell_res // 2]

    def _params_for(self, counts: np.ndarray) -> dict[str, Any]:
        return dict(self.sampler_params)

    def fit(self, estimator, X, y, sensitive):
        X_res, y_res, _ = self.fit_resample(X, y, sensitive)
        self.estimator_ = clone(estimator).fit(X_res, y_res)
        return self


class Oversample(_CellResampler):
    """``mitigation: {name: oversample}`` — imblearn's RandomOverSampler per cell."""

    sampler_cls = RandomOverSampler
    grow = True


class Undersample(_CellResampler):
    """``mitigation: {name: undersample}`` — imblearn's RandomUnderSampler per cell."""

    sampler_cls = RandomUnderSampler
    grow = False


class Smote(_CellResampler):
    """``mitigation: {name: smote}`` — imblearn's SMOTE per cell (synthetic rows)."""

    sampler_cls = SMOTE
    grow = True

    def _params_for(self, counts: np.ndarray) -> dict[str, Any]:
        # SMOTE interpolates between a row and one of its k nearest neighbours in the same
        # cell, so a cell needs k + 1 rows. Unless k_neighbors is set explicitly, shrink
        # the default 5 to fit the smallest cell (e.g. COMPAS's 6-valued race), as
        # imbalanced-learn itself would otherwise refuse the whole resampling.
        params = dict(self.sampler_params)
        if "k_neighbors" not in params:
            smallest = int(counts[counts > 0].min())
            if smallest < 2:
                raise TrustlabError(
                    "smote: a (group, label) cell has a single row; SMOTE needs two to "
                    "interpolate (use oversample, or a coarser sensitive attribute)")
            params["k_neighbors"] = min(5, smallest - 1)
        return params
