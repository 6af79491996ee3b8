"""From a trustlab :class:`~trustlab.data.container.Dataset` split to PyTorch batches.

``split_tensors`` gives the inputs, labels and integer group ids of one split;
``make_loader`` batches them with one of the sampling schemes
(:data:`~trustlab.training.deep.options.SAMPLERS`):

* ``"shuffle"`` — plain shuffled epochs;
* ``"oversample"`` / ``"undersample"`` — epoch-level resampling of the group (or class)
  strata to equal size, redrawn every epoch with imbalanced-learn's
  ``RandomOverSampler`` / ``RandomUnderSampler`` (their ``sample_indices_``);
* ``"balanced_batch"`` — every batch holds (near-)equal counts of each stratum.

Every random draw comes from the seed, so an epoch's order is the same on every run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from trustlab.errors import TrustlabError
from trustlab.registry import check_params
from trustlab.training.deep.options import LoopOptions


@dataclass
class SplitTensors:
    """One split as tensors: ``x`` float32, ``y`` int64 labels, ``g`` int64 group ids.

    ``group_names[i]`` is the group value whose id is ``i`` (the same ids on every split
    of a dataset, since they are encoded over all rows).
    """

    x: torch.Tensor
    y: torch.Tensor
    g: torch.Tensor
    group_names: list[str]
    n_classes: int

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, idx) -> SplitTensors:
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return SplitTensors(self.x[idx], self.y[idx], self.g[idx], self.group_names,
                            self.n_classes)


def _group_column(dataset, group_column: str | None) -> str:
    if group_column is None:
        group_column = dataset.meta.get("group_column") or dataset.groups.columns[0]
    if group_column not in dataset.groups.columns:
        raise TrustlabError(f"dataset {dataset.name!r} has no group column {group_column!r}; "
                            f"columns: {', '.join(map(str, dataset.groups.columns))}")
    return group_column


def split_tensors(dataset, split: str = "train", group_column: str | None = None,
                  indices: np.ndarray | None = None) -> SplitTensors:
    """Tensors of the ``train`` or ``test`` split (or of explicit row ``indices``).

    Tabular datasets must already be numeric (encode them first); images are used as
    stored. ``group_column`` defaults to the dataset's ``meta['group_column']``, else its
    first group column.
    """
    if split not in ("train", "test"):
        raise TrustlabError(f"split must be 'train' or 'test', got {split!r}")
    col = _group_column(dataset, group_column)
    # Encode over all rows so that a group keeps its id on both splits.
    codes, names = pd.factorize(dataset.groups[col].astype(str), sort=True)
    idx = np.asarray(indices if indices is not None else
                     (dataset.train_idx if split == "train" else dataset.test_idx))
    X = dataset.X
    if isinstance(X, pd.DataFrame):
        try:
            X = X.to_numpy(dtype=np.float32)
        except (TypeError, ValueError):
            raise TrustlabError(f"dataset {dataset.name!r} has non-numeric features; encode "
                                "them before deep training") from None
    x = torch.as_tensor(np.ascontiguousarray(X[idx], dtype=np.float32))
    return SplitTensors(x=x, y=torch.as_tensor(dataset.y[idx], dtype=torch.long),
                        g=torch.as_tensor(codes[idx], dtype=torch.long),
                        group_names=[str(n) for n in names], n_classes=dataset.n_classes)


class ResampledEpochs(Sampler[int]):
    """Each epoch, balance the strata with imbalanced-learn, then shuffle.

    imbalanced-learn does the resampling (``sample_indices_`` of a random over/under
    sampler fitted on the stratum ids); this class only redraws it every epoch with a new
    seed (``seed + epoch``) so over-sampled duplicates and dropped rows change.
    """

    def __init__(self, strata: np.ndarray, kind: str, seed: int):
        self.strata = np.asarray(strata)
        self.kind = kind
        self.seed = int(seed)
        self.epoch = 0
        if len(np.unique(self.strata)) < 2:
            raise TrustlabError(f"{kind} needs at least two groups/classes in the training data")
        self._len = len(self.indices_for(0))

    def indices_for(self, epoch: int) -> np.ndarray:
        from imblearn.over_sampling import RandomOverSampler
        from imblearn.under_sampling import RandomUnderSampler

        cls = RandomOverSampler if self.kind == "oversample" else RandomUnderSampler
        sampler = cls(random_state=(self.seed + epoch) % 2**32)
        sampler.fit_resample(np.zeros((len(self.strata), 1)), self.strata)
        return np.asarray(sampler.sample_indices_)

    def __iter__(self) -> Iterator[int]:
        idx = self.indices_for(self.epoch)
        order = np.random.default_rng((self.seed, self.epoch)).permutation(len(idx))
        self.epoch += 1
        return iter(idx[order].tolist())

    def __len__(self) -> int:
        return self._len


class BalancedBatchSampler(Sampler[list[int]]):
    """Batches with equal counts of every stratum (the remainder spread at random).

    Written by hand: neither torch nor imbalanced-learn has a per-batch stratified sampler.
    Each stratum is read in a shuffled order and reshuffled when exhausted, so small strata
    repeat (over-sampling within batches). An epoch has ``ceil(N / batch_size)`` batches.
    """

    def __init__(self, strata: np.ndarray, batch_size: int, seed: int):
        self.strata = np.asarray(strata)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0
        self.members = [np.flatnonzero(self.strata == s) for s in np.unique(self.strata)]
        if self.batch_size < len(self.members):
            raise TrustlabError(f"balanced_batch needs batch_size >= the number of groups "
                                f"({len(self.members)}), got {self.batch_size}")

    def __len__(self) -> int:
        return math.ceil(len(self.strata) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        n_strata = len(self.members)
        streams = [rng.permutation(m) for m in self.members]
        pos = [0] * n_strata
        for _ in range(len(self)):
            counts = np.full(n_strata, self.batch_size // n_strata)
            counts[rng.choice(n_strata, self.batch_size % n_strata, replace=False)] += 1
            batch: list[int] = []
            for s, c in enumerate(counts):
                for _ in range(c):
                    if pos[s] == len(streams[s]):
                        streams[s], pos[s] = rng.permutation(self.members[s]), 0
                    batch.append(int(streams[s][pos[s]]))
                    pos[s] += 1
            yield [batch[i] for i in rng.permutation(len(batch))]


def make_loader(data: SplitTensors, batch_size: int, seed: int, sampler: str | None = None,
                balance_by: str | None = None) -> DataLoader:
    """A deterministic single-process DataLoader of ``(x, y, g)`` batches.

    ``batch_size``, ``sampler`` and ``balance_by`` are checked against
    :class:`~trustlab.training.deep.options.LoopOptions` (None: its default)."""
    given = {"batch_size": batch_size, "sampler": sampler, "balance_by": balance_by}
    options = check_params(LoopOptions, {k: v for k, v in given.items() if v is not None})
    sampler, balance_by = options.sampler, options.balance_by
    strata = (data.g if balance_by == "group" else data.y).numpy()
    tensors = TensorDataset(data.x, data.y, data.g)
    if sampler == "balanced_batch":
        return DataLoader(tensors, batch_sampler=BalancedBatchSampler(strata, batch_size, seed),
                          num_workers=0)
    if sampler in ("oversample", "undersample"):
        return DataLoader(tensors, batch_size=batch_size,
                          sampler=ResampledEpochs(strata, sampler, seed), num_workers=0)
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(tensors, batch_size=batch_size, shuffle=True, generator=generator,
                      num_workers=0)
