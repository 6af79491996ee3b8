"""Confusion counts in one vectorized pass, and every metric derived from them.

All derivations take a count array ``C`` of shape ``(..., G, K, K)`` (group, true class,
predicted class), so the same code serves the point estimate and a whole batch of
bootstrap replicates at once. Zero denominators give 0.0, as scikit-learn's and
fairlearn's defaults (``zero_division``) do.
"""

from __future__ import annotations

import numpy as np


def confusion_counts(true_codes: np.ndarray, pred_codes: np.ndarray, group_codes: np.ndarray,
                     n_classes: int, n_groups: int) -> np.ndarray:
    """``C[g, t, p]`` = rows of group g with true class t predicted as p (one bincount)."""
    k = n_classes
    index = (group_codes * k + true_codes) * k + pred_codes
    flat = np.bincount(index, minlength=n_groups * k * k)
    return flat.reshape(n_groups, k, k)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _diag(C: np.ndarray) -> np.ndarray:
    return np.diagonal(C, axis1=-2, axis2=-1)


def classification_metrics(C: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy, macro-F1 and per-class P/R/F1 from ``C[..., K, K]``."""
    tp = _diag(C)
    support = C.sum(axis=-1)  # true counts per class
    predicted = C.sum(axis=-2)
    total = support.sum(axis=-1)
    precision = _div(tp, predicted)
    recall = _div(tp, support)
    f1 = _div(2 * tp, support + predicted)
    # balanced accuracy averages recall over classes present in y_true (scikit-learn).
    present = support > 0
    n_present = present.sum(axis=-1)
    balanced = _div((recall * present).sum(axis=-1), n_present)
    # macro-F1 averages over the labels seen in y_true or y_pred (scikit-learn's
    # unique_labels), not over a class no row has.
    seen = (support + predicted) > 0
    return {
        "accuracy": _div(tp.sum(axis=-1), total),
        "balanced_accuracy": balanced,
        "macro_f1": _div((f1 * seen).sum(axis=-1), seen.sum(axis=-1)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "n": total,
    }


def binary_rates(C: np.ndarray, pos: int) -> dict[str, np.ndarray]:
    """Count, selection rate, accuracy, TPR, FPR, F1 of ``C[..., 2, 2]`` for class ``pos``."""
    neg = 1 - pos
    tp = C[..., pos, pos]
    fn = C[..., pos, neg]
    fp = C[..., neg, pos]
    tn = C[..., neg, neg]
    n = tp + fn + fp + tn
    return {
        "count": n,
        "selection_rate": _div(tp + fp, n),
        "accuracy": _div(tp + tn, n),
        "tpr": _div(tp, tp + fn),
        "fpr": _div(fp, fp + tn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
    }


def group_accuracy(C: np.ndarray) -> dict[str, np.ndarray]:
    """Per-group count and accuracy for any number of classes."""
    n = C.sum(axis=(-1, -2))
    return {"count": n, "accuracy": _div(_diag(C).sum(axis=-1), n)}


def spread(values: np.ndarray) -> np.ndarray:
    return values.max(axis=-1) - values.min(axis=-1)


def disparities(by_group: dict[str, np.ndarray], binary: bool) -> dict[str, np.ndarray]:
    """fairlearn's between-group differences and ratios, plus the worst group's accuracy."""
    out = {
        "worst_group_accuracy": by_group["accuracy"].min(axis=-1),
        "accuracy_difference": spread(by_group["accuracy"]),
    }
    if binary:
        sel = by_group["selection_rate"]
        tpr_gap = spread(by_group["tpr"])
        out.update({
            "demographic_parity_difference": spread(sel),
            "demographic_parity_ratio": _div(sel.min(axis=-1), sel.max(axis=-1)),
            "equalized_odds_difference": np.maximum(tpr_gap, spread(by_group["fpr"])),
            "equal_opportunity_difference": tpr_gap,
            # the gap MinDiff closes with only_label 0 (Prost et al. 2019)
            "false_positive_rate_difference": spread(by_group["fpr"]),
        })
    return out


def privileged_contrast(sel_unpriv: np.ndarray, sel_priv: np.ndarray) -> dict[str, np.ndarray]:
    """Statistical parity difference (unprivileged - privileged), disparate impact (their
    ratio) and the income notebook's Zemel metric (privileged - unprivileged, i.e. -SPD).

    Disparate impact is NaN when the privileged group is never selected (undefined ratio).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        di = np.where(sel_priv > 0, sel_unpriv / np.where(sel_priv > 0, sel_priv, 1), np.nan)
    return {"statistical_parity_difference": sel_unpriv - sel_priv, "disparate_impact": di,
            "zemel_metric": sel_priv - sel_unpriv}
