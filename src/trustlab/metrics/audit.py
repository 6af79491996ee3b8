"""`trustlab.audit`: every fairness and performance metric from one set of confusion counts.

The counts ``C[group, true, pred]`` are built once (one ``bincount``); overall, per-group,
disparity and privileged-contrast metrics are all derived from them. Bootstrap
confidence intervals resample the counts, not the rows: drawing N rows with replacement
puts a Multinomial(N, C / N) vector of counts in the cells, so sampling that directly is
the same bootstrap at a cost independent of N. (Hand-written: no library bootstraps
confusion counts.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from trustlab.errors import TrustlabError
from trustlab.metrics import counts as cm
from trustlab.metrics.encoding import as_column, encode_groups, factorize, group_columns

GROUP_METRICS_BINARY = ("count", "selection_rate", "accuracy", "tpr", "fpr", "f1")
GROUP_METRICS_MULTI = ("count", "accuracy")


@dataclass
class AuditResult:
    """The audit of one set of predictions; ``to_dict()`` is the CLI's ``--json``."""

    n: int
    classes: list[Any]
    pos_label: Any | None
    group_columns: list[str]
    group_keys: list[str]
    counts: np.ndarray  # (G, K, K)
    overall: dict[str, Any]
    by_group: dict[str, dict[str, float]]
    disparities: dict[str, float]
    privileged: dict[str, Any] | None = None
    ci: dict[str, Any] | None = field(default=None)

    @property
    def is_binary(self) -> bool:
        return self.pos_label is not None

    def to_dict(self) -> dict[str, Any]:
        # "groups" says what the disparities are relative to: the group column(s) and, for
        # AIF360's signed metrics (unprivileged - privileged), the privileged value.
        out = {"n": self.n, "groups": {"columns": self.group_columns,
                                       "privileged": self.privileged},
               "overall": self.overall, "by_group": self.by_group,
               "disparities": self.disparities}
        if self.ci is not None:
            out["ci"] = self.ci
        return _jsonable(out)

    def flat_metrics(self) -> dict[str, float]:
        """Plain names for the results store: ``accuracy``, ..., ``group.<key>.<metric>``."""
        flat: dict[str, float] = {}
        for name, value in self.overall.items():
            if isinstance(value, (int, float)) and name != "pos_label":
                flat[name] = float(value)
        for cls, vals in self.overall["per_class"].items():
            for name, value in vals.items():
                flat[f"class.{cls}.{name}"] = float(value)
        flat.update({k: float(v) for k, v in self.disparities.items()})
        for key, vals in self.by_group.items():
            for name, value in vals.items():
                flat[f"group.{key}.{name}"] = float(value)
        return flat

    def by_group_frame(self) -> pd.DataFrame:
        return pd.DataFrame.from_dict(self.by_group, orient="index")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    return obj


def _positive_class(classes: np.ndarray, pos_label: Any) -> int | None:
    """Index of the positive class for binary problems, None for multi-class."""
    if pos_label is not None:
        matches = [i for i, c in enumerate(classes) if str(c) == str(pos_label)]
        if not matches:
            raise TrustlabError(f"pos_label {pos_label!r} is not one of the labels "
                                f"{[_jsonable(c) for c in classes]}")
        if len(classes) > 2:
            raise TrustlabError("pos_label given but the labels have more than two classes")
        return matches[0]
    if len(classes) != 2:
        return None
    return 1  # sorted: 1 over 0, True over False, and the later of two strings


def _privileged_column(names: list[str], col_codes: list[np.ndarray],
                       col_values: list[np.ndarray], privileged: Any) -> np.ndarray:
    """Per-row membership of the privileged value in the single, binary group column."""
    if len(names) != 1:
        raise TrustlabError(
            f"--privileged needs exactly one binary group column, got {len(names)} "
            f"({', '.join(names)}); audit each column on its own for SPD and disparate impact")
    values = col_values[0]
    matches = [j for j, v in enumerate(values) if str(v) == str(privileged)]
    if not matches:
        raise TrustlabError(f"privileged value {privileged!r} does not occur in group column "
                            f"{names[0]!r} (values: {', '.join(map(str, values[:10]))})")
    if len(values) != 2:
        raise TrustlabError(f"--privileged needs a binary group, but {names[0]!r} has "
                            f"{len(values)} values")
    return col_codes[0] == matches[0]


