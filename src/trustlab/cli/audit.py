"""`trustlab audit FILE --label COL --pred COL --group COL ...`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from trustlab.cli import FORMAT_HELP, JSON_ALIAS_HELP, OutputFormat, chosen_format, command
from trustlab.errors import TrustlabError
from trustlab.io.tables import read_table, require_columns
from trustlab.metrics import AuditResult, audit, audit_table


@command("audit", examples=[
    "trustlab audit examples/adult_xgboost_predictions.csv.gz --label income --pred pred "
    "--group sex --privileged Male",
    "trustlab audit examples/adult_xgboost_predictions.csv.gz --label income --pred pred "
    "--score score --group sex --group race --ci 0.95",
    "trustlab audit predictions.parquet --label y --pred y_hat --group sex --format json",
])
def audit_command(
    file: Path = typer.Argument(..., help="CSV or Parquet file with labels, predictions, groups.",
                                metavar="FILE"),
    label: str = typer.Option(..., "--label", metavar="COLUMN",
                              help="Column with the true labels."),
    pred: str = typer.Option(..., "--pred", metavar="COLUMN",
                             help="Column with the predicted labels."),
    group: List[str] = typer.Option(..., "--group", metavar="COLUMN",
                                    help="Group column; repeat for intersections."),
    score: Optional[str] = typer.Option(None, "--score", metavar="COLUMN",
                                        help="Column with P(positive) for AUC."),
    privileged: Optional[str] = typer.Option(
        None, "--privileged", metavar="VALUE", help="Privileged value of a binary group column."),
    pos_label: Optional[str] = typer.Option(None, "--pos-label", metavar="VALUE",
                                            help="The positive label."),
    ci: Optional[float] = typer.Option(None, "--ci", metavar="LEVEL",
                                       help="Bootstrap confidence level, e.g. 0.95."),
    multiclass: bool = typer.Option(False, "--multiclass", help="Audit every value seen as "
                                    "a class (else a prediction that is no label is an "
                                    "error)."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help=FORMAT_HELP + " "
                                        "CSV: one row per group."),
    as_json: bool = typer.Option(False, "--json", help=JSON_ALIAS_HELP),
) -> None:
    """Audit a model's predictions for bias: overall, per group, disparities."""
    options = dict(privileged=privileged, pos_label=pos_label, ci=ci, multiclass=multiclass)
    if score:  # ROC AUC needs every score: the whole file in memory
        frame = read_table(file)
        require_columns(frame, [label, pred, *group, score], file)
        result = audit(frame[label], frame[pred], frame[list(group)], y_score=frame[score],
                       **options)
    else:  # streamed a chunk at a time: memory does not grow with the rows
        _check_file(file)
        result = audit_table(file, label=label, pred=pred, groups=list(group), **options)
    fmt = chosen_format(format, as_json)
    if fmt == "json":
        print(json.dumps(result.to_dict()))
    elif fmt == "csv":
        sys.stdout.write(by_group_csv(result))
    else:
        print_audit(result, Console())


def _check_file(path: Path) -> None:
    if not path.exists():
        raise TrustlabError(f"{path}: no such file")
    if path.is_dir():
        raise TrustlabError(f"{path}: is a directory, expected a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise TrustlabError(f"{path}: file is empty")


def by_group_csv(result: AuditResult) -> str:
    """One row per group: the group key, then every per-group metric."""
    import pandas as pd

    groups = result.to_dict()["by_group"]
    frame = pd.DataFrame.from_dict(groups, orient="index")
    frame.index.name = "group"
    return frame.to_csv()


MAX_GROUP_ROWS = 50  # a terminal table of 50,000 groups helps nobody; --json has them all


def _fmt(value) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4f}"
    return str(value)


def print_audit(result: AuditResult, console: Console) -> None:
    d = result.to_dict()
    overall = Table(title=f"Overall (n = {d['n']:,})", show_header=True)
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    for name, value in d["overall"].items():
        if not isinstance(value, dict):
            overall.add_row(name, _fmt(value))
    console.print(overall)

    groups = d["by_group"]
    shown = sorted(groups, key=lambda k: -groups[k]["count"])[:MAX_GROUP_ROWS]
    hidden = len(groups) - len(shown)
    caption = (f"the {len(shown)} largest of {len(groups):,} groups; --format json lists all"
               if hidden else None)
    by_group = Table(title=f"By group ({' | '.join(result.group_columns)})", caption=caption)
    by_group.add_column("group")
    metrics = list(next(iter(groups.values())))
    for m in metrics:
        by_group.add_column(m, justify="right")
    for key in (k for k in groups if k in set(shown)):  # keep the sorted group order
        by_group.add_row(key, *[_fmt(groups[key][m]) for m in metrics])
    console.print(by_group)

    disp = Table(title="Disparities")
    disp.add_column("metric")
    disp.add_column("value", justify="right")
    ci = (d.get("ci") or {}).get("disparities", {})
    if ci:
        disp.add_column(f"{d['ci']['level']:.0%} CI", justify="right")
    for name, value in d["disparities"].items():
        row = [name, _fmt(value)]
        if ci:
            lo, hi = ci.get(name, [None, None])
            row.append(f"[{_fmt(lo)}, {_fmt(hi)}]")
        disp.add_row(*row)
    console.print(disp)
