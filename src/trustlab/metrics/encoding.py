"""Turn labels and group columns into small integer codes, fast.

Integer labels in a modest range are mapped with a lookup table (O(n), no sort); anything
else goes through :func:`pandas.factorize` (hashing), which also runs natively on Arrow
string columns. Both keep the sorted order of the values so groups and classes come out
in a predictable order, as in fairlearn. Missing values show up as code -1 for free.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trustlab.errors import TrustlabError

_LUT_MAX = 1 << 20  # integer values spanning up to this use the lookup-table path
JOINT_LIMIT = 2 ** 62  # mixed-radix joint codes are re-densified before reaching this


def as_column(values: Any, what: str):
    """A 1-D numpy array or pandas Series (kept as is: factorize is fastest on it)."""
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    if isinstance(values, pd.Index):
        return values.to_series().reset_index(drop=True)
    arr = np.asarray(values)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise TrustlabError(f"{what} must be one-dimensional, got shape {arr.shape}")
    return arr


def _small_int_codes(arrays) -> tuple[list[np.ndarray], np.ndarray] | None:
    """Lookup-table codes when every array holds integers (or bools) in a modest range."""
    if any(isinstance(a, pd.Series) and a.dtype.kind not in "biu" for a in arrays):
        return None  # e.g. a categorical: to_numpy would materialize every value
    nps = [a.to_numpy() if isinstance(a, pd.Series) else a for a in arrays]
    if not all(isinstance(a, np.ndarray) and a.dtype.kind in "biu" for a in nps):
        return None
    is_bool = all(a.dtype.kind == "b" for a in nps)
    nps = [a.astype(np.int64) if a.dtype.kind == "b" else a for a in nps]
    nonempty = [a for a in nps if a.size]
    lo = min((int(a.min()) for a in nonempty), default=0)
    hi = max((int(a.max()) for a in nonempty), default=0)
    if hi - lo >= _LUT_MAX:
        return None
    present = np.zeros(hi - lo + 1, dtype=bool)
    shifted = [a - lo if lo else a for a in nps]
    for a in shifted:
        present[a] = True
    lut = np.cumsum(present) - 1
    values = np.flatnonzero(present) + lo
    return [lut[a] for a in shifted], values.astype(bool) if is_bool else values


def _categorical_codes(column: pd.Series) -> tuple[list[np.ndarray], np.ndarray]:
    """A categorical column's own codes, renumbered over its *present* categories in
    sorted order (no pass over the values, no hashing)."""
    codes = column.cat.codes.to_numpy()
    cats = np.asarray(column.cat.categories)
    present = np.bincount(codes[codes >= 0], minlength=len(cats)) > 0
    kept = np.flatnonzero(present)
    try:
        order = kept[np.argsort(cats[kept], kind="stable")]
    except TypeError:  # categories of mixed types (1 and "a"): no order; hash instead
        codes, values = pd.factorize(column.astype(object), sort=True)
        return [np.asarray(codes, dtype=np.int64)], np.asarray(values)
    lut = np.full(len(cats) + 1, -1, dtype=np.int64)  # the last slot maps code -1
    lut[order] = np.arange(len(order))
    return [lut[codes]], cats[order]


def factorize(*arrays, what: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Codes for each array over their joint sorted set of values, and those values."""
    fast = _small_int_codes(arrays)
    if fast is not None:
        return fast
    if (len(arrays) == 1 and isinstance(arrays[0], pd.Series)
            and isinstance(arrays[0].dtype, pd.CategoricalDtype)):
        parts, values = _categorical_codes(arrays[0])
        if (parts[0] < 0).any():
            raise TrustlabError(f"{what} has {int((parts[0] < 0).sum())} missing values")
        return parts, values
    if len(arrays) == 1:
        codes, values = pd.factorize(arrays[0], sort=True)
        parts = [np.asarray(codes, dtype=np.int64)]
    else:
        joined = pd.concat([pd.Series(a) for a in arrays], ignore_index=True)
        codes, values = pd.factorize(joined, sort=True)
        codes = np.asarray(codes, dtype=np.int64)
        bounds = np.cumsum([0] + [len(a) for a in arrays])
        parts = [codes[bounds[i]:bounds[i + 1]] for i in range(len(arrays))]
    n_missing = sum(int((c < 0).sum()) for c in parts)
    if n_missing:
        raise TrustlabError(f"{what} has {n_missing} missing values")
    return parts, np.asarray(values)