def _derive(C: np.ndarray, pos: int | None, priv_member: np.ndarray | None
            ) -> tuple[dict, dict, dict]:
    """Overall, per-group and disparity arrays from counts ``C[..., G, K, K]``."""
    overall_C = C.sum(axis=-3)
    overall = cm.classification_metrics(overall_C)
    if pos is not None:
        overall.update({k: v for k, v in cm.binary_rates(overall_C, pos).items()
                        if k in ("selection_rate", "tpr", "fpr")})
        by_group = cm.binary_rates(C, pos)
    else:
        by_group = cm.group_accuracy(C)
    disp = cm.disparities(by_group, binary=pos is not None)
    if pos is not None:
        disp.update(cm.inequality_indices(C, pos))
    if priv_member is not None:
        # Collapse intersections onto the privileged column's two values.
        member = priv_member[:, None, None]
        priv = cm.binary_rates((C * member).sum(axis=-3), pos)
        unpriv = cm.binary_rates((C * ~member).sum(axis=-3), pos)
        disp.pop("false_positive_rate_difference")  # AIF360's signed one replaces it
        disp.update(cm.privileged_contrast(unpriv, priv))
    return overall, by_group, disp


def check_ci(ci: Any) -> None:
    """``ci`` is None/False (no interval), True (0.95) or a level strictly in (0, 1)."""
    if ci is not None and ci is not False and not (ci is True or 0 < float(ci) < 1):
        raise TrustlabError(f"ci must be a confidence level between 0 and 1 (e.g. 0.95), "
                            f"got {ci}")


