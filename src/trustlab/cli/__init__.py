"""The `trustlab` command line: a thin shell over the Python API.

Each command module registers its commands on :data:`app`. User errors
(:class:`~trustlab.errors.TrustlabError`) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Callable

import typer
from typer.core import TyperCommand, TyperGroup


def _quiet_flags(params) -> None:
    """A flag takes no value: show no type placeholder (typer prints ``<bool>``)."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""


class _Command(TyperCommand):
    def get_params(self, ctx):
        params = super().get_params(ctx)
        _quiet_flags(params)
        return params


class _Group(TyperGroup):
    def get_params(self, ctx):
        params = super().get_params(ctx)
        _quiet_flags(params)
        return params


app = typer.Typer(
    name="trustlab",
    help="Trustworthy-ML experiments: audit, mitigate, attack and defend models.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    cls=_Group,
)


def command(name: str, examples: list[str]) -> Callable:
    """Register a command on :data:`app`; its help ends with ``examples`` (real command
    lines, each shown on its own line)."""
    epilog = "[bold]Examples[/bold]\n\n" + "\n\n".join(f"  $ {e}" for e in examples)
    return app.command(name, cls=_Command, epilog=epilog)


class OutputFormat(str, Enum):
    """The one output flag of every command that prints data: ``--format``."""

    table = "table"
    json = "json"
    csv = "csv"


FORMAT_HELP = "Output: a table, JSON or CSV."
JSON_ALIAS_HELP = "Same as --format json."


def chosen_format(fmt: OutputFormat, as_json: bool) -> str:
    """``--json`` is kept as an alias of ``--format json``."""
    return "json" if as_json else fmt.value


def _version(value: bool) -> None:
    if value:
        from trustlab import __version__

        print(f"trustlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Trustworthy-ML experiments: audit, mitigate, attack and defend models."""


# Command modules register themselves on `app` when imported.
from trustlab.cli import datasets as _datasets  # noqa: E402,F401
from trustlab.cli import audit as _audit  # noqa: E402,F401
from trustlab.cli import experiments as _experiments  # noqa: E402,F401
from trustlab.cli import registries as _registries  # noqa: E402,F401


_ARGV: list[str] = []  # the arguments of the running command (see command_line)


def command_line() -> str:
    """The running command as a shell line (kept with each run's record)."""
    import shlex

    return shlex.join(["trustlab", *_ARGV])


def main(argv: list[str] | None = None) -> int:
    from trustlab.errors import TrustlabError

    _ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    try:
        # Without standalone mode typer *returns* an exit code for some exits (Ctrl-C
        # becomes 130) instead of raising, so the return value matters.
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            if code == 130:
                print("trustlab: interrupted", file=sys.stderr)
            return code
    except TrustlabError as exc:
        print(f"trustlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trustlab: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click exits (e.g. --help) pass through
        return int(exc.code or 0)
    except Exception as exc:
        # Usage errors from typer's click (missing option, bad value) carry their own
        # message and exit code; anything else is a bug and keeps its traceback.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            print(f"trustlab: error: {exc.format_message()}", file=sys.stderr)
            return int(exc.exit_code) or 2
        if type(exc).__name__ == "Abort":
            print("trustlab: interrupted", file=sys.stderr)
            return 130
        raise
    return 0


def entry() -> None:
    sys.exit(main())
