"""Helpers shared by the image loaders: finding a local copy, reading JPEGs, seeded splits."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from trustlab.errors import DatasetNotFound, TrustlabError


def first_existing(data_dir: Path | None, candidates: Sequence[str],
                   marker: str | None = None) -> Path | None:
    """The first ``data_dir/<candidate>`` directory that exists (and holds ``marker``)."""
    if data_dir is None:
        return None
    for rel in candidates:
        path = Path(data_dir) / rel
        if path.is_dir() and (marker is None or (path / marker).exists()):
            return path
    return None


def not_found(dataset: str, where: str, data_dir: Path | None) -> DatasetNotFound:
    """The one-line "not found, put it here" error; ``where`` has a ``{root}`` slot."""
    if data_dir is None:
        return DatasetNotFound(
            f"dataset {dataset!r} not found (no data directory: set TRUSTLAB_DATA or pass "
            f"--data-dir): " + where.format(root="$TRUSTLAB_DATA"))
    return DatasetNotFound(f"dataset {dataset!r} not found: " + where.format(root=data_dir))


def check_test_size(test_size: float) -> None:
    if not 0.0 < float(test_size) < 1.0:
        raise TrustlabError(f"test_size must be between 0 and 1, got {test_size}")


def check_image_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or image_size < 1:
        raise TrustlabError(f"image_size must be a positive integer, got {image_size!r}")
    return int(image_size)


def seeded_split(y: np.ndarray, seed: int, test_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices (sorted), reproducible from ``seed``."""
    check_test_size(test_size)
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=y)
    return np.sort(tr).astype(np.int64), np.sort(te).astype(np.int64)


def _read_one(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        # draft() lets the JPEG decoder downscale by 1/2..1/8 while decoding, which makes
        # reading large photo sets (CelebA, Waterbirds) several times faster.
        img.draft("RGB", (size, size))
        rgb = img.convert("RGB").resize((size, size), Image.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


def read_rgb_images(paths: Sequence[Path], size: int, dataset: str) -> np.ndarray:
    """Read image files into a float32 ``(N, 3, size, size)`` array scaled to [0, 1].

    Every file is checked first so a missing image is one clear error, not a traceback
    half-way through a long read. Decoding runs in threads (Pillow releases the GIL).
    """
    for p in paths:
        if not Path(p).is_file():
            raise DatasetNotFound(f"dataset {dataset!r}: image file {p} is missing")
    out = np.empty((len(paths), 3, size, size), dtype=np.float32)
    workers = max(1, min(8, os.cpu_count() or 1))

    def fill(i: int) -> None:
        try:
            arr = _read_one(Path(paths[i]), size)
        except OSError as exc:  # Pillow raises OSError subclasses for corrupt files
            raise TrustlabError(
                f"dataset {dataset!r}: cannot read image {paths[i]} ({exc})") from None
        out[i] = arr.transpose(2, 0, 1) / np.float32(255.0)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fill, range(len(paths))))
    return out
