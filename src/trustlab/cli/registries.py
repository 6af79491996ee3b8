"""`trustlab list [STAGE] [--json]`: every registry's entries with their parameters,
defaults and one-line descriptions, generated from the registries themselves."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, Optional

import typer

from trustlab.cli import FORMAT_HELP, JSON_ALIAS_HELP, OutputFormat, chosen_format, command
from trustlab.registry import STAGES

Stage = Enum("Stage", {name: name for name in STAGES}, type=str)  # typer shows the choices


def list_registries(stage: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """``{stage: [entry, ...]}`` for one stage or all of them (what ``--json`` prints)."""
    from trustlab.registry import get_registry

    stages = [stage] if stage else list(STAGES)
    return {s: get_registry(s).describe() for s in stages}


def _param_text(p: dict[str, Any]) -> str:
    value = "required" if p["required"] else json.dumps(p["default"])
    extra = f", {p['constraints']}" if p["constraints"] else ""
    return f"{p['name']} = {value} ({p['type']}{extra})"


@command("list", examples=[
    "trustlab list",
    "trustlab list defenses",
    "trustlab list methods --format json",
])
def list_command(
    stage: Optional[Stage] = typer.Argument(None, help="One registry (default: all).",
                                            show_default=False),
    format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help=FORMAT_HELP + " JSON: {stage: [{name, "
        "description, params, extra_params}]}; CSV: one row per entry."),
    as_json: bool = typer.Option(False, "--json", help=JSON_ALIAS_HELP),
) -> None:
    """List what a YAML file can name (datasets, models, networks, mitigations, methods, attacks, defenses, optimizers, kinds) with parameters and defaults."""  # noqa: E501
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    listing = list_registries(stage.value if stage else None)
    fmt = chosen_format(format, as_json)
    if fmt == "json":
        print(json.dumps(listing, indent=1))
        return
    if fmt == "csv":
        import csv
        import sys

        writer = csv.writer(sys.stdout)
        writer.writerow(["stage", "name", "parameters", "description"])
        for name, entries in listing.items():
            for e in entries:
                writer.writerow([name, e["name"], "; ".join(_param_text(p) for p in e["params"]),
                                 e["description"]])
        return
    console = Console()
    for name, entries in listing.items():
        table = Table(title=f"{name} ({len(entries)})", title_justify="left", show_lines=True,
                      expand=True)
        table.add_column("name", style="bold", no_wrap=True)
        table.add_column("parameters (default, type, constraints)", overflow="fold", ratio=3)
        table.add_column("description", overflow="fold", ratio=2)
        for e in entries:
            params = "\n".join(_param_text(p) for p in e["params"]) or "-"
            if e["extra_params"]:
                params += f"\n+ {e['extra_params']}"
            table.add_row(e["name"], escape(params), escape(e["description"]))
        console.print(table)
