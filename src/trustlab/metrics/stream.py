"""Audit a table too large for memory: read it in chunks (Parquet record batches, CSV
chunks, the partitions of a Dask DataFrame), count each chunk's distinct (group columns,
label, prediction) combinations, and audit the counts.

Memory holds one chunk plus the combination counts (groups x classes²), whatever the
number of rows; the metrics, disparities and bootstrap intervals are exactly those of
:func:`~trustlab.metrics.audit` on the whole table, since all of them derive from the
confusion counts. Per chunk a column becomes integer codes (a categorical column, e.g.
Parquet's dictionary encoding, gives them for free; others are hashed once by
``pandas.factorize``), the codes are combined into one integer per row and counted with
one ``bincount``. (Hand-written: neither pandas nor Dask counts joint categories this way
without materializing a group-by per chunk.)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from trustlab.errors import TrustlabError
from trustlab.io.tables import PARQUET_SUFFIXES, _first_line
from trustlab.metrics import encoding

CHUNK_ROWS = 1 << 20
_BINCOUNT_MAX = 1 << 24  # joint code spaces up to this are counted with a bincount


def _is_dask(obj: Any) -> bool:
    return hasattr(obj, "npartitions") and hasattr(obj, "partitions")


def table_columns(source: Any) -> list[str]:
    """The column names of a file, a pandas or a Dask DataFrame (without reading rows)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix.lower() in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    return [str(c) for c in source.columns]


def iter_chunks(source: Any, columns: list[str], chunk_rows: int = CHUNK_ROWS) -> Iterator:
    """``columns`` of ``source`` a chunk at a time: a Parquet file by Arrow record batches,
    a CSV file by ``chunk_rows`` (pandas), a Dask DataFrame by partition, a pandas
    DataFrame whole."""
    if _is_dask(source):
        for i in range(source.npartitions):
            yield source.partitions[i][columns].compute()
        return
    if isinstance(source, pd.DataFrame):
        yield source[columns]
        return
    path = Path(source)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        import pyarrow.parquet as pq

        # Arrow record batches as they are: count_combinations reads dictionary indices
        # and integer buffers without a pandas conversion
        yield from pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=columns)
    else:
        yield from pd.read_csv(path, usecols=columns, chunksize=chunk_rows)


def _codes(column) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1: missing) and the values they stand for, by the cheapest route: a
    dictionary-encoded Arrow column or a pandas categorical already has them; integers go
    through the in-memory audit's factorize; anything else is hashed by pandas.factorize."""
    import pyarrow as pa

    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if pa.types.is_dictionary(column.type):
            codes = column.indices.to_numpy(zero_copy_only=False)
            if column.null_count:
                codes = np.where(column.is_valid().to_numpy(zero_copy_only=False), codes, -1)
            return codes.astype(np.int64), np.asarray(column.dictionary.to_pylist(),
                                                      dtype=object)
        if pa.types.is_integer(column.type) and not column.null_count and len(column):
            # the in-memory audit's integer path (a lookup table, or hashing when wide)
            [codes], uniques = encoding.factorize(column.to_numpy(), what="column")
            return codes, uniques
        column = column.to_pandas()
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy().astype(np.int64), np.asarray(column.cat.categories)
    codes, uniques = pd.factorize(column)
    return np.asarray(codes, dtype=np.int64), np.asarray(uniques)


