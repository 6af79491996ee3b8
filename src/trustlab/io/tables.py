"""Read a CSV or Parquet file of predictions into a DataFrame, or fail with one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trustlab.errors import TrustlabError

PARQUET_SUFFIXES = {".parquet", ".pq", ".parq"}


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise TrustlabError(f"{path}: no such file")
    if path.is_dir():
        raise TrustlabError(f"{path}: is a directory, expected a CSV or Parquet file")
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise TrustlabError(f"{path}: file is empty") from None
    except PermissionError:
        raise TrustlabError(f"{path}: permission denied") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise TrustlabError(f"{path}: cannot parse as CSV ({_first_line(exc)})") from None
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise TrustlabError(f"{path}: cannot read ({_first_line(exc)})") from None
    if frame.empty:
        raise TrustlabError(f"{path}: has a header but no rows")
    return frame


def require_columns(frame: pd.DataFrame, columns: list[str], path: str | Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TrustlabError(
            f"{path}: no column {missing[0]!r} (columns: {', '.join(map(str, frame.columns))})")
    for col in columns:
        n_missing = int(frame[col].isna().sum())
        if n_missing:
            raise TrustlabError(f"{path}: column {col!r} has {n_missing} missing values")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
