"""Reading trials' artifacts for the report. An artifact that cannot be read (truncated,
overwritten, not what its name says) leaves its figure out and is named in its section,
instead of stopping the whole report."""

from __future__ import annotations

import html
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np


class ArtifactReader:
    """Loads ``DIR/trials/<trial id>/<name>``; :attr:`unreadable` lists what failed."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.unreadable: list[str] = []

    def path(self, trial_id: str, name: str) -> Path:
        return self.directory / "trials" / trial_id / name

    def _failed(self, path: Path, exc: Exception) -> None:
        self.unreadable.append(f"{path.relative_to(self.directory)} ({exc or type(exc).__name__})")

    def npz(self, trial_id: str, name: str, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray] | None:
        """Every array of the archive (None when it is absent or unreadable, or lacks one
        of ``keys``); read at once, so damage deep in the file shows here."""
        path = self.path(trial_id, name)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            missing = [k for k in keys if k not in data]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            self._failed(path, exc)
            return None
        return data

    def json(self, trial_id: str, name: str) -> dict[str, Any] | None:
        """The JSON object in the file (None when absent, unreadable or not an object)."""
        path = self.path(trial_id, name)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError too
            self._failed(path, exc)
            return None
        return data

    def note(self) -> str:
        """An HTML paragraph naming the unreadable artifacts ('' when none)."""
        if not self.unreadable:
            return ""
        items = "".join(f"<li><code>{html.escape(u)}</code></li>" for u in self.unreadable)
        return (f'<div class="bad"><p>{len(self.unreadable)} artifact(s) could not be read; '
                f"their figures are left out:</p><ul>{items}</ul></div>")


__all__ = ["ArtifactReader"]
