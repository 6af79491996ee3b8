"""The results store: one SQLite file per experiment directory (``DIR/results.sqlite``).

One row per trial, keyed by the trial id, written in its own transaction as soon as the
trial finishes, so a killed sweep loses no finished trial and a re-run can never duplicate
one (the id is the primary key). Only the driver process writes. The experiment's YAML
and resolved plan are stored too, so ``trustlab results/report DIR`` need nothing else.
"""

from __future__ import annotations

import functools
import json
import math
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from trustlab.errors import TrustlabError

DB_NAME = "results.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiment (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    executor    TEXT,
    workers     INTEGER,
    n_planned   INTEGER,
    n_skipped   INTEGER,
    n_ok        INTEGER,
    n_failed    INTEGER,
    wall_s      REAL,
    versions    TEXT,
    overrides   TEXT,
    command     TEXT
);
CREATE TABLE IF NOT EXISTS trials (
    trial_id    TEXT PRIMARY KEY,
    ordinal     INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    seed        INTEGER NOT NULL,
    params      TEXT NOT NULL,
    point       TEXT NOT NULL,
    config      TEXT NOT NULL,
    metrics     TEXT,
    error       TEXT,
    traceback   TEXT,
    started_at  TEXT,
    finished_at TEXT,
    duration_s  REAL,
    versions    TEXT,
    worker      TEXT,
    attempts    INTEGER NOT NULL DEFAULT 1,
    run_id      INTEGER REFERENCES runs(run_id)
);
"""


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json(obj: Any) -> str:
    return json.dumps(_finite(obj), sort_keys=True, allow_nan=False, default=str)


def _finite(obj: Any) -> Any:
    """NaN/inf are not JSON; a metric that is undefined (e.g. a ratio over 0) is null."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


TABLES = {"experiment", "runs", "trials"}
# Columns added after the first release: a store written before them gets them on its next
# run (readers use .get()).
ADDED_COLUMNS = {"runs": {"command": "TEXT"}}


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, columns in ADDED_COLUMNS.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        for name, sql_type in columns.items():
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")

_F = TypeVar("_F", bound=Callable[..., Any])


def store_error(path: Path, exc: sqlite3.Error) -> TrustlabError:
    """One line for a SQLite failure on ``path``, by its cause (damage, a full disk, an
    I/O error, a lock held too long)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if (name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in str(exc)
            or "Could not decode to UTF-8" in str(exc)):
        return TrustlabError(
            f"{path} is damaged ({exc}); copy its readable trials to a new store with "
            f"`trustlab results {path.parent} --salvage NEW_DIR`")
    if name == "SQLITE_FULL":
        return TrustlabError(f"no space left on the device to write {path}; the trial being "
                             "written is not counted as done: free space and run again to "
                             "resume")
    if name.startswith("SQLITE_IOERR"):
        return TrustlabError(f"cannot read or write {path}: disk I/O error ({exc})")
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return TrustlabError(f"{path} stayed locked by another process ({exc})")
    return TrustlabError(f"{path}: {exc}")


def _guarded(method: _F) -> _F:
    """A SQLite error inside a store method becomes one line naming the file; so does text
    that SQLite returns but that is no longer the JSON we wrote (damage it cannot see)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None
        except ValueError as exc:  # json.JSONDecodeError, undecodable UTF-8
            raise store_error(self.path, sqlite3.DatabaseError(
                f"database disk image is malformed: {str(exc)[:80]}")) from None
    return wrapper  # type: ignore[return-value]


