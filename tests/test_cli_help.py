"""The CLI follows the conventions of a good command line: --version, shell completion,
every command's help ends with real examples, one --format flag, choices listed in help
and enforced, no type placeholder on flags."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex

import pytest
import typer

from trustlab import __version__
from trustlab.cli import app, main

COMMANDS = [c.name for c in app.registered_commands]


def _help(capsys, *args: str) -> str:
    assert main([*args, "--help"]) == 0
    return capsys.readouterr().out


def _examples(text: str) -> list[str]:
    """The ``$ trustlab ...`` paragraphs after "Examples" (a long one wraps at the
    terminal's width: its lines are joined again)."""
    tail = text.split("Examples", 1)[1]
    paragraphs = [" ".join(line.strip() for line in p.splitlines())
                  for p in re.split(r"\n\s*\n", tail)]
    return [p[2:] for p in paragraphs if p.startswith("$ trustlab")]


def test_root_help_version_and_completion(capsys):
    text = _help(capsys)
    for needle in ("--version", "--install-completion", "--show-completion", *COMMANDS):
        assert needle in text
    assert "<bool>" not in text
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"trustlab {__version__}"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_ends_with_examples_that_parse(name, capsys):
    text = _help(capsys, name)
    assert "<bool>" not in text  # flags take no value
    last = re.split(r"\n\s*\n", text.rstrip())[-1]
    assert last.strip().startswith(f"$ trustlab {name}")
    examples = _examples(text)
    assert 2 <= len(examples) <= 3, examples
    group = typer.main.get_command(app)
    for example in examples:
        argv = shlex.split(example.split(" > ")[0])[1:]  # drop "trustlab" and redirections
        assert argv[0] == name
        cmd = group.get_command(None, name)
        cmd.make_context(name, argv[1:])  # raises on an unknown option or a bad choice


def test_choices_are_listed_and_enforced(capsys):
    assert "<local|dask|slurm>" in _help(capsys, "run")
    for name in ("results", "datasets", "list", "audit"):
        assert "<table|json|csv>" in _help(capsys, name), name
    assert "one per CPU core" in _help(capsys, "run")
    assert main(["run", "x.yaml", "--executor", "dusk"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'dusk' is not one of 'local', 'dask', 'slurm'" in err[0]


def test_format_csv_and_the_json_alias(capsys):
    assert main(["datasets", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {"mnist", "adult"} <= {r["name"] for r in rows}
    assert main(["datasets", "--json"]) == 0
    via_alias = json.loads(capsys.readouterr().out)
    assert main(["datasets", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == via_alias

    assert main(["list", "defenses", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {"neural_cleanse", "unlearning"} <= {r["name"] for r in rows}
    assert {r["stage"] for r in rows} == {"defenses"}


def test_audit_examples_run(capsys):
    examples = _examples(_help(capsys, "audit"))
    ran = 0
    for example in examples:
        argv = shlex.split(example)[1:]
        if not argv[1].startswith("examples/"):
            continue  # a placeholder file name
        assert main(argv) == 0, example
        ran += 1
    assert ran >= 2
    capsys.readouterr()
    assert main(["audit", "examples/adult_xgboost_predictions.csv.gz", "--label", "income",
                 "--pred", "pred", "--group", "sex", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(r["group"] for r in rows) == ["Female", "Male"]
    assert sum(int(float(r["count"])) for r in rows) == 16281
