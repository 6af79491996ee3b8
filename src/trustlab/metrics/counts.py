"""Confusion counts in one vectorized pass, and every metric derived from them.

All derivations take a count array ``C`` of shape ``(..., G, K, K)`` (group, true class,
predicted class), so the same code serves the point estimate and a whole batch of
bootstrap replicates at once. Zero denominators give 0.0, as scikit-learn's and
fairlearn's defaults (``zero_division``) do.
"""

from __future__ import annotations

import numpy as np


def confusion_counts(true_codes: np.ndarray, pred_codes: np.ndarray, group_codes: np.ndarray,
                     n_classes: int, n_groups: int, row_counts: np.ndarray | None = None
                     ) -> np.ndarray:
    """``C[g, t, p]`` = rows of group g with true class t predicted as p (one bincount).
    ``row_counts``: each input row stands for that many rows (a streamed, pre-counted
    table)."""
    k = n_classes
    index = (group_codes * k + true_codes) * k + pred_codes
    if row_counts is None:
        flat = np.bincount(index, minlength=n_groups * k * k)
    else:
        flat = np.bincount(index, weights=row_counts, minlength=n_groups * k * k)
        flat = np.rint(flat).astype(np.int64)
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
    """Count, selection rate, accuracy, TPR, FPR, F1, FNR, FDR, FOR, error rate and mean
    benefit of ``C[..., 2, 2]`` for class ``pos``."""
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
        "fnr": _div(fn, tp + fn),
        "fdr": _div(fp, tp + fp),
        "for": _div(fn, fn + tn),
        "error_rate": _div(fp + fn, n),
        # AIF360's benefit b = yhat - y + 1: 0 for a false negative, 1 when right, 2 for a
        # false positive; its mean over the rows
        "benefit": _div(tp + tn + 2 * fp, n),
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
            # fairlearn's false_positive_rate_difference (max - min over groups): the gap
            # MinDiff closes with only_label 0 (Prost et al. 2019). With a privileged group
            # the audit replaces it by AIF360's signed version of the same name.
            "false_positive_rate_difference": spread(by_group["fpr"]),
            "smoothed_empirical_differential_fairness":
                smoothed_edf(by_group["count"], sel),
        })
        present = by_group["count"]
        out.update(between_group_indices(present, by_group["benefit"], "between_all_groups"))
    return out


def privileged_contrast(unpriv: dict[str, np.ndarray], priv: dict[str, np.ndarray]
                        ) -> dict[str, np.ndarray]:
    """AIF360's metrics relative to the privileged group, each signed unprivileged minus
    privileged (AIF360's convention and names), from the two sides' :func:`binary_rates`:
    statistical parity, TPR, FPR, FDR, FOR and error-rate differences, average (abs) odds
    difference, disparate impact (their selection-rate ratio; NaN when the privileged
    group is never selected), the income notebook's Zemel metric (privileged minus
    unprivileged, i.e. -SPD) and the between-group inequality indices of the two groups.
    """
    sel_u, sel_p = unpriv["selection_rate"], priv["selection_rate"]
    with np.errstate(divide="ignore", invalid="ignore"):
        di = np.where(sel_p > 0, sel_u / np.where(sel_p > 0, sel_p, 1), np.nan)
    tpr_d = unpriv["tpr"] - priv["tpr"]
    fpr_d = unpriv["fpr"] - priv["fpr"]
    out = {
        "statistical_parity_difference": sel_u - sel_p,
        "disparate_impact": di,
        "zemel_metric": sel_p - sel_u,
        "true_positive_rate_difference": tpr_d,
        "false_positive_rate_difference": fpr_d,
        "false_discovery_rate_difference": unpriv["fdr"] - priv["fdr"],
        "false_omission_rate_difference": unpriv["for"] - priv["for"],
        "error_rate_difference": unpriv["error_rate"] - priv["error_rate"],
        "average_odds_difference": 0.5 * (fpr_d + tpr_d),
        "average_abs_odds_difference": 0.5 * (np.abs(fpr_d) + np.abs(tpr_d)),
    }
    counts = np.stack([unpriv["count"], priv["count"]], axis=-1)
    means = np.stack([unpriv["benefit"], priv["benefit"]], axis=-1)
    out.update(between_group_indices(counts, means, prefix="between_group"))
    return out


