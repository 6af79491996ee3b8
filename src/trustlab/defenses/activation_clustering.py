"""Activation clustering (Chen et al. 2018, "Detecting Backdoor Attacks on Deep Neural
Networks by Activation Clustering"): inside a label, poisoned rows activate the last
hidden layer differently from the clean ones, so its activations split into two clusters
of which the poisoned one is small.

For each label, with the backdoored model's penultimate activations (``model.features``)
of its training rows, as the paper and ART's ``ActivationDefence`` do:

1. reduce them to ``n_components`` dimensions (fewer if their centred matrix has a lower
   rank, e.g. dead ReLU units): FastICA (the paper's choice, and ART's
   ``reduce_dimensionality`` default; ``max_iter=1000, tol=0.005`` as ART) or PCA (ART's
   class default, not whitened). Activations with at most ``n_components`` dimensions are
   kept as they are (as ART does). FastICA is PCA whitening followed by an orthogonal
   rotation, and k-means (with k-means++ seeding) and the margin below only see
   distances, which a rotation keeps. So FastICA not converging (a label with no
   non-Gaussian direction to find) is harmless, but when it breaks down — on sparse ReLU
   features its fixed-point iteration can end with correlated, even NaN, components, even
   when it reports convergence — the whitened PCA components it started from stand in: up
   to a rotation they are what a working ICA returns, so they cluster the same (metric
   ``ica_fallbacks``: how many labels needed it);
2. k-means with two clusters (scikit-learn, ``n_init=10``);
3. relative-size analysis (ART's ``relative-size``): the smaller cluster is flagged as
   poisoned when it holds less than ``size_threshold`` of the label's rows (ART rounds the
   share to two decimals first; we compare the exact share).

Flagged rows are removed and a fresh model is trained the same way on the rest
(``case.retrain``), returned as the repair.

A continuous score per row, for the ``activation_clustering.auc`` metric: its signed
distance to the k-means decision boundary, positive on the smaller cluster's side,
``(|z - c_large|^2 - |z - c_small|^2) / (2 |c_small - c_large|)`` in the reduced space
(``c_*`` the centres; k-means assigns a row to the smaller cluster exactly when it is
positive). FastICA's output is whitened (unit variance per component), so with the default
reduction the score is in units of the label's own spread and comparable across labels: a
label that splits into two genuinely separate groups gives large margins, one that k-means
merely cuts in two gives small ones. With ``reduce: pca`` (not whitened, as ART) the score
is in activation units.

Written by hand around scikit-learn's FastICA/PCA and KMeans (ART is not a dependency);
the metrics are :mod:`~trustlab.defenses.filtering`'s, plus ``n_labels_flagged``.
"""

from __future__ import annotations

import warnings
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from trustlab import registry
from trustlab.defenses.filtering import TrainingSetFilter


ICA_MAX_ITER, ICA_TOL = 1000, 0.005   # ART's FastICA settings
WHITE_TOL = 1e-4   # |cov - I| of FastICA's output above this: it broke down


def boundary_margin(z: np.ndarray, c_small: np.ndarray, c_large: np.ndarray) -> np.ndarray:
    """Signed distance of each row of ``z`` to the hyperplane equidistant from the two
    centres, positive on ``c_small``'s side (0 when the centres coincide)."""
    gap = float(np.linalg.norm(c_small - c_large))
    if gap == 0:
        return np.zeros(len(z))
    d_large = ((z - c_large) ** 2).sum(axis=1)
    d_small = ((z - c_small) ** 2).sum(axis=1)
    return (d_large - d_small) / (2 * gap)


