"""Image datasets. Importing this module registers them all:

``mnist`` and ``digits`` (:mod:`trustlab.data.mnist`), ``colored_mnist``
(:mod:`trustlab.data.colored_mnist`), ``cifar10`` (:mod:`trustlab.data.cifar10`),
``waterbirds`` (:mod:`trustlab.data.waterbirds`) and ``celeba`` (:mod:`trustlab.data.celeba`).
Each returns a :class:`~trustlab.data.container.Dataset` with float32 ``(N, C, H, W)``
images in [0, 1]; a dataset whose files are absent raises ``DatasetNotFound`` saying where
to put them.
"""

from trustlab.data import celeba, cifar10, colored_mnist, mnist, waterbirds  # noqa: F401
from trustlab.data.celeba import load_celeba
from trustlab.data.cifar10 import load_cifar10
from trustlab.data.colored_mnist import load_colored_mnist
from trustlab.data.mnist import load_digits_dataset, load_mnist
from trustlab.data.waterbirds import load_waterbirds

__all__ = ["load_celeba", "load_cifar10", "load_colored_mnist", "load_digits_dataset",
           "load_mnist", "load_waterbirds"]