def count_combinations(frame, columns: list[str]) -> Counter:
    """How many rows of ``frame`` (a pandas DataFrame or an Arrow record batch) hold each
    combination of ``columns``' values (keys are tuples of plain Python values). Missing
    values are an error."""
    codes, uniques = [], []
    for name in columns:
        c, u = _codes(frame.column(name) if hasattr(frame, "schema") else frame[name])
        if len(c) and c.min() < 0:
            raise TrustlabError(f"column {name!r} has {int((c < 0).sum())} missing values")
        codes.append(c)
        uniques.append(u)
    radices = [max(len(u), 1) for u in uniques]
    out: Counter = Counter()
    if float(np.prod(radices, dtype=np.float64)) >= encoding.JOINT_LIMIT:
        # the joint code would overflow int64: count the distinct code rows instead
        rows, counts = np.unique(np.stack(codes, axis=1), axis=0, return_counts=True)
        for row, n in zip(rows.tolist(), counts.tolist()):
            out[tuple(_plain(u[c]) for u, c in zip(uniques, row))] += n
        return out
    joint = np.zeros(len(frame), dtype=np.int64)
    for c, r in zip(codes, radices):
        joint = joint * r + c
    size = int(np.prod(radices, dtype=np.float64))
    if size <= _BINCOUNT_MAX:
        counts = np.bincount(joint, minlength=size)
        present = np.flatnonzero(counts)
        counts = counts[present]
    else:
        present, counts = np.unique(joint, return_counts=True)
    for code, n in zip(present.tolist(), counts.tolist()):
        key = []
        for u, r in zip(reversed(uniques), reversed(radices)):
            key.append(_plain(u[code % r]))
            code //= r
        out[tuple(reversed(key))] += n
    return out


def _plain(v):
    """A plain Python value for a key (datetimes as pandas Timestamps, as in memory)."""
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return pd.Timestamp(v) if isinstance(v, np.datetime64) else pd.Timedelta(v)
    return v.item() if isinstance(v, np.generic) else v


def _unify_types(total: Counter, columns: list[str]) -> Counter:
    """CSV chunks are typed one at a time: a column read as numbers in one chunk and as
    text in another (1, 2, then "x") would split its groups. Such a column is made text
    throughout, as reading the whole file at once would make it."""
    keys = list(total)
    mixed = [i for i in range(len(columns))
             if len({isinstance(k[i], str) for k in keys}) > 1]
    if not mixed:
        return total
    out: Counter = Counter()
    for key, n in total.items():
        out[tuple(str(v) if i in mixed and not isinstance(v, str) else v
                  for i, v in enumerate(key))] += n
    return out


def audit_table(source: Any, *, label: str, pred: str, groups: list[str],
                chunk_rows: int = CHUNK_ROWS, **audit_kwargs: Any):
    """:func:`~trustlab.metrics.audit` of a table read a chunk at a time: a CSV or Parquet
    path, a pandas DataFrame or a Dask DataFrame with columns ``label``, ``pred`` and
    ``groups``. Keyword arguments go to ``audit`` (``privileged``, ``ci``, ``pos_label``,
    ``multiclass``, ...; not ``y_score``: ROC AUC needs every score)."""
    from trustlab.metrics.audit import audit

    if audit_kwargs.get("y_score") is not None:
        raise TrustlabError("ROC AUC needs every row's score; audit the scores in memory")
    from trustlab.metrics.audit import check_ci

    check_ci(audit_kwargs.get("ci"))  # before reading a possibly huge file
    groups = list(groups)
    columns = list(dict.fromkeys([label, pred, *groups]))  # label may also be the prediction
    where = source if isinstance(source, (str, Path)) else "the table"
    try:
        have = table_columns(source)
    except Exception as exc:  # pyarrow / pandas raise many types for unreadable files
        raise TrustlabError(f"{where}: cannot read ({_first_line(exc)})") from None
    missing = [c for c in columns if c not in have]
    if missing:
        raise TrustlabError(f"{where}: no column {missing[0]!r} (columns: {', '.join(have)})")
    total: Counter = Counter()
    try:
        for chunk in iter_chunks(source, columns, chunk_rows):
            total.update(count_combinations(chunk, columns))
    except TrustlabError as exc:
        raise TrustlabError(f"{where}: {exc}") from None
    except Exception as exc:
        raise TrustlabError(f"{where}: cannot read ({_first_line(exc)})") from None
    if not total:
        raise TrustlabError(f"{where}: has a header but no rows")
    total = _unify_types(total, columns)
    keys = list(total)
    counts = np.array([total[k] for k in keys], dtype=np.float64)
    values = list(zip(*keys))
    frame = pd.DataFrame({c: pd.Series(v) for c, v in zip(columns, values)})
    return audit(frame[label], frame[pred], frame[groups], row_counts=counts, **audit_kwargs)


__all__ = ["CHUNK_ROWS", "audit_table", "count_combinations", "iter_chunks", "table_columns"]