def audit(y_true: Any, y_pred: Any, groups: Any, *, y_score: Any = None,
          privileged: Any = None, ci: float | bool | None = None, pos_label: Any = None,
          n_boot: int = 1000, ci_seed: int = 0, multiclass: bool = False,
          row_counts: Any = None) -> AuditResult:
    """Audit predictions for bias.

    ``groups`` is one column (array or Series) or several (DataFrame or dict); with several,
    groups are their intersections, keyed ``"a|b"``. Disparities over all groups are
    fairlearn's (max - min). ``privileged`` names the privileged value of a binary group
    column and adds AIF360's metrics relative to it, signed unprivileged - privileged
    (``statistical_parity_difference``, ``disparate_impact``,
    ``true_positive_rate_difference``, ``false_positive_rate_difference``, ...).
    ``ci`` (e.g. ``0.95``) adds percentile bootstrap intervals, resampling within each
    group. ``y_score`` (P(positive)) adds ROC AUC overall and per group. A prediction
    that is not among the labels is an error unless ``multiclass`` (then every value seen
    is a class). ``row_counts`` says how many rows each input row stands for (what
    :func:`~trustlab.metrics.stream.audit_table` passes after counting a table chunk by
    chunk; no ``y_score`` then).
    """
    check_ci(ci)
    t = as_column(y_true, "y_true")
    p = as_column(y_pred, "y_pred")
    n_in = len(t)
    if len(p) != n_in:
        raise TrustlabError(f"y_true has {n_in} rows but y_pred has {len(p)}")
    if n_in == 0:
        raise TrustlabError("nothing to audit: there are no rows")
    weights = None
    if row_counts is not None:
        weights = np.asarray(row_counts, dtype=np.float64)
        if weights.shape != (n_in,) or (weights < 0).any():
            raise TrustlabError("row_counts must be one non-negative count per row")
        if y_score is not None:
            raise TrustlabError("ROC AUC needs every row's score: not with row_counts")
    n = int(round(weights.sum())) if weights is not None else n_in
    columns = group_columns(groups, n_in)
    if not multiclass:
        _check_predictions_are_labels(t, p)
    [t_codes, p_codes], classes = factorize(t, p, what="labels")
    binary01 = classes.dtype.kind in "biuf" and set(classes.tolist()) <= {0, 1}
    if not binary01 and not np.intersect1d(np.unique(t_codes), np.unique(p_codes)).size:
        label_vals = [str(v) for v in classes[np.unique(t_codes)][:5]]
        pred_vals = [str(v) for v in classes[np.unique(p_codes)][:5]]
        raise TrustlabError(
            f"no predicted value occurs among the labels (labels: {', '.join(label_vals)}; "
            f"predictions: {', '.join(pred_vals)}); are they coded the same way?")
    if set(np.asarray(classes).tolist()) <= {0, 1} and len(classes) < 2 \
            and np.asarray(classes).dtype.kind in "biu":
        classes = np.array([0, 1])  # a 0/1 task where one class happens to be absent
        t_codes, p_codes = np.asarray(t, np.int64), np.asarray(p, np.int64)
    pos = _positive_class(classes, pos_label)
    if pos == 0:  # keep the positive class at index 1 so binary_rates is uniform
        classes = classes[::-1]
        t_codes, p_codes = 1 - t_codes, 1 - p_codes
        pos = 1
    g_codes, keys, col_codes, col_values = encode_groups(columns)
    C = cm.confusion_counts(t_codes, p_codes, g_codes, len(classes), len(keys), weights)

    priv_member = None
    priv_info = None
    if privileged is not None:
        if pos is None:
            raise TrustlabError("--privileged needs binary labels (two classes)")
        row_member = _privileged_column(list(columns), col_codes, col_values, privileged)
        priv_member = np.zeros(len(keys), dtype=bool)
        priv_member[g_codes[row_member]] = True
        priv_info = {"column": next(iter(columns)), "value": privileged}

    overall_a, by_group_a, disp_a = _derive(C, pos, priv_member)
    class_names = [_jsonable(c) for c in classes]
    overall: dict[str, Any] = {
        "accuracy": float(overall_a["accuracy"]),
        "balanced_accuracy": float(overall_a["balanced_accuracy"]),
        "macro_f1": float(overall_a["macro_f1"]),
    }
    if pos is not None:
        overall.update({
            "pos_label": class_names[pos],
            "precision": float(overall_a["precision"][pos]),
            "recall": float(overall_a["recall"][pos]),
            "f1": float(overall_a["f1"][pos]),
            "selection_rate": float(overall_a["selection_rate"]),
            "tpr": float(overall_a["tpr"]),
            "fpr": float(overall_a["fpr"]),
        })
    overall["per_class"] = {
        str(c): {"precision": float(overall_a["precision"][i]),
                 "recall": float(overall_a["recall"][i]),
                 "f1": float(overall_a["f1"][i]),
                 "support": int(overall_a["support"][i])}
        for i, c in enumerate(class_names)}
    overall["confusion_matrix"] = {"labels": class_names,
                                   "matrix": C.sum(axis=0).tolist()}
    names = GROUP_METRICS_BINARY if pos is not None else GROUP_METRICS_MULTI
    by_group = {key: {m: (int(by_group_a[m][g]) if m == "count" else float(by_group_a[m][g]))
                      for m in names}
                for g, key in enumerate(keys)}
    disparities = {k: float(v) for k, v in disp_a.items()}

    if y_score is not None:
        _add_auc(overall, by_group, t_codes, y_score, g_codes, keys, pos)

    result = AuditResult(n=n, classes=class_names, pos_label=class_names[pos] if pos is not None
                         else None, group_columns=list(columns), group_keys=keys,
                         counts=C, overall=overall, by_group=by_group,
                         disparities=disparities, privileged=priv_info)
    if ci is not None and ci is not False:
        level = 0.95 if ci is True else float(ci)
        result.ci = _bootstrap(C, pos, priv_member, keys, level, n_boot, ci_seed)
    return result


