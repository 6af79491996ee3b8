"""The `trustlab` command line: a thin shell over the Python API.

Each command module registers its commands on :data:`app`. User errors
(:class:`~trustlab.errors.TrustlabError`) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="trustlab",
    help="Trustworthy-ML experiments: audit, mitigate, attack and defend models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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


def main(argv: list[str] | None = None) -> int:
    from trustlab.errors import TrustlabError

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
