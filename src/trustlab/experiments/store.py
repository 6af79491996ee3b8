"""The results store: one SQLite file per experiment directory (``DIR/results.sqlite``).

One row per trial, keyed by the trial id, written in its own transaction as soon as the
trial finishes, so a killed sweep loses no finished trial and a re-run can never duplicate
one (the id is the primary key). Only the driver process writes. The experiment's YAML
and resolved plan are stored too, so ``trustlab results/report DIR`` need nothing else.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

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
    overrides   TEXT
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
    def meta(self) -> dict[str, Any]:
        rows = self.conn.execute("SELECT key, value FROM experiment").fetchall()
        return {r["key"]: json.loads(r["value"]) for r in rows}

    def save_experiment(self, values: dict[str, Any]) -> None:
        with self._tx():
            for key, value in values.items():
                self.conn.execute(
                    "INSERT INTO experiment(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, _json(value)))

    # -- runs ----------------------------------------------------------------------------
    def start_run(self, *, executor: str, workers: int, n_planned: int, n_skipped: int,
                  versions: dict[str, str], overrides: list[str]) -> int:
        with self._tx():
            cur = self.conn.execute(
                "INSERT INTO runs(started_at, executor, workers, n_planned, n_skipped, "
                "versions, overrides) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (utcnow(), executor, workers, n_planned, n_skipped, _json(versions),
                 _json(overrides)))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, *, n_ok: int, n_failed: int, wall_s: float) -> None:
        with self._tx():
            self.conn.execute(
                "UPDATE runs SET finished_at = ?, n_ok = ?, n_failed = ?, wall_s = ? "
                "WHERE run_id = ?", (utcnow(), n_ok, n_failed, wall_s, run_id))

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
    def ok_ids(self) -> set[str]:
        rows = self.conn.execute("SELECT trial_id FROM trials WHERE status = 'ok'")
        return {r[0] for r in rows}

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
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
