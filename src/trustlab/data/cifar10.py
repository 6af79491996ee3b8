"""CIFAR-10 from a local copy of the "CIFAR-10 python version" batches.

Layout: ``<data_dir>/cifar10/cifar-10-batches-py/`` (or ``<data_dir>/cifar-10-batches-py/``)
holding ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and ``batches.meta`` - pickled
dicts with ``b"data"`` (uint8, N x 3072, channel-major) and ``b"labels"``. With
``download=True`` and a data directory the official tarball is fetched and unpacked there.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from trustlab.data.container import Dataset
from trustlab.data.image_io import first_existing, not_found
from trustlab.data.registry import DatasetSpec, register_dataset
from trustlab.errors import DatasetNotFound, TrustlabError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"  # published checksum of the tarball
FOLDER = "cifar-10-batches-py"
CANDIDATES = (f"cifar10/{FOLDER}", FOLDER)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]
WHERE = ("put the CIFAR-10 python batches in {root}/cifar10/" + FOLDER + "/ "
         "(unpack " + URL + " there), or load it with download=True")

# The batches are pickles; only the classes a numpy array needs may be rebuilt, so a
# tampered file cannot run code when it is loaded.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    if not path.is_file():
        raise DatasetNotFound(f"dataset 'cifar10': {path.name} is missing from {path.parent}")
    try:
        with open(path, "rb") as fh:
            obj = _ArrayOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise TrustlabError(f"{path} is not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(obj, dict):
        raise TrustlabError(f"{path} is not a CIFAR-10 python batch (not a dict)")
    return obj


def _batch_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_batch(path)
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except KeyError as exc:
        raise TrustlabError(f"{path} has no {exc.args[0]!r} entry") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise TrustlabError(f"{path}: expected data (N, 3072) and N labels, got "
                            f"{data.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise TrustlabError(f"{path}: labels must be 0-9")
    return data, labels


def find_cifar10(data_dir: Path | None) -> Path | None:
    return first_existing(data_dir, CANDIDATES, marker="test_batch")


def download_cifar10(data_dir: Path, *, timeout: float = 60.0) -> Path:
    """Fetch the official tarball into ``<data_dir>/cifar10/`` and unpack it (md5-checked)."""
    target = Path(data_dir) / "cifar10"
    target.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(URL, timeout=timeout) as resp, \
                tempfile.NamedTemporaryFile(dir=target, suffix=".tar.gz", delete=False) as tmp:
            shutil.copyfileobj(resp, tmp)
            tmp_path = Path(tmp.name)
    except OSError as exc:
        raise DatasetNotFound(f"dataset 'cifar10': download from {URL} failed ({exc}); "
                              + WHERE.format(root=data_dir)) from None
    try:
        md5 = hashlib.md5(tmp_path.read_bytes()).hexdigest()
        if md5 != TARBALL_MD5:
            raise TrustlabError(f"downloaded {URL} has md5 {md5}, expected {TARBALL_MD5}")
        with tarfile.open(tmp_path, "r:gz") as tar:
            tar.extractall(target, filter="data")  # "data" filter: no paths outside target
    finally:
        tmp_path.unlink(missing_ok=True)
    return target / FOLDER


def load_cifar10(data_dir: Path | None = None, seed: int = 0,
                 download: bool = False) -> Dataset:
    """CIFAR-10, official 50,000/10,000 split, float32 ``(N, 3, 32, 32)`` in [0, 1]."""
    folder = find_cifar10(data_dir)
    if folder is None and download:
        if data_dir is None:
            raise DatasetNotFound("dataset 'cifar10': download=True needs a data directory "
                                  "(--data-dir or TRUSTLAB_DATA) to download into")
        folder = download_cifar10(data_dir)
    if folder is None:
        raise not_found("cifar10", WHERE, data_dir)

    parts = [_batch_arrays(folder / name) for name in (*TRAIN_BATCHES, "test_batch")]
    data = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    n_train = sum(len(p[1]) for p in parts[:-1])

    class_names = list(CLASS_NAMES)
    if (folder / "batches.meta").is_file():
        names = _read_batch(folder / "batches.meta").get(b"label_names")
        if names:
            class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    if len(class_names) != 10:
        raise TrustlabError(f"{folder / 'batches.meta'}: expected 10 label names")

    X = data.reshape(-1, 3, 32, 32).astype(np.float32) / np.float32(255.0)
    return Dataset(
        name="cifar10", X=X, y=y,
        groups=pd.DataFrame({"class": np.asarray(class_names, dtype=object)[y]}),
        train_idx=np.arange(n_train, dtype=np.int64),
        test_idx=np.arange(n_train, len(y), dtype=np.int64),
        class_names=class_names, image_shape=(3, 32, 32), source=str(folder),
        meta={"split": "official"},
    )


def _locate(data_dir: Path | None) -> str | None:
    folder = find_cifar10(data_dir)
    return str(folder) if folder is not None else None


register_dataset(DatasetSpec(
    "cifar10", load_cifar10, _locate, "CIFAR-10 32x32 colour images, 10 classes",
    60000, ("class",), "image", WHERE.format(root="$TRUSTLAB_DATA")), builtin=True)
