"""Turn labels and group columns into small integer codes, fast.

Integer labels in a modest range are mapped with a lookup table (O(n), no sort); anything
else goes through :func:`pandas.factorize` (hashing). Both keep the sorted order of the
values so groups and classes come out in a predictable order, as in fairlearn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trustlab.errors import TrustlabError

_LUT_MAX = 1 << 20  # integer values up to this use the lookup-table path


def _as_1d(values: Any, what: str) -> np.ndarray:
    if isinstance(values, (pd.Series, pd.Index)):
        arr = values.to_numpy()
    else:
        arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise TrustlabError(f"{what} must be one-dimensional, got shape {arr.shape}")
    return arr


def _has_missing(arr: np.ndarray) -> bool:
    if arr.dtype.kind in "biu":
        return False
    if arr.dtype.kind in "fc":
        return bool(np.isnan(arr).any())
    return bool(pd.isna(arr).any())


def factorize(*arrays: np.ndarray, what: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Codes for each array over their joint sorted set of values, and those values."""
    for arr in arrays:
        if _has_missing(arr):
            raise TrustlabError(f"{what} has {int(pd.isna(arr).sum())} missing values")
    all_bool = all(a.dtype.kind == "b" for a in arrays)
    if all_bool:
        arrays = tuple(a.astype(np.int64) for a in arrays)
    if all(a.dtype.kind in "iu" for a in arrays):
        lo = min(int(a.min()) for a in arrays if a.size) if any(a.size for a in arrays) else 0
        hi = max(int(a.max()) for a in arrays if a.size) if any(a.size for a in arrays) else 0
        if hi - lo < _LUT_MAX:
            present = np.zeros(hi - lo + 1, dtype=bool)
            for a in arrays:
                present[a - lo if lo else a] = True
            lut = np.cumsum(present) - 1
            values = np.flatnonzero(present) + lo
            if all_bool:
                values = values.astype(bool)
            return [lut[a - lo if lo else a] for a in arrays], values
    if len(arrays) == 1:
        codes, values = pd.factorize(arrays[0], sort=True)
        return [codes.astype(np.int64)], np.asarray(values)
    joined = np.concatenate([a.astype(object) if a.dtype != arrays[0].dtype else a
                             for a in arrays])
    codes, values = pd.factorize(joined, sort=True)
    out, start = [], 0
    for a in arrays:
        out.append(codes[start:start + len(a)].astype(np.int64))
        start += len(a)
    return out, np.asarray(values)


def group_frame(groups: Any, n: int) -> pd.DataFrame:
    """Normalize the accepted group inputs to a DataFrame with one column per attribute."""
    if isinstance(groups, pd.DataFrame):
        frame = groups.reset_index(drop=True)
    elif isinstance(groups, pd.Series):
        frame = groups.reset_index(drop=True).to_frame(name=groups.name or "group")
    elif isinstance(groups, dict):
        frame = pd.DataFrame({k: _as_1d(v, f"group {k!r}") for k, v in groups.items()})
    else:
        arr = np.asarray(groups)
        if arr.ndim == 1:
            frame = pd.DataFrame({"group": arr})
        elif arr.ndim == 2:
            frame = pd.DataFrame(arr, columns=[f"group{i}" for i in range(arr.shape[1])])
        else:
            raise TrustlabError(f"groups must be 1-D or 2-D, got shape {arr.shape}")
    if frame.shape[1] == 0:
        raise TrustlabError("at least one group column is needed")
    if len(frame) != n:
        raise TrustlabError(f"groups have {len(frame)} rows but labels have {n}")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def encode_groups(frame: pd.DataFrame) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    """Codes of the intersections of all columns, their keys ("a|b"), per-column values.

    Only intersections that occur get a code, so no group is ever empty.
    """
    col_codes, col_values = [], []
    for col in frame.columns:
        [codes], values = factorize(frame[col].to_numpy(), what=f"group column {col!r}")
        col_codes.append(codes)
        col_values.append(values)
    combined = col_codes[0]
    for codes, values in zip(col_codes[1:], col_values[1:]):
        combined = combined * len(values) + codes  # mixed radix keeps sorted order
    if len(col_codes) == 1:
        keys = [str(v) for v in col_values[0]]
        return combined, keys, col_values
    [dense], present = factorize(combined, what="group intersection")
    radices = [len(v) for v in col_values]
    keys = []
    for code in present:
        parts, rem = [], int(code)
        for values, radix in zip(reversed(col_values), reversed(radices)):
            parts.append(str(values[rem % radix]))
            rem //= radix
        keys.append("|".join(reversed(parts)))
    return dense, keys, col_values