def _check_predictions_are_labels(t, p) -> None:
    """Predictions with a value no label has (a 2 among 0/1 labels) would silently turn a
    binary audit into a multi-class one without fairness rates: refuse them."""
    # distinct values first (a hash pass), then strings of those few only
    labels = {str(v) for v in pd.unique(pd.Series(np.asarray(t)))}
    preds = {str(v) for v in pd.unique(pd.Series(np.asarray(p)))}
    if labels | preds <= {"0", "1", "0.0", "1.0", "True", "False"}:
        return  # a 0/1 task where the labels happen to hold one class only
    extra = sorted(preds - labels)
    if extra and labels & preds:
        shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise TrustlabError(
            f"predictions contain values that are not labels ({shown}; labels: "
            f"{', '.join(sorted(labels)[:5])}); pass --multiclass (multiclass=True) to audit "
            "every value as a class")


def _add_auc(overall, by_group, t_codes, y_score, g_codes, keys, pos) -> None:
    from sklearn.metrics import roc_auc_score

    if pos is None:
        raise TrustlabError("--score needs binary labels (two classes)")
    try:
        s = np.asarray(as_column(y_score, "y_score"), dtype=np.float64)
    except (TypeError, ValueError):
        raise TrustlabError("scores must be numbers (probabilities of the positive "
                            "class)") from None
    if len(s) != len(t_codes):
        raise TrustlabError(f"y_score has {len(s)} rows but labels have {len(t_codes)}")
    if np.isnan(s).any():
        raise TrustlabError(f"y_score has {int(np.isnan(s).sum())} missing values")
    y = t_codes == pos

    def auc(mask):
        yy = y[mask]
        return float(roc_auc_score(yy, s[mask])) if 0 < yy.sum() < len(yy) else float("nan")

    overall["roc_auc"] = auc(slice(None))
    for g, key in enumerate(keys):
        by_group[key]["roc_auc"] = auc(g_codes == g)


def stratified_draws(C: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of the counts ``C[G, K, K]`` resampled within each group: group
    g keeps its n_g rows, drawn as Multinomial(n_g, C_g / n_g). A small group is never
    absent from a replicate (an unstratified draw would leave a 3-row group out of ~5 % of
    them and score it 0 there)."""
    G = C.shape[0]
    flat = C.reshape(G, -1)
    draws = np.zeros((n_boot,) + flat.shape, dtype=np.int64)
    for g in range(G):
        n_g = int(flat[g].sum())
        if n_g:
            draws[:, g] = rng.multinomial(n_g, flat[g] / n_g, size=n_boot)
    return draws.reshape((n_boot,) + C.shape)


def _bootstrap(C, pos, priv_member, keys, level, n_boot, seed) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    draws = stratified_draws(C, n_boot, rng)
    overall_b, by_group_b, disp_b = _derive(draws, pos, priv_member)
    lo_q, hi_q = (1 - level) / 2 * 100, (1 + level) / 2 * 100

    def interval(a):
        a = np.asarray(a, dtype=np.float64)
        lo, hi = np.nanpercentile(a, [lo_q, hi_q], axis=0)
        return lo, hi

    overall_names = ["accuracy", "balanced_accuracy", "macro_f1"]
    if pos is not None:
        overall_names += ["selection_rate", "tpr", "fpr"]
    ov = {}
    for m in overall_names:
        lo, hi = interval(overall_b[m])
        ov[m] = [float(lo), float(hi)]
    bg = {}
    names = [m for m in (GROUP_METRICS_BINARY if pos is not None else GROUP_METRICS_MULTI)
             if m != "count"]
    for m in names:
        lo, hi = interval(by_group_b[m])
        for g, key in enumerate(keys):
            bg.setdefault(key, {})[m] = [float(lo[g]), float(hi[g])]
    dp = {}
    for m, arr in disp_b.items():
        lo, hi = interval(arr)
        dp[m] = [float(lo), float(hi)]
    return {"level": level, "n_boot": n_boot,
            "method": "percentile bootstrap, resampled within each group",
            "overall": ov, "by_group": bg, "disparities": dp}
