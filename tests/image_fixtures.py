"""Tiny image-dataset fixtures written in the datasets' real on-disk formats.

Each writer returns what it wrote so tests can compare the loader's output against the
bytes themselves (the oracle), not against the loader's own idea of them.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

# The 40 attribute names of CelebA's list_attr_celeba.txt, in the file's order.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips "
    "Big_Nose Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin "
    "Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open "
    "Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


# -- MNIST idx ------------------------------------------------------------------------
def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist_idx(data_dir: Path, n_train: int = 12, n_test: int = 6, gz: bool = False,
                    seed: int = 0, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Write the four MNIST idx files into ``data_dir/mnist``; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": ((np.arange(n_test) * 3) % 10).astype(np.uint8),
    }
    folder = Path(data_dir) / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        if name in skip:
            continue
        payload = _idx_bytes(arr)
        if gz:
            with gzip.open(folder / (name + ".gz"), "wb") as fh:
                fh.write(payload)
        else:
            (folder / name).write_bytes(payload)
    return arrays


# -- CIFAR-10 python batches -------------------------------------------------------------
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(data_dir: Path, per_batch: int = 4, nested: bool = True, seed: int = 0,
                  skip: tuple[str, ...] = ()) -> dict[str, dict]:
    """Write data_batch_1..5, test_batch and batches.meta as pickled dicts (protocol 2,
    bytes keys, as the official Python files); returns {file: {"data", "labels"}}."""
    rng = np.random.default_rng(seed)
    folder = Path(data_dir) / ("cifar10/cifar-10-batches-py" if nested else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(per_batch) + i) % 10]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)]}
        written[name] = {"data": data, "labels": np.array(labels)}
        if name not in skip:
            with open(folder / name, "wb") as fh:
                pickle.dump(batch, fh, protocol=2)
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in CIFAR_NAMES],
            b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return written


# -- JPEGs ---------------------------------------------------------------------------------
def solid_colour(i: int) -> tuple[int, int, int]:
    """A distinct, JPEG-friendly (flat) colour per image index."""
    return (20 + (37 * i) % 200, 30 + (71 * i) % 190, 40 + (13 * i) % 180)


def write_jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="JPEG", quality=95)


# -- Waterbirds -------------------------------------------------------------------------------
def write_waterbirds(data_dir: Path, n: int = 12) -> pd.DataFrame:
    """metadata.csv + one flat-colour JPEG per row (various sizes); returns the metadata
    with the colour of each image in columns r, g, b."""
    folder = Path(data_dir) / "waterbirds" / "waterbird_complete95_forest2water2"
    rows = []
    for i in range(n):
        y, place, split = i % 2, (i // 2) % 2, [0, 0, 0, 1, 2, 2][i % 6]
        species = "001.Black_footed_Albatross" if y else "002.Laysan_Albatross"
        filename = f"{species}/bird_{i:04d}.jpg"
        colour = solid_colour(i)
        write_jpeg(folder / filename, colour, (40 + 3 * i, 30 + 2 * i))
        rows.append({"img_id": i + 1, "img_filename": filename, "y": y, "split": split,
                     "place": place, "place_filename": f"/x/place_{i}.jpg",
                     "r": colour[0], "g": colour[1], "b": colour[2]})
    meta = pd.DataFrame(rows)
    meta.drop(columns=["r", "g", "b"]).to_csv(folder / "metadata.csv", index=False)
    return meta


# -- CelebA ----------------------------------------------------------------------------------
def write_celeba(data_dir: Path, n: int = 15, variant: str = "txt", nested: bool = False,
                 seed: int = 0) -> pd.DataFrame:
    """Images + attribute + partition files in the official (``txt``) or Kaggle (``csv``)
    format; returns the attribute table (1/-1, indexed by file name) with a ``partition``
    column and the image colours in r, g, b."""
    rng = np.random.default_rng(seed)
    folder = Path(data_dir) / "celeba"
    images = folder / "img_align_celeba"
    if nested:
        images = images / "img_align_celeba"
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    attrs = pd.DataFrame(rng.choice([-1, 1], size=(n, len(CELEBA_ATTRIBUTES))),
                         index=names, columns=CELEBA_ATTRIBUTES)
    partition = np.array([[0, 0, 0, 1, 2][i % 5] for i in range(n)])
    for i, name in enumerate(names):
        write_jpeg(images / name, solid_colour(i), (36, 44))
    if variant == "txt":
        lines = [str(n), " ".join(CELEBA_ATTRIBUTES)]
        # The official file pads the name and separates values by one or two spaces.
        lines += [f"{name} " + " ".join(f"{v:2d}" for v in attrs.loc[name]) for name in names]
        (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
        (folder / "list_eval_partition.txt").write_text(
            "".join(f"{name} {p}\n" for name, p in zip(names, partition)))
    elif variant == "csv":
        attrs.rename_axis("image_id").reset_index().to_csv(
            folder / "list_attr_celeba.csv", index=False)
        pd.DataFrame({"image_id": names, "partition": partition}).to_csv(
            folder / "list_eval_partition.csv", index=False)
    else:
        raise ValueError(variant)
    out = attrs.copy()
    out["partition"] = partition
    colours = np.array([solid_colour(i) for i in range(n)])
    out["r"], out["g"], out["b"] = colours[:, 0], colours[:, 1], colours[:, 2]
    return out
