"""Waterbirds (Sagawa et al., Group DRO) from its published layout.

``<data_dir>/waterbirds/waterbird_complete95_forest2water2/metadata.csv`` with columns
``img_id, img_filename, y, split, place, place_filename`` (split 0 = train, 1 = val,
2 = test) and the JPEGs under the same folder at ``img_filename``. Label ``y``: 0 landbird,
1 waterbird; ``place``: 0 land, 1 water background. The spurious correlation is in the
data itself (95% of training waterbirds are on water).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trustlab.data.container import Dataset
from trustlab.data.image_io import (check_image_size, first_existing, read_rgb_images,
                                    not_found)
from trustlab.data.registry import DatasetSpec, register_dataset
from trustlab.errors import TrustlabError

FOLDER = "waterbird_complete95_forest2water2"
CANDIDATES = (f"waterbirds/{FOLDER}", FOLDER)
COLUMNS = ("img_filename", "y", "split", "place")
WHERE = ("put the Waterbirds folder " + FOLDER + "/ (metadata.csv + images, from the "
         "Group DRO release) in {root}/waterbirds/")


def find_waterbirds(data_dir: Path | None) -> Path | None:
    return first_existing(data_dir, CANDIDATES, marker="metadata.csv")


def _read_metadata(path: Path) -> pd.DataFrame:
    meta = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in meta.columns]
    if missing:
        raise TrustlabError(f"{path} lacks column(s) {', '.join(missing)}")
    for col, allowed in (("y", {0, 1}), ("place", {0, 1}), ("split", {0, 1, 2})):
        values = pd.to_numeric(meta[col], errors="coerce")
        if values.isna().any() or not set(values.astype(int)) <= allowed:
            raise TrustlabError(f"{path}: column {col!r} must hold only {sorted(allowed)}")
        meta[col] = values.astype(np.int64)
    return meta


def load_waterbirds(data_dir: Path | None = None, seed: int = 0,
                    image_size: int = 64) -> Dataset:
    """Waterbirds as float32 ``(N, 3, S, S)``; train = split 0, test = split 2, and the
    validation rows (split 1) in ``meta["val_idx"]``."""
    size = check_image_size(image_size)
    folder = find_waterbirds(data_dir)
    if folder is None:
        raise not_found("waterbirds", WHERE, data_dir)
    meta = _read_metadata(folder / "metadata.csv")
    X = read_rgb_images([folder / f for f in meta["img_filename"]], size, "waterbirds")
    y = meta["y"].to_numpy(dtype=np.int64)
    place = meta["place"].to_numpy(dtype=np.int64)
    split = meta["split"].to_numpy()
    groups = pd.DataFrame({
        "place": place,
        "label": y,
        "group": [f"{a}|{b}" for a, b in zip(y, place)],
    })
    return Dataset(
        name="waterbirds", X=X, y=y, groups=groups,
        train_idx=np.flatnonzero(split == 0).astype(np.int64),
        test_idx=np.flatnonzero(split == 2).astype(np.int64),
        class_names=["landbird", "waterbird"], image_shape=(3, size, size),
        source=str(folder),
        meta={"split": "official (metadata.csv)",
              "val_idx": np.flatnonzero(split == 1).astype(np.int64),
              "group_column": "group", "place_names": ["land", "water"]},
    )


def _locate(data_dir: Path | None) -> str | None:
    folder = find_waterbirds(data_dir)
    return str(folder) if folder is not None else None


register_dataset(DatasetSpec(
    "waterbirds", load_waterbirds, _locate,
    "Waterbirds (landbird/waterbird on land/water backgrounds), group-robustness benchmark",
    11788, ("place", "label", "group"), "image", WHERE.format(root="$TRUSTLAB_DATA")),
    builtin=True)