class Store:
    """``create=False`` (results, report, the same-experiment check) opens the file
    read-only and never changes it; ``create=True`` (a run) creates the schema."""

    def __init__(self, directory: str | Path, *, create: bool = False) -> None:
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        if not create and not self.path.is_file():
            raise TrustlabError(f"no results in {self.directory} (expected {self.path}; "
                                "run `trustlab run EXPERIMENT.yaml --out DIR` first)")
        self.conn = self._open_read_only() if not create else self._open_for_writing()
        self.conn.row_factory = sqlite3.Row

    def _open_for_writing(self) -> sqlite3.Connection:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                # WAL: readers (`trustlab results` on a running sweep) never block the writer.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
                _add_missing_columns(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            raise TrustlabError(f"{self.path}: not a usable results database ({exc})") from None
        except OSError as exc:
            raise TrustlabError(f"cannot write results to {self.directory}: "
                                f"{exc.strerror or exc}") from None
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """mode=ro: reading never needs write access. A WAL database in a directory we
        cannot write has no -shm file to map; then read it as immutable (no writer can be
        running there either, it would need that directory)."""
        uri = self.path.resolve().as_uri()
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            conn = sqlite3.connect(uri + query, uri=True, timeout=30, isolation_level=None)
            try:
                tables = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}
            except sqlite3.OperationalError as exc:
                conn.close()
                if query.endswith("immutable=1"):
                    raise TrustlabError(f"cannot read {self.path}: {exc}") from None
                continue
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise TrustlabError(f"{self.path} is not a trustlab results database "
                                    f"({exc})") from None
            if not TABLES <= tables:
                conn.close()
                raise TrustlabError(f"{self.path} is not a trustlab results database "
                                    f"(missing tables: {', '.join(sorted(TABLES - tables))})")
            return conn
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- experiment -------------------------------------------------------------------
    @_guarded
    def meta(self) -> dict[str, Any]:
        rows = self.conn.execute("SELECT key, value FROM experiment").fetchall()
        return {r["key"]: json.loads(r["value"]) for r in rows}

    @_guarded
    def save_experiment(self, values: dict[str, Any]) -> None:
        with self._tx():
            for key, value in values.items():
                self.conn.execute(
                    "INSERT INTO experiment(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, _json(value)))

    # -- runs ----------------------------------------------------------------------------
    @_guarded
    def start_run(self, *, executor: str, workers: int, n_planned: int, n_skipped: int,
                  versions: dict[str, str], overrides: list[str],
                  command: str | None = None) -> int:
        """A run row; ``command`` is the command line that started it (None from Python)."""
        with self._tx():
            cur = self.conn.execute(
                "INSERT INTO runs(started_at, executor, workers, n_planned, n_skipped, "
                "versions, overrides, command) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (utcnow(), executor, workers, n_planned, n_skipped, _json(versions),
                 _json(overrides), command))
            return int(cur.lastrowid)

    @_guarded
    def finish_run(self, run_id: int, *, n_ok: int, n_failed: int, wall_s: float) -> None:
        with self._tx():
            self.conn.execute(
                "UPDATE runs SET finished_at = ?, n_ok = ?, n_failed = ?, wall_s = ? "
                "WHERE run_id = ?", (utcnow(), n_ok, n_failed, wall_s, run_id))

    @_guarded
    def runs(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM runs ORDER BY run_id").fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["versions"] = json.loads(d["versions"] or "{}")
            d["overrides"] = json.loads(d["overrides"] or "[]")
            out.append(d)
        return out

    # -- trials ----------------------------------------------------------------------------
    @_guarded
    def ok_ids(self) -> set[str]:
        rows = self.conn.execute("SELECT trial_id FROM trials WHERE status = 'ok'")
        return {r[0] for r in rows}

    @_guarded
    def record(self, trial, result, run_id: int | None) -> None:
        """Insert or replace one trial's row in one transaction (a retry overwrites a failure)."""
        with self._tx():
            self.conn.execute(
                """INSERT INTO trials(trial_id, ordinal, status, seed, params, point, config,
                       metrics, error, traceback, started_at, finished_at, duration_s,
                       versions, worker, attempts, run_id)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
                   ON CONFLICT(trial_id) DO UPDATE SET
                       ordinal = excluded.ordinal, status = excluded.status,
                       params = excluded.params, point = excluded.point,
                       config = excluded.config, metrics = excluded.metrics,
                       error = excluded.error, traceback = excluded.traceback,
                       started_at = excluded.started_at, finished_at = excluded.finished_at,
                       duration_s = excluded.duration_s, versions = excluded.versions,
                       worker = excluded.worker, attempts = trials.attempts + 1,
                       run_id = excluded.run_id""",
                (trial.trial_id, trial.ordinal, result.status, trial.seed,
                 _json(trial.params), _json(trial.point), _json(trial.config),
                 _json(result.metrics) if result.metrics is not None else None,
                 result.error, result.traceback, result.started_at, result.finished_at,
                 result.duration_s, _json(result.versions), result.worker, run_id))

    @_guarded
    def trials(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM trials ORDER BY ordinal, trial_id").fetchall()
        wanted = set(ids) if ids is not None else None
        out = []
        for r in rows:
            if wanted is not None and r["trial_id"] not in wanted:
                continue
            d = dict(r)
            for key in ("params", "point", "config", "versions"):
                d[key] = json.loads(d[key]) if d[key] else {}
            d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
            out.append(d)
        return out

    # -- helpers ------------------------------------------------------------------------------
    def _tx(self):
        return _Transaction(self.conn)


# -- salvage --------------------------------------------------------------------------------
_JSON_COLUMNS = {"experiment": ("value",), "runs": ("versions", "overrides"),
                 "trials": ("params", "point", "config", "metrics", "versions")}
_PROBE_PAST_END = 256  # rowids tried beyond the largest one seen (rows are dense)


def _readable_rows(conn: sqlite3.Connection, table: str
                   ) -> tuple[list[dict[str, Any]], int, bool]:
    """The rows of ``table`` that can still be read, and how many rowids in the range seen
    could not be, and whether lookups past the largest rowid seen failed (rows there may
    be lost uncounted). A scan stops at the first damaged page, so the table is scanned from both
    ends and every rowid between is looked up alone: each lookup walks its own path down the
    B-tree and fails only if that path is damaged (hand-written: Python's sqlite3 has no
    binding for SQLite's recovery extension)."""
    seen: set[int] = set()
    for order in ("ASC", "DESC"):
        try:
            for (rowid,) in conn.execute(f"SELECT rowid FROM {table} ORDER BY rowid {order}"):
                seen.add(int(rowid))
        except sqlite3.DatabaseError:
            pass
    rows, lost, misses, rowid = [], 0, 0, 0
    tail_damaged = False
    top = max(seen, default=0)
    while rowid < top or misses < _PROBE_PAST_END:
        rowid += 1
        try:
            row = conn.execute(f"SELECT * FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            # past the largest rowid seen, a damaged path counts toward the stop too (the
            # table's last pages are the likeliest to be torn)
            lost += rowid <= top
            misses += rowid > top
            tail_damaged |= rowid > top
            continue
        if row is None:
            misses += rowid > top
            continue
        misses = 0
        record = dict(row)
        try:  # a row whose JSON was hit by the damage is lost too
            for col in _JSON_COLUMNS[table]:
                if record.get(col):
                    json.loads(record[col])
        except ValueError:
            lost += 1
            continue
        rows.append(record)
    return rows, lost, tail_damaged


@dataclass
class SalvageReport:
    target: Path
    copied: dict[str, int]     # table -> rows copied
    lost: dict[str, int]       # table -> rows seen but unreadable
    tail_damaged: bool = False  # the trials table's end was unreadable: more may be lost

    def line(self, source: Path) -> str:
        t = self.copied.get("trials", 0)
        lost = self.lost.get("trials", 0)
        meta = "" if self.copied.get("experiment") else (
            "; the experiment's description was unreadable: run its YAML with "
            f"`--out {self.target}` to restore it")
        more = " or more: the table's last pages are damaged" if self.tail_damaged else ""
        return (f"salvaged {t} trial(s) from {source} into {self.target} ({lost} unreadable"
                f"{more}){meta}; `trustlab run EXPERIMENT.yaml --out {self.target}` runs the "
                "rest")


def salvage(source: str | Path, target: str | Path) -> SalvageReport:
    """Copy every readable row of the damaged store in ``source`` into a new store in
    ``target`` (which must not hold one yet). The source is only read."""
    source, target = Path(source), Path(target)
    if (target / DB_NAME).exists():
        raise TrustlabError(f"{target} already holds a results store; salvage into a new "
                            "directory")
    if source.resolve() == target.resolve():
        raise TrustlabError("salvage into another directory than the damaged store's")
    with Store(source) as src:
        tables, lost, tail = {}, {}, {}
        for table in ("experiment", "runs", "trials"):
            tables[table], lost[table], tail[table] = _readable_rows(src.conn, table)
    with Store(target, create=True) as dst:
        with dst._tx():
            for table, rows in tables.items():
                for row in rows:
                    cols = [c for c in row if c != "rowid"]
                    dst.conn.execute(
                        f"INSERT OR IGNORE INTO {table}({', '.join(cols)}) "
                        f"VALUES ({', '.join('?' * len(cols))})", [row[c] for c in cols])
    return SalvageReport(target, {t: len(r) for t, r in tables.items()}, lost,
                         tail_damaged=tail["trials"])


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (rollback on error); retried briefly if the file is busy."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self):
        for attempt in range(50):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return self
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.1)

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:  # SQLite may have rolled back already (a full disk)
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the original error is the one to report
        return False
