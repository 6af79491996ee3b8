"""`trustlab datasets [--json]`: what is available and where it comes from."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from trustlab.cli import FORMAT_HELP, JSON_ALIAS_HELP, OutputFormat, chosen_format, command
from trustlab.data import dataset_table


def _short(source: str) -> str:
    """Bundled package files are shown by package, not by their long site-packages path."""
    marker = "site-packages/"
    if marker in source:
        return "package " + source.split(marker, 1)[1].split("/", 1)[0]
    return source


@command("datasets", examples=[
    "trustlab datasets",
    "trustlab datasets --data-dir ~/trustlab-data",
    "trustlab datasets --format json",
])
def datasets_command(
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help=FORMAT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_ALIAS_HELP),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", metavar="DIR", show_default="$TRUSTLAB_DATA",
        help="Local data directory."),
) -> None:
    """List the datasets, whether each is available here, and its source."""
    rows = dataset_table(data_dir)
    fmt = chosen_format(format, as_json)
    if fmt == "json":
        print(json.dumps(rows))
        return
    if fmt == "csv":
        import pandas as pd

        frame = pd.DataFrame(rows)
        frame["groups"] = frame["groups"].map(" ".join)
        sys.stdout.write(frame.to_csv(index=False))
        return
    table = Table(title="trustlab datasets")
    for col in ("name", "kind", "rows", "groups", "available", "source"):
        table.add_column(col, overflow="fold")
    missing = []
    for r in rows:
        source = _short(r["source"]) if r["status"] != "no" else "see below"
        table.add_row(r["name"], r["kind"], f"{r['rows']:,}" if r["rows"] else "-",
                      ", ".join(r["groups"]),
                      "yes" if r["available"] else f"[red]{r['status']}[/red]", source)
        if not r["available"]:
            missing.append(r)
    console = Console()
    console.print(table)
    for r in missing:
        if r["status"] != "no":  # present but its bytes are not the published ones
            problem = r["status"].removeprefix("present, ")
            console.print(f"[bold]{r['name']}[/bold]: present in {r['source']}, {problem}: "
                          "not the published files; delete them to re-fetch", soft_wrap=True)
        else:
            console.print(f"[bold]{r['name']}[/bold]: {r['source']}", soft_wrap=True)
