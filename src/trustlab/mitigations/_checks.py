"""Shared by the mitigations: input checks (bad shapes or labels are user errors), the
privileged side of the sensitive attribute, and a held-out split's scores."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import train_test_split

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


def group_positions(groups: np.ndarray, sensitive: np.ndarray, who: str) -> np.ndarray:
    """Each row's index into the sorted training ``groups``; a group not seen in training
    is a one-line error naming the method ``who``."""
    pos = np.clip(np.searchsorted(groups, sensitive), 0, len(groups) - 1)
    unseen = groups[pos] != sensitive
    if unseen.any():
        raise TrustlabError(f"{who}: group {sensitive[unseen].tolist()[0]!r} was not seen "
                            "in training")
    return pos


PrivilegedValue = str | int | float | bool | None
PRIVILEGED_DOC = ("the privileged value of the sensitive attribute (the tabular kind passes "
                  "dataset.privileged; null: the group with the highest positive rate); "
                  "every other value is unprivileged")


# -- groups and held-out scores, shared by the methods that need them ----------------------
def privileged_mask(y: np.ndarray, sensitive: np.ndarray, privileged, who: str
                    ) -> tuple[np.ndarray, object]:
    """The privileged rows and the privileged value (inferred when ``privileged`` is None:
    the group with the highest positive-label rate; the first such group on ties)."""
    values = np.unique(sensitive)
    if len(values) < 2:
        raise TrustlabError(f"{who} needs at least two groups in the training data")
    if privileged is None:
        rates = [y[sensitive == v].mean() for v in values]
        privileged = values[int(np.argmax(rates))]
        privileged = privileged.item() if isinstance(privileged, np.generic) else privileged
    elif not np.any(sensitive == privileged):
        raise TrustlabError(
            f"{who}: privileged value {privileged!r} does not occur in the sensitive "
            f"attribute (values: {', '.join(map(str, values[:10]))})")
    return sensitive == privileged, privileged


def holdout_scores(estimator, X: np.ndarray, y: np.ndarray, sensitive: np.ndarray,
                   holdout: float, seed: int, who: str):
    """Split off ``holdout`` of the rows (stratified by (group, label), seeded), fit a
    clone of ``estimator`` on the rest, score the held-out rows.

    Returns the fitted model, the held-out row indices and their P(y=1) scores.
    """
    if not hasattr(estimator, "predict_proba"):
        raise TrustlabError(f"{who}: the estimator has no predict_proba (scores are needed)")
    cell = np.unique(sensitive, return_inverse=True)[1] * 2 + y
    try:
        fit_idx, val_idx = train_test_split(np.arange(len(y)), test_size=holdout,
                                            random_state=seed, stratify=cell)
    except ValueError as exc:  # a (group, label) cell with a single row, or too few rows
        raise TrustlabError(f"{who}: cannot hold out {holdout:g} of the training rows "
                            f"stratified by (group, label): {exc}") from None
    model = clone(estimator).fit(X[fit_idx], y[fit_idx])
    scores = np.asarray(model.predict_proba(X[val_idx]))[:, 1].astype(np.float64)
    return model, val_idx, scores


def check_both_labels(y: np.ndarray, priv: np.ndarray, who: str, where: str) -> None:
    for name, rows in (("privileged", priv), ("unprivileged", ~priv)):
        labels = set(np.unique(y[rows]).tolist())
        if labels != {0, 1}:
            raise TrustlabError(f"{who}: the {name} group needs both labels in the {where} "
                                f"(has {sorted(labels) or 'no rows'})")
