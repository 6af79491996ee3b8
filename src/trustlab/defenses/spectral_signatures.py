"""Spectral signatures (Tran, Li & Madry, NeurIPS 2018): poisoned training rows leave a
trace along the top singular direction of their label's learned representation.

For each label ``c``, with ``R_c`` the backdoored model's penultimate representations
(``model.features``) of the training rows labelled ``c``:

1. centre them, ``M_c = R_c - mean(R_c)``;
2. take the top right singular vector ``v_c`` of ``M_c`` (``numpy.linalg.svd``);
3. score each row ``(M_c v_c)^2`` (its outlier score, Algorithm 1 of the paper);
4. remove the ``round(min(1, removal_factor * expected_poison_fraction) * n_c)``
   highest-scoring rows of the label (the paper removes the top ``1.5 ε``, ``ε`` an upper
   bound on the poisoned share of a label).

Then a fresh model is trained the same way on the rows left (``case.retrain``) and
returned as the repair. The authors' code and ART's ``SpectralSignatureDefense`` do the
same (ART keeps the rows below the ``1 - 1.5 ε`` quantile, we remove an exact count).

Scores of different labels are not on one scale (each label has its own spread), so for
the ``spectral_signatures.auc`` metric each score is divided by the median score of its
label: a robust, scale-free outlier score (a label's typical row scores 1). Removal itself
works per label and never compares labels. ``ε`` is the poisoned share *of a label*: in an
all-to-one attack every poisoned row carries the target label, so a ``poison_rate`` of the
non-target images is a much larger share of the target label.

Written by hand (the method is a per-label SVD; no maintained PyTorch library ships it);
the metrics are :mod:`~trustlab.defenses.filtering`'s.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from trustlab import registry
from trustlab.defenses.filtering import TrainingSetFilter



def spectral_scores(features: np.ndarray) -> np.ndarray:
    """``((R - mean R) v)^2`` per row of ``features`` (N, D), ``v`` the top right singular
    vector of the centred matrix (zeros for fewer than two rows)."""
    r = np.asarray(features, dtype=np.float64)
    if len(r) < 2:
        return np.zeros(len(r))
    m = r - r.mean(axis=0)
    v = np.linalg.svd(m, full_matrices=False)[2][0]
    return (m @ v) ** 2


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Bool mask of the ``k`` highest ``scores`` (ties: the earlier row first)."""
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.argsort(-np.asarray(scores), kind="stable")[:k]] = True
    return mask


class SpectralSignatures(TrainingSetFilter):
    """Spectral signatures (Tran et al. 2018): drop each label's training rows that stand
    out along the top singular direction of its representations, then retrain.

    As a defense (:meth:`defend`) it needs the training set (``case.poisoned``) and a
    network with ``features(x)``; metrics ``spectral_signatures.<auc | auc_target_label |
    n_removed | flagged_fraction | precision | recall>`` and the retrained model. After it:
    ``scores_`` (raw, per training row), ``normalized_scores_`` (divided by the label's
    median, what ``auc`` ranks) and ``removed_`` (bool per row).
    """

    name: ClassVar[str] = "spectral_signatures"

    class Params(registry.Params):
        expected_poison_fraction: float = Field(
            0.1, gt=0, le=1, description="ε, an upper bound on the poisoned share of a "
                                         "label's training rows")
        removal_factor: float = Field(1.5, gt=0, description="each label loses its "
                                                             "removal_factor * ε top-scoring "
                                                             "rows (the paper: 1.5)")
        batch_size: int = Field(512, ge=1, description="rows per forward pass when "
                                                       "computing the representations")

    def score(self, features: np.ndarray, y: np.ndarray) -> SpectralSignatures:
        """Score and select rows given their representations (N, D) and labels."""
        y = np.asarray(y)
        share = min(1.0, float(self.removal_factor) * float(self.expected_poison_fraction))
        self.scores_ = np.zeros(len(y))
        self.normalized_scores_ = np.zeros(len(y))
        self.removed_ = np.zeros(len(y), dtype=bool)
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            s = spectral_scores(features[rows])
            self.scores_[rows] = s
            med = np.median(s)
            self.normalized_scores_[rows] = s / med if med > 0 else s
            self.removed_[rows] = top_k_mask(s, round(share * len(rows)))
        return self

    def flag(self, features, labels):
        self.score(features, labels)
        return self.normalized_scores_


__all__ = ["SpectralSignatures", "spectral_scores", "top_k_mask"]
