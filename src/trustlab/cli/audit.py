"""CLI commands: audit."""
from trustlab.cli import app  # noqa: F401
