"""Deep data plumbing: split tensors, epoch-level resampling (imbalanced-learn) and
batch-level balanced sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from imblearn.over_sampling import RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler

from trustlab.errors import TrustlabError
from trustlab.training.deep import (
    BalancedBatchSampler,
    ResampledEpochs,
    SplitTensors,
    make_loader,
    split_tensors,
)

STRATA = np.array([0] * 90 + [1] * 10 + [2] * 30)


def _toy(strata=STRATA) -> SplitTensors:
    n = len(strata)
    return SplitTensors(x=torch.arange(n, dtype=torch.float32)[:, None],
                        y=torch.as_tensor(strata % 2), g=torch.as_tensor(strata),
                        group_names=["a", "b", "c"], n_classes=2)


def test_split_tensors_on_colored_mnist_keeps_group_ids_across_splits():
    from trustlab.data import load_dataset

    ds = load_dataset("colored_mnist")
    tr, te = split_tensors(ds, "train", "group"), split_tensors(ds, "test", "group")
    assert tr.x.shape == (len(ds.train_idx), 2, 28, 28) and tr.x.dtype == torch.float32
    assert tr.group_names == te.group_names == ["0|green", "0|red", "1|green", "1|red"]
    names = np.asarray(tr.group_names)
    assert (names[tr.g.numpy()] == ds.groups_train["group"].astype(str).to_numpy()).all()
    assert (names[te.g.numpy()] == ds.groups_test["group"].astype(str).to_numpy()).all()
    assert (tr.y.numpy() == ds.y_train).all()
    with pytest.raises(TrustlabError, match="no group column 'sex'"):
        split_tensors(ds, "train", "sex")


def test_balanced_batches_have_equal_group_counts():
    sampler = BalancedBatchSampler(STRATA, batch_size=30, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 130 // 30 + 1
    for batch in batches:
        assert np.bincount(STRATA[batch], minlength=3).tolist() == [10, 10, 10]
    # A batch size not divisible by the group count: counts differ by at most one.
    for batch in BalancedBatchSampler(STRATA, batch_size=32, seed=1):
        counts = np.bincount(STRATA[batch], minlength=3)
        assert counts.sum() == 32 and counts.max() - counts.min() <= 1
    # The rare group is cycled through without repeats before it is reshuffled.
    first = [i for b in batches for i in b if STRATA[i] == 1][:10]
    assert sorted(first) == list(range(90, 100))


def test_epoch_oversampling_uses_imblearn_indices_and_equalises_groups():
    sampler = ResampledEpochs(STRATA, "oversample", seed=3)
    idx = np.array(list(iter(sampler)))
    assert np.bincount(STRATA[idx]).tolist() == [90, 90, 90]
    oracle = RandomOverSampler(random_state=3)
    oracle.fit_resample(np.zeros((len(STRATA), 1)), STRATA)
    assert sorted(idx.tolist()) == sorted(oracle.sample_indices_.tolist())
    # The next epoch redraws (seed + 1).
    idx2 = np.array(list(iter(sampler)))
    oracle.set_params(random_state=4).fit_resample(np.zeros((len(STRATA), 1)), STRATA)
    assert sorted(idx2.tolist()) == sorted(oracle.sample_indices_.tolist())


def test_epoch_undersampling_and_loader_counts():
    under = np.array(list(iter(ResampledEpochs(STRATA, "undersample", seed=0))))
    oracle = RandomUnderSampler(random_state=0)
    oracle.fit_resample(np.zeros((len(STRATA), 1)), STRATA)
    assert sorted(under.tolist()) == sorted(oracle.sample_indices_.tolist())
    assert np.bincount(STRATA[under]).tolist() == [10, 10, 10]
    loader = make_loader(_toy(), batch_size=16, seed=0, sampler="oversample")
    groups = torch.cat([g for _, _, g in loader]).numpy()
    assert np.bincount(groups).tolist() == [90, 90, 90]
    by_class = make_loader(_toy(), batch_size=16, seed=0, sampler="undersample",
                           balance_by="class")
    labels = torch.cat([y for _, y, _ in by_class]).numpy()
    assert np.bincount(labels).tolist() == [10, 10]  # class 0: groups a + c (120), class 1: b (10)


def test_loader_rejects_bad_options():
    with pytest.raises(TrustlabError, match="sampler: Input should be 'shuffle'"):
        make_loader(_toy(), 8, 0, sampler="smote")
    with pytest.raises(TrustlabError, match="balance_by: Input should be 'group' or 'class'"):
        make_loader(_toy(), 8, 0, balance_by="colour")
    with pytest.raises(TrustlabError, match="batch_size: Input should be greater than"):
        make_loader(_toy(), 0, 0)
    with pytest.raises(TrustlabError, match="batch_size >= the number of groups"):
        make_loader(_toy(), 2, 0, sampler="balanced_batch")
