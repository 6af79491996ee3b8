"""Reading a results store: per-trial records, the per-grid-point summary, and the
``trustlab results`` formats (table, csv, json)."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from trustlab.errors import TrustlabError
from trustlab.experiments.store import Store, _finite


@dataclass
class Results:
    directory: Path
    meta: dict[str, Any]
    runs: list[dict[str, Any]]
    trials: list[dict[str, Any]]
    # Rows of trials the experiment no longer plans (an earlier config, e.g. a failed trial
    # whose config was fixed since), left out unless load_results(all_trials=True).
    hidden: int = 0

    @property
    def name(self) -> str:
        return self.meta.get("name", self.directory.name)

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "tabular")

    @property
    def grid_keys(self) -> list[str]:
        """The parameter columns that tell grid points apart, as few as suffice.

        A grid axis over a whole block (``mitigation: [{name: none}, {name: massaging,
        params: {...}}]``) is shown as the leaves under it: the ``.name`` leaves and those
        that take several values, plus any other leaf still needed to keep two grid points
        apart. Keys that vary across trials without a grid axis (e.g. a --set between
        runs) are added too.
        """
        params = self._param_keys()

        def values(k: str) -> set:
            return {_hashable(t["params"].get(k)) for t in self.trials}

        def present(k: str) -> set:
            return {v for v in values(k) if v not in (None, "{}", "[]")}

        def distinct(ks: list[str]) -> int:
            return len({tuple(_hashable(t["params"].get(k)) for k in ks) for t in self.trials})

        keys: list[str] = []
        for k in self.meta.get("grid_keys", []):
            leaves = [p for p in params if p.startswith(k + ".") and present(p)]
            if not leaves:
                if k not in keys:
                    keys.append(k)
                continue
            shown = [p for p in leaves if p.endswith(".name") or len(present(p)) > 1]
            for p in leaves:  # add what is needed to keep every grid point apart
                if distinct(shown) < distinct(leaves) and p not in shown:
                    shown.append(p)
            keys.extend(p for p in leaves if p in shown and p not in keys)
        covered = set(keys) | set(self.meta.get("grid_keys", []))
        for k in params:
            # Only a key that separates trials the keys so far do not: a default filled in
            # by the model a grid point names (model.params.max_iter) follows from that
            # name, while a --set between runs (dataset.subsample) splits a grid point.
            if k in covered or k == "seed" or not present(k) or len(values(k)) < 2 or any(
                    k.startswith(c + ".") or c.startswith(k + ".") for c in covered):
                continue
            if distinct(keys + [k]) > distinct(keys):
                keys.append(k)
        return keys

    def _param_keys(self) -> list[str]:
        keys: dict[str, None] = {}
        for t in self.trials:
            keys.update(dict.fromkeys(t["params"]))
        return list(keys)

    def ok(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["status"] == "ok"]

    def failed(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["status"] == "failed"]

    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for t in self.ok():
            names.update(dict.fromkeys(t["metrics"]))
        return list(names)

    def frame(self) -> pd.DataFrame:
        """One row per trial: trial_id, status, seed, the grid keys, then every metric."""
        rows = []
        for t in self.trials:
            row = {"trial_id": t["trial_id"], "status": t["status"], "seed": t["seed"]}
            row.update({k: _hashable(t["params"].get(k)) for k in self.grid_keys})
            row.update({k: (math.nan if v is None else v) for k, v in t["metrics"].items()})
            row["error"] = t["error"]
            rows.append(row)
        return pd.DataFrame(rows)

    def summary(self, metrics: list[str] | None = None) -> pd.DataFrame:
        """Mean and std (ddof=1) over seeds of each metric, one row per grid point.

        Columns: the grid keys, ``n_ok``, ``n_failed``, then ``<metric>_mean``/``_std``.
        """
        frame = self.frame()
        if frame.empty:
            return pd.DataFrame()
        keys = self.grid_keys
        metrics = [m for m in (metrics or self.metric_names()) if m in frame.columns]
        ok = frame[frame["status"] == "ok"]
        group = (lambda f: f.groupby(keys, sort=False, dropna=False)) if keys else \
            (lambda f: f.assign(_all=0).groupby("_all"))
        out = group(frame).size().rename("n_trials").to_frame()
        out["n_ok"] = group(ok).size()
        out["n_ok"] = out["n_ok"].fillna(0).astype(int)
        out["n_failed"] = out["n_trials"] - out["n_ok"]
        if metrics and not ok.empty:
            stats = group(ok)[metrics].agg(["mean", "std"])
            stats.columns = [f"{m}_{s}" for m, s in stats.columns]
            out = out.join(stats)
        out = out.reset_index()
        return out.drop(columns=["_all"], errors="ignore")


def _hashable(v: Any) -> Any:
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    return v


def load_results(directory: str | Path, *, all_trials: bool = False) -> Results:
    """The store in ``directory``: the trials of the experiment as it was last run (its
    plan), or with ``all_trials`` every row it holds, earlier configurations included."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TrustlabError(f"results directory not found: {directory}")
    with Store(directory) as store:
        meta, runs, trials = store.meta(), store.runs(), store.trials()
    plan = meta.get("plan")
    hidden = 0
    if plan and not all_trials:
        current = set(plan)
        kept = [t for t in trials if t["trial_id"] in current]
        hidden, trials = len(trials) - len(kept), kept
    return Results(directory, meta, runs, trials, hidden)


