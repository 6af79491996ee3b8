"""CelebA from its published layout (official release or the Kaggle copy).

``<data_dir>/celeba/`` holds
- ``img_align_celeba/*.jpg`` (the Kaggle zip nests it: ``img_align_celeba/img_align_celeba/``),
- attributes: ``list_attr_celeba.txt`` (official: first line the row count, second line the
  40 attribute names, then ``filename  1 -1 ...`` rows) or ``list_attr_celeba.csv`` (Kaggle:
  ``image_id`` + 40 columns of 1/-1),
- the split: ``list_eval_partition.txt`` (``filename partition``) or ``.csv``
  (``image_id,partition``), 0 = train, 1 = val, 2 = test.

The task is a binary ``target`` attribute; ``group_attr`` is the sensitive/spurious one
(the Group DRO setting is Blond_Hair x Male).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trustlab.data.container import Dataset
from trustlab.data.image_io import check_image_size, read_rgb_images, not_found
from trustlab.data.registry import DatasetSpec, register_dataset
from trustlab.errors import TrustlabError

WHERE = ("put CelebA in {root}/celeba/: img_align_celeba/ (the JPEGs), "
         "list_attr_celeba.txt or .csv, list_eval_partition.txt or .csv")


def _first_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def find_celeba(data_dir: Path | None) -> dict[str, Path] | None:
    """Paths of the image folder, attribute file and partition file, or None if incomplete."""
    if data_dir is None:
        return None
    folder = Path(data_dir) / "celeba"
    images = folder / "img_align_celeba"
    if (images / "img_align_celeba").is_dir():  # Kaggle's archive nests the folder
        images = images / "img_align_celeba"
    attrs = _first_file(folder, ("list_attr_celeba.txt", "list_attr_celeba.csv"))
    parts = _first_file(folder, ("list_eval_partition.txt", "list_eval_partition.csv"))
    if not images.is_dir() or attrs is None or parts is None:
        return None
    return {"images": images, "attributes": attrs, "partition": parts}


def read_attributes(path: Path) -> pd.DataFrame:
    """Attribute table indexed by image file name, values 1 / -1 (or 1 / 0)."""
    if path.suffix == ".csv":
        table = pd.read_csv(path)
        if "image_id" not in table.columns:
            raise TrustlabError(f"{path} lacks the image_id column")
        table = table.set_index("image_id")
    else:
        with open(path) as fh:
            fh.readline()  # the row count
            names = fh.readline().split()
        if not names:
            raise TrustlabError(f"{path}: the second line must list the attribute names")
        table = pd.read_csv(path, sep=r"\s+", skiprows=2, header=None,
                            names=["image_id", *names], index_col="image_id")
    table.index = table.index.astype(str)
    bad = [c for c in table.columns if not table[c].isin([-1, 0, 1]).all()]
    if bad:
        raise TrustlabError(f"{path}: attribute {bad[0]!r} must hold only 1 and -1")
    return table


def read_partition(path: Path) -> pd.Series:
    if path.suffix == ".csv":
        table = pd.read_csv(path)
        if not {"image_id", "partition"} <= set(table.columns):
            raise TrustlabError(f"{path} needs columns image_id and partition")
    else:
        table = pd.read_csv(path, sep=r"\s+", header=None, names=["image_id", "partition"])
    part = pd.Series(table["partition"].to_numpy(), index=table["image_id"].astype(str))
    if not part.isin([0, 1, 2]).all():
        raise TrustlabError(f"{path}: partition must be 0 (train), 1 (val) or 2 (test)")
    return part


def _check_max_rows(max_rows) -> int | None:
    if max_rows is None:
        return None
    if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) \
            or max_rows < 1:
        raise TrustlabError(f"max_rows must be a positive integer or None, got {max_rows!r}")
    return int(max_rows)


def load_celeba(data_dir: Path | None = None, seed: int = 0, target: str = "Blond_Hair",
                group_attr: str = "Male", image_size: int = 64,
                max_rows: int | None = None) -> Dataset:
    """CelebA as float32 ``(N, 3, S, S)``; label = ``target`` is present (1 in the file).

    ``max_rows`` caps how many images are read (all 202,599 at 64x64 take ~10 GB): a
    seeded uniform random subset of rows, so every split keeps its share on average.
    Train = partition 0, test = partition 2, validation rows in ``meta["val_idx"]``.
    """
    size = check_image_size(image_size)
    max_rows = _check_max_rows(max_rows)
    paths = find_celeba(data_dir)
    if paths is None:
        raise not_found("celeba", WHERE, data_dir)

    attrs = read_attributes(paths["attributes"])
    for option, name in (("target", target), ("group_attr", group_attr)):
        if name not in attrs.columns:
            raise TrustlabError(f"celeba has no attribute {name!r} for {option}; choose one "
                                f"of: {', '.join(attrs.columns)}")
    if target == group_attr:
        raise TrustlabError(f"celeba target and group_attr are both {target!r}")
    partition = read_partition(paths["partition"])
    missing = attrs.index.difference(partition.index)
    if len(missing):
        raise TrustlabError(f"{paths['partition']} has no partition for {missing[0]}")

    rows = np.arange(len(attrs))
    if max_rows is not None and max_rows < len(rows):
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(attrs), size=max_rows, replace=False))
    table = attrs.iloc[rows]
    split = partition.loc[table.index].to_numpy()
    y = (table[target].to_numpy() == 1).astype(np.int64)
    g = (table[group_attr].to_numpy() == 1).astype(np.int64)
    X = read_rgb_images([paths["images"] / f for f in table.index], size, "celeba")
    groups = pd.DataFrame({
        group_attr: g,
        "label": y,
        "group": [f"{a}|{b}" for a, b in zip(y, g)],
    })
    return Dataset(
        name="celeba", X=X, y=y, groups=groups,
        train_idx=np.flatnonzero(split == 0).astype(np.int64),
        test_idx=np.flatnonzero(split == 2).astype(np.int64),
        class_names=[f"not_{target}", target], image_shape=(3, size, size),
        source=str(paths["attributes"].parent),
        meta={"split": "official (list_eval_partition)",
              "val_idx": np.flatnonzero(split == 1).astype(np.int64),
              "target": target, "group_attr": group_attr, "group_column": "group",
              "image_ids": table.index.to_list(),
              "rows_total": int(len(attrs)), "max_rows": max_rows},
    )


def _locate(data_dir: Path | None) -> str | None:
    paths = find_celeba(data_dir)
    return str(paths["attributes"].parent) if paths is not None else None


register_dataset(DatasetSpec(
    "celeba", load_celeba, _locate,
    "CelebA faces, binary target attribute (default Blond_Hair) x group attribute (Male)",
    202599, ("Male", "label", "group"), "image", WHERE.format(root="$TRUSTLAB_DATA")),
    builtin=True)
