"""CLI commands: experiments."""
from trustlab.cli import app  # noqa: F401
