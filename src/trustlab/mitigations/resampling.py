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

from typing import Any, ClassVar, Literal

import numpy as np
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler
from pydantic import Field, model_validator
from sklearn.base import clone

from trustlab import registry
from trustlab.errors import TrustlabError
from trustlab.mitigations._checks import check_fit_inputs, group_codes
from trustlab.mitigations.base import Mitigation
from trustlab.registry import ParamError


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


class SamplerParams(registry.OpenParams):
    """``target`` plus the imbalanced-learn sampler's own arguments (``sampler``), passed
    through; ``sampling_strategy`` and ``random_state`` are ours (cell targets, seed)."""

    sampler: ClassVar[type] = RandomOverSampler
    target: Literal["equal", "independent"] = Field(
        "equal", description="equal: every cell as large as the largest (as small as the "
                             "smallest when undersampling); independent: label independent "
                             "of the group, label rate kept")

    @model_validator(mode="after")
    def _sampler_arguments(self):
        allowed = set(self.sampler._get_param_names()) - {"sampling_strategy", "random_state"}
        for key in sorted(self.model_extra or {}):
            if key not in allowed:
                raise ParamError(key, f"unknown parameter; parameters: target, and "
                                      f"{self.sampler.__name__}'s "
                                      f"{', '.join(sorted(allowed)) or '(none)'}")
        return self


class _CellResampler(Mitigation):
    """Shared logic; subclasses name the imbalanced-learn sampler (in their ``Params``) and
    its direction."""

    grow = True
    Params = SamplerParams

    def __init__(self, seed: int = 0, **params: Any) -> None:
        super().__init__(seed=seed, **params)
        self.sampler_cls = type(self.params).sampler
        self.sampler_params = dict(self.params.model_extra or {})

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
        self.rows_changed_ = int(np.abs(np.bincount(cell_res, minlength=len(counts))
                                        - counts).sum())
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

    def effect(self) -> dict[str, float]:
        return {"rows_added" if self.grow else "rows_removed": float(self.rows_changed_)}

    def unchanged(self) -> str | None:
        return ("no row added or removed: the (group, label) cells already have their target "
                "sizes" if self.rows_changed_ == 0 else None)


class Oversample(_CellResampler):
    """Random over-sampling of every (group, label) cell (imbalanced-learn)."""

    name = "oversample"
    extra_params = "any argument of imbalanced-learn's RandomOverSampler (e.g. shrinkage)"
    grow = True

    class Params(SamplerParams):
        sampler: ClassVar[type] = RandomOverSampler


class Undersample(_CellResampler):
    """Random under-sampling of every (group, label) cell (imbalanced-learn)."""

    name = "undersample"
    extra_params = "any argument of imbalanced-learn's RandomUnderSampler (e.g. replacement)"
    grow = False

    class Params(SamplerParams):
        sampler: ClassVar[type] = RandomUnderSampler


class Smote(_CellResampler):
    """SMOTE per (group, label) cell: synthetic rows interpolated inside each cell.

    imbalanced-learn's SMOTE; ``k_neighbors`` shrinks to fit the smallest cell unless set.
    """

    name = "smote"
    extra_params = "any argument of imbalanced-learn's SMOTE (e.g. k_neighbors)"
    grow = True

    class Params(SamplerParams):
        sampler: ClassVar[type] = SMOTE

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