class ActivationClustering(TrainingSetFilter):
    """Activation clustering (Chen et al. 2018): per label, ICA-reduce the penultimate
    activations, split them with 2-means, drop a cluster that is small, then retrain.

    As a defense (:meth:`defend`) it needs the training set (``case.poisoned``) and a
    network with ``features(x)``; metrics ``activation_clustering.<auc | auc_target_label |
    n_removed | flagged_fraction | precision | recall | n_labels_flagged>`` and the
    retrained model. After it: ``scores_`` (boundary margin per training row),
    ``removed_`` (bool per row), ``small_share_`` (label -> the smaller cluster's share)
    and ``flagged_labels_``.
    """

    name: ClassVar[str] = "activation_clustering"

    class Params(registry.Params):
        n_components: int = Field(10, ge=1, description="dimensions the activations of a "
                                                        "label are reduced to")
        reduce: Literal["ica", "pca"] = Field("ica", description="reduction: FastICA (the "
                                                                 "paper) or PCA")
        size_threshold: float = Field(0.35, gt=0, le=0.5,
                                      description="a label's smaller cluster is flagged when "
                                                  "it holds less than this share of its rows")
        batch_size: int = Field(512, ge=1, description="rows per forward pass when "
                                                       "computing the activations")

    def _reduce(self, acts: np.ndarray, seed: int) -> tuple[np.ndarray, bool]:
        """(reduced activations, whether FastICA broke down and whitened PCA stood in)."""
        from sklearn.decomposition import PCA, FastICA
        from sklearn.exceptions import ConvergenceWarning

        centred = acts - acts.mean(axis=0)
        k = min(int(self.n_components), np.linalg.matrix_rank(centred))
        if acts.shape[1] <= k:
            return acts, False
        if self.reduce == "pca":
            return PCA(n_components=k, random_state=seed).fit_transform(acts), False
        ica = FastICA(n_components=k, whiten="unit-variance", max_iter=ICA_MAX_ITER,
                      tol=ICA_TOL, random_state=seed)
        with warnings.catch_warnings():
            # non-convergence is harmless and a breakdown is caught below
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                z = ica.fit_transform(acts)
            except (ValueError, np.linalg.LinAlgError):
                z = None
        if z is not None and np.isfinite(z).all():
            cov = np.cov(z, rowvar=False, bias=True).reshape(k, k)
            if np.abs(cov - np.eye(k)).max() < WHITE_TOL:   # still white: a valid rotation
                return z, False
        return PCA(n_components=k, whiten=True, random_state=seed).fit_transform(acts), True

    def cluster(self, features: np.ndarray, y: np.ndarray) -> ActivationClustering:
        """Cluster each label's activations (N, D) and flag rows (see the module)."""
        from sklearn.cluster import KMeans

        y = np.asarray(y)
        self.scores_ = np.zeros(len(y))
        self.removed_ = np.zeros(len(y), dtype=bool)
        self.small_share_: dict[int, float] = {}
        self.flagged_labels_: list[int] = []
        self.ica_fallbacks_ = 0
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            acts = np.asarray(features[rows], dtype=np.float64)
            if len(rows) < 3 or np.ptp(acts, axis=0).max(initial=0) == 0:
                continue   # too few rows, or all alike: nothing to split
            seed = int(np.random.default_rng((self.seed, int(c))).integers(2**31 - 1))
            z, fell_back = self._reduce(acts, seed)
            self.ica_fallbacks_ += int(fell_back)
            km = KMeans(n_clusters=2, n_init=10, random_state=seed).fit(z)
            sizes = np.bincount(km.labels_, minlength=2)
            small = int(np.argmin(sizes))  # a tie picks cluster 0, as np.argmin
            share = sizes[small] / len(rows)
            self.small_share_[int(c)] = float(share)
            centres = km.cluster_centers_
            self.scores_[rows] = boundary_margin(z, centres[small], centres[1 - small])
            if share < self.size_threshold:
                self.flagged_labels_.append(int(c))
                self.removed_[rows] = km.labels_ == small
        return self

    def flag(self, features, labels):
        self.cluster(features, labels)
        return self.scores_

    def extra_metrics(self):
        return {f"{self.name}.n_labels_flagged": float(len(self.flagged_labels_)),
                f"{self.name}.ica_fallbacks": float(self.ica_fallbacks_)}


__all__ = ["ActivationClustering", "boundary_margin"]