# -- inequality of benefits (Speicher et al. 2018, AIF360's definitions) -----------------
def _ge_terms(ratio: np.ndarray, alpha: float) -> np.ndarray:
    """The per-value terms of the generalized entropy index for b / mu = ``ratio``:
    ((b/mu)^alpha - 1) / (alpha (alpha - 1)), or (b/mu) ln(b/mu) for alpha = 1 (the Theil
    index; 0 ln 0 = 0)."""
    if alpha == 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ratio > 0, ratio * np.log(np.where(ratio > 0, ratio, 1)), 0.0)
    return (np.power(ratio, alpha) - 1) / (alpha * (alpha - 1))


def inequality_indices(C: np.ndarray, pos: int) -> dict[str, np.ndarray]:
    """The generalized entropy index (alpha 2), the Theil index (alpha 1) and the
    coefficient of variation (sqrt(2 GE(2))) of the benefits b = yhat - y + 1 over all
    rows. b takes three values (0: false negative, 1: right, 2: false positive), so the
    counts determine the indices exactly: no pass over the rows is needed."""
    total = C.sum(axis=-3)
    neg = 1 - pos
    n_b = np.stack([total[..., pos, neg],                            # b = 0
                    total[..., pos, pos] + total[..., neg, neg],     # b = 1
                    total[..., neg, pos]], axis=-1)                  # b = 2
    n = n_b.sum(axis=-1)
    mu = _div(n_b[..., 1] + 2 * n_b[..., 2], n)
    ratio = _div(np.array([0.0, 1.0, 2.0]), mu[..., None])
    ge2 = _div((n_b * _ge_terms(ratio, 2)).sum(axis=-1), n)
    theil = _div((n_b * _ge_terms(ratio, 1)).sum(axis=-1), n)
    return {"generalized_entropy_index": ge2, "theil_index": theil,
            "coefficient_of_variation": np.sqrt(np.maximum(2 * ge2, 0))}


def between_group_indices(counts: np.ndarray, means: np.ndarray, prefix: str
                          ) -> dict[str, np.ndarray]:
    """The same indices with every row's benefit replaced by its group's mean benefit
    (the between-group part of the decomposition): ``counts`` and ``means`` are per group
    (last axis); groups without rows are left out, as AIF360 does."""
    n = counts.sum(axis=-1)
    mu = _div((counts * means).sum(axis=-1), n)
    ratio = _div(means, mu[..., None])
    ge2 = _div((counts * _ge_terms(ratio, 2)).sum(axis=-1), n)
    theil = _div((counts * _ge_terms(ratio, 1)).sum(axis=-1), n)
    return {f"{prefix}_generalized_entropy_index": ge2, f"{prefix}_theil_index": theil,
            f"{prefix}_coefficient_of_variation": np.sqrt(np.maximum(2 * ge2, 0))}


def smoothed_edf(count: np.ndarray, selection_rate: np.ndarray,
                 concentration: float = 1.0) -> np.ndarray:
    """Smoothed empirical differential fairness (Foulds et al. 2018) of the predictions:
    with Dirichlet-smoothed selection rates s_g = (selected_g + c/2) / (n_g + c), the
    largest |ln s_i - ln s_j| or |ln(1 - s_i) - ln(1 - s_j)| over pairs of groups with
    rows (AIF360's smoothed_empirical_differential_fairness on the predicted labels)."""
    present = count > 0
    s = (selection_rate * count + concentration / 2) / (count + concentration)
    with np.errstate(divide="ignore"):
        log_s, log_1s = np.log(s), np.log1p(-s)
    big = np.where(present, log_s, -np.inf).max(axis=-1) - np.where(
        present, log_s, np.inf).min(axis=-1)
    big_neg = np.where(present, log_1s, -np.inf).max(axis=-1) - np.where(
        present, log_1s, np.inf).min(axis=-1)
    out = np.maximum(big, big_neg)
    return np.where(present.sum(axis=-1) >= 2, out, 0.0)