def group_columns(groups: Any, n: int) -> dict[str, Any]:
    """Normalize the accepted group inputs to ``{column name: 1-D values}``."""
    if isinstance(groups, pd.DataFrame):
        dup = groups.columns[groups.columns.duplicated()]
        if len(dup):
            raise TrustlabError(f"group column {str(dup[0])!r} is given more than once")
        cols = {str(c): groups[c].reset_index(drop=True) for c in groups.columns}
    elif isinstance(groups, pd.Series):
        cols = {str(groups.name) if groups.name is not None else "group":
                groups.reset_index(drop=True)}
    elif isinstance(groups, dict):
        cols = {str(k): as_column(v, f"group {k!r}") for k, v in groups.items()}
    else:
        arr = np.asarray(groups) if not isinstance(groups, list) or not groups or \
            not isinstance(groups[0], (list, np.ndarray, pd.Series)) else None
        if arr is None:  # a list of columns
            cols = {f"group{i}": as_column(v, "group") for i, v in enumerate(groups)}
        elif arr.ndim == 1:
            cols = {"group": arr}
        elif arr.ndim == 2:
            cols = {f"group{i}": arr[:, i] for i in range(arr.shape[1])}
        else:
            raise TrustlabError(f"groups must be 1-D or 2-D, got shape {arr.shape}")
    if not cols:
        raise TrustlabError("at least one group column is needed")
    for name, values in cols.items():
        if len(values) != n:
            raise TrustlabError(f"group column {name!r} has {len(values)} rows but labels have {n}")
    return cols


def encode_groups(columns: dict[str, Any]
                  ) -> tuple[np.ndarray, list[str], list[np.ndarray], list[np.ndarray]]:
    """Codes of the intersections of all columns, their keys ("a|b"), and per column its
    row codes and its sorted values. Only intersections that occur get a code, so no group
    is ever empty."""
    col_codes, col_values = [], []
    for name, values in columns.items():
        [codes], uniques = factorize(values, what=f"group column {name!r}")
        if len(columns) > 1 and any("|" in str(v) for v in uniques):
            bad = next(str(v) for v in uniques if "|" in str(v))
            raise TrustlabError(f"group column {name!r} has the value {bad!r}; '|' joins "
                                "the keys of intersections, so it cannot be part of a value")
        col_codes.append(codes)
        col_values.append(uniques)
    if len(col_codes) == 1:
        return col_codes[0], [str(v) for v in col_values[0]], col_codes, col_values
    combined = col_codes[0].astype(np.int64)
    span = len(col_values[0])
    for codes, uniques in zip(col_codes[1:], col_values[1:]):
        if span * len(uniques) >= JOINT_LIMIT:  # re-densify before int64 would overflow
            [combined], _ = factorize(combined, what="group intersection")
            span = int(combined.max()) + 1
        combined = combined * len(uniques) + codes  # mixed radix keeps the sorted order
        span *= len(uniques)
    [dense], present = factorize(combined, what="group intersection")
    # Each intersection's key from the column codes of its first row (the joint code may
    # have been re-densified, so it is not decoded by radices).
    first = np.empty(len(present), dtype=np.int64)
    first[dense[::-1]] = np.arange(len(dense))[::-1]
    keys = ["|".join(str(values[codes[i]]) for codes, values in zip(col_codes, col_values))
            for i in first.tolist()]
    return dense, keys, col_codes, col_values
