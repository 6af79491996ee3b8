"""Input checks shared by the mitigations: bad shapes or labels are user errors."""

from __future__ import annotations

import numpy as np

from trustlab.errors import TrustlabError


def check_fit_inputs(X, y, sensitive) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` as float64 2-D, ``y`` as 0/1 int64, ``sensitive`` as a 1-D array, same length."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    sensitive = np.asarray(sensitive)
    if X.ndim != 2:
        raise TrustlabError(f"mitigation: X must be 2-D, got shape {X.shape}")
    if y.ndim != 1 or sensitive.ndim != 1:
        raise TrustlabError("mitigation: y and sensitive must be 1-D arrays")
    if not (len(X) == len(y) == len(sensitive)):
        raise TrustlabError(
            f"mitigation: X, y and sensitive have different lengths "
            f"({len(X)}, {len(y)}, {len(sensitive)})")
    if len(y) == 0:
        raise TrustlabError("mitigation: no training rows")
    labels = set(np.unique(y).tolist())
    if not labels <= {0, 1}:
        raise TrustlabError(f"mitigation: labels must be 0/1, got {sorted(labels)[:5]}")
    return X, y.astype(np.int64), sensitive


def check_predict_inputs(X, sensitive) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    sensitive = np.asarray(sensitive)
    if sensitive.ndim != 1 or len(sensitive) != len(X):
        raise TrustlabError(
            f"mitigation: sensitive must be 1-D with one value per row of X "
            f"({len(X)} rows)")
    return X, sensitive


def group_codes(sensitive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct group values and each row's index into them."""
    return np.unique(sensitive, return_inverse=True)
