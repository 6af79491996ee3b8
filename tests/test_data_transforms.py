"""Bias-inducing transforms (minority classes, label bias): exact counts, untouched test split, determinism."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from trustlab.data import Dataset, load_dataset
from trustlab.data.transforms import balanced_full, label_bias, subsample_class
from trustlab.errors import TrustlabError


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


def _counts(ds: Dataset) -> np.ndarray:
    return np.bincount(ds.y[ds.train_idx], minlength=ds.n_classes)


@pytest.mark.parametrize("label,pct", [(3, 10), (0, 1), (9, 29), (5, 50), (7, 100)])
def test_subsample_class_exact_counts(digits, label, pct):
    before = _counts(digits)
    out = subsample_class(digits, label, pct, seed=0)
    after = _counts(out)
    # hand-computed: floor(n * pct / 100), at least one row
    assert after[label] == max(1, math.floor(before[label] * pct / 100))
    others = np.arange(10) != label
    np.testing.assert_array_equal(after[others], before[others])
    # kept rows are original training rows; the test split is untouched
    assert np.isin(out.train_idx, digits.train_idx).all()
    np.testing.assert_array_equal(out.test_idx, digits.test_idx)
    np.testing.assert_array_equal(out.y, digits.y)
    record = out.meta["transforms"][-1]
    assert record["kept"] == after[label] and record["original"] == before[label]
    assert "transforms" not in digits.meta  # input left alone


def test_subsample_class_is_deterministic_and_seeded(digits):
    a = subsample_class(digits, 4, 25, seed=1)
    b = subsample_class(digits, 4, 25, seed=1)
    c = subsample_class(digits, 4, 25, seed=2)
    np.testing.assert_array_equal(a.train_idx, b.train_idx)
    assert not np.array_equal(a.train_idx, c.train_idx)
    assert _counts(a)[4] == _counts(c)[4]
    by_name = subsample_class(digits, "4", 25, seed=1)  # class name works too
    np.testing.assert_array_equal(by_name.train_idx, a.train_idx)


def test_subsample_class_validates_inputs(digits):
    for bad in (0, -5, 100.5, "many"):
        with pytest.raises(TrustlabError, match="target_percentage"):
            subsample_class(digits, 1, bad)
    for bad in (10, -1, "eleven", 2.5):
        with pytest.raises(TrustlabError):
            subsample_class(digits, bad, 10)


def test_balanced_full_equalises_training_classes(digits):
    skewed = subsample_class(digits, 2, 30, seed=0)
    n_min = _counts(skewed).min()
    out = balanced_full(skewed, seed=0)
    assert _counts(out).tolist() == [n_min] * 10
    assert np.isin(out.train_idx, skewed.train_idx).all()
    np.testing.assert_array_equal(out.test_idx, digits.test_idx)
    np.testing.assert_array_equal(balanced_full(skewed, seed=0).train_idx, out.train_idx)
    assert [t["transform"] for t in out.meta["transforms"]] == ["subsample_class",
                                                               "balanced_full"]
    # on the real 5,000 mnist digits the classes are already balanced: nothing dropped
    mnist = load_dataset("mnist")
    np.testing.assert_array_equal(balanced_full(mnist).train_idx, mnist.train_idx)


def _toy() -> Dataset:
    # 12 rows: training rows 0..9, test rows 10, 11; group "a" rows 0..5
    y = np.array([1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1])
    groups = pd.DataFrame({"g": ["a"] * 6 + ["b"] * 4 + ["a", "a"]})
    return Dataset(name="toy", X=np.zeros((12, 1, 2, 2), np.float32), y=y, groups=groups,
                   train_idx=np.arange(10), test_idx=np.array([10, 11]),
                   class_names=["neg", "pos"], image_shape=(1, 2, 2))


def test_label_bias_flips_positive_labels_of_one_group_only():
    ds = _toy()
    out = label_bias(ds, "g", "a", flip_rate=0.6, seed=0)
    # group "a" has 5 positive training rows (0, 1, 2, 3, 5): round(0.6 * 5) = 3 flipped
    changed = np.flatnonzero(out.y != ds.y)
    assert len(changed) == 3
    assert set(changed) <= {0, 1, 2, 3, 5}
    assert (out.y[changed] == 0).all()
    assert out.meta["transforms"][-1]["flipped_idx"] == changed.tolist()
    np.testing.assert_array_equal(out.y_test, ds.y_test)  # test labels untouched
    assert ds.y.sum() == 9  # the input was not modified
    again = label_bias(ds, "g", "a", flip_rate=0.6, seed=0)
    np.testing.assert_array_equal(again.y, out.y)
    np.testing.assert_array_equal(label_bias(ds, "g", "a", 1.0).y[:10],
                                  [0, 0, 0, 0, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(label_bias(ds, "g", "a", 0.0).y, ds.y)


def test_label_bias_rate_on_real_data():
    ds = load_dataset("colored_mnist", seed=0)
    out = label_bias(ds, "color", "red", flip_rate=0.3, seed=4)
    train = ds.train_idx
    red_pos = (ds.groups["color"].to_numpy()[train] == "red") & (ds.y[train] == 1)
    assert np.sum(out.y[train] != ds.y[train]) == round(0.3 * red_pos.sum())
    green = ds.groups["color"].to_numpy() == "green"
    np.testing.assert_array_equal(out.y[green], ds.y[green])


def test_label_bias_validates_inputs():
    ds = _toy()
    with pytest.raises(TrustlabError, match="no group column 'sex'"):
        label_bias(ds, "sex", "a", 0.5)
    with pytest.raises(TrustlabError, match="values: a, b"):
        label_bias(ds, "g", "c", 0.5)
    with pytest.raises(TrustlabError, match="flip_rate"):
        label_bias(ds, "g", "a", 1.2)
    with pytest.raises(TrustlabError, match="different"):
        label_bias(ds, "g", "a", 0.5, positive=1, negative=1)
