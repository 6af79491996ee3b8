"""CLI commands: datasets."""
from trustlab.cli import app  # noqa: F401