def hidden_line(results: Results) -> str | None:
    """What the default view leaves out, or None."""
    if not results.hidden:
        return None
    return (f"{results.hidden} trial(s) of earlier configurations of this experiment are "
            "not shown (--all shows them)")


def fmt_mean_std(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.4g}"
    return f"{mean:.4f} ± {std:.4f}"


def summary_metrics(results: Results) -> list[str]:
    """The kind's headline metrics that are present, else every non-group metric (max 8).

    An entry ``"a|b"`` stands for the first of ``a``, ``b`` that the results have."""
    from trustlab.experiments.kinds import get_kind

    names = results.metric_names()
    try:
        wanted = get_kind(results.kind).summary_metrics
    except TrustlabError:
        wanted = None
    if wanted:
        chosen = []
        for entry in wanted:
            found = next((m for m in entry.split("|") if m in names), None)
            if found:
                chosen.append(found)
        if chosen:
            return chosen
    return [m for m in names if "." not in m][:8]


def summary_table(results: Results, title: str | None = None):
    """A rich table: one row per grid point, mean ± std over seeds."""
    from rich.table import Table

    metrics = summary_metrics(results)
    summary = results.summary(metrics)
    table = Table(title=title or f"{results.name}: mean ± std over seeds", show_lines=False)
    keys = results.grid_keys
    for key in keys:
        table.add_column(key, style="cyan")
    table.add_column("ok/n", justify="right")
    for m in metrics:
        table.add_column(m, justify="right")
    for _, row in summary.iterrows():
        cells = [fmt_cell(row[k]) for k in keys] + [f"{int(row['n_ok'])}/{int(row['n_trials'])}"]
        cells += [fmt_mean_std(row.get(f"{m}_mean"), row.get(f"{m}_std")) for m in metrics]
        table.add_row(*cells)
    return table


def fmt_cell(value: Any) -> str:
    """A grid-key cell: blank where a grid point does not set that parameter."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a label or percentage that NaN elsewhere made a float
    return str(value)


def table_console(file=None):
    """A rich console for tables: the terminal's width, or 200 columns in a log file."""
    from rich.console import Console

    console = Console(file=file)
    if not console.is_terminal:
        console = Console(file=file, width=max(console.width, 200))
    return console


def to_json(results: Results) -> str:
    """``[{"trial_id", "status", "params", "metrics"}, ...]`` (failed trials add ``error``)."""
    out = []
    for t in results.trials:
        item = {"trial_id": t["trial_id"], "status": t["status"], "params": t["params"],
                "metrics": t["metrics"]}
        if t["status"] != "ok":
            item["error"] = t["error"]
        out.append(item)
    return json.dumps(_finite(out), indent=2, allow_nan=False)


def to_csv(results: Results) -> str:
    """One row per trial: id, status, every param (dotted key), every metric, error."""
    rows = []
    for t in results.trials:
        row = {"trial_id": t["trial_id"], "status": t["status"]}
        row.update({k: _hashable(v) for k, v in t["params"].items()})
        row.update(t["metrics"])
        row["error"] = t["error"] or ""
        rows.append(row)
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    return buf.getvalue()
