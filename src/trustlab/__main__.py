"""`python -m trustlab ...` is the `trustlab` command."""

from trustlab.cli import entry

if __name__ == "__main__":
    entry()
