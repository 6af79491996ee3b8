"""Networks for the deep training loop: an MLP with a width knob, a small CNN and
DenseNet-BC, written by hand because torchvision is not a dependency.

Every network is an entry of :data:`NETWORKS` (the ``networks`` stage): a class with a
``name``, a ``Params`` declaration of its parameters and a constructor
``(input_shape, n_classes, **params)``. Every network has the same two parts so methods
need not know which one they train: ``features(x) -> (N, feature_dim)`` (the embedding
DANN attacks and embedding-level methods use) and ``classifier`` (one linear layer on it);
``forward(x) = classifier(features(x))``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field, field_validator
from torch import nn
from torch.nn import functional as F

from trustlab import registry
from trustlab.errors import TrustlabError
from trustlab.registry import Configurable, Registry


class MLP(Configurable, nn.Module):
    """Multi-layer perceptron: flatten, ``depth`` hidden layers of ``width`` ReLU units,
    then a linear head.

    ``width`` is the knob of MinDiff's over-parameterization study.
    """

    name: ClassVar[str] = "mlp"

    class Params(registry.Params):
        width: int = Field(256, ge=1, description="units per hidden layer")
        depth: int = Field(2, ge=0, description="hidden layers (0: a linear model)")
        dropout: float = Field(0.0, ge=0.0, lt=1.0,
                               description="dropout after each hidden layer (0: none)")

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, **params):
        super().__init__()
        self._set_params(params)
        width, depth, dropout = self.width, self.depth, self.dropout
        layers: list[nn.Module] = [nn.Flatten()]
        size = math.prod(input_shape)
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            size = width
        self.features = nn.Sequential(*layers)
        self.feature_dim = size
        self.classifier = nn.Linear(size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SmallCNN(Configurable, nn.Module):
    """Small CNN: two conv blocks (conv-BN-ReLU x2, max-pool), then global average pooling.

    Global pooling makes it work for any image size from 8x8 (digits) to 32x32 (CIFAR).
    ``width`` is the channel count of the first block; the second block has twice that.
    The last convolution is ``last_conv`` (fine-pruning prunes its channels).
    """

    name: ClassVar[str] = "small_cnn"

    class Params(registry.Params):
        width: int = Field(32, ge=1, description="channels of the first block (the second "
                                                 "has twice as many)")

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, **params):
        super().__init__()
        self._set_params(params)
        width = self.width
        if len(input_shape) != 3:
            raise TrustlabError(f"small_cnn needs image input (C, H, W), got shape {input_shape}")
        c = input_shape[0]

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU()]

        self.last_conv = nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False)
        self.features = nn.Sequential(
            *block(c, width), *block(width, width), nn.MaxPool2d(2),
            *block(width, 2 * width), self.last_conv, nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.feature_dim = 2 * width
        self.classifier = nn.Linear(2 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BadNetsCNN(Configurable, nn.Module):
    """BadNets' MNIST network (Gu et al. 2017): two 5x5 conv-BN-ReLU-max-pool blocks, then
    two fully connected layers.

    The usual victim of backdoor studies on digits (Neural Cleanse evaluates on the same
    shape of model): unlike ``small_cnn`` it keeps the spatial layout up to the fully
    connected layers, which is what lets a small corner trigger dominate a decision.
    ``width`` is the first block's channel count (the second has twice as many); the
    second convolution is ``last_conv`` (fine-pruning prunes its channels). Any image size
    divisible by 4 works (8x8 digits, 28x28 MNIST, 32x32 CIFAR).
    """

    name: ClassVar[str] = "badnets_cnn"

    class Params(registry.Params):
        width: int = Field(16, ge=1, description="channels of the first conv block (the "
                                                 "second has twice as many)")
        hidden: int = Field(128, ge=1, description="units of the fully connected layer")

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, **params):
        super().__init__()
        self._set_params(params)
        if len(input_shape) != 3 or input_shape[1] % 4 or input_shape[2] % 4:
            raise TrustlabError(f"badnets_cnn needs images (C, H, W) with H and W divisible "
                                f"by 4, got shape {input_shape}")
        c, h, w = input_shape
        width = self.width
        self.last_conv = nn.Conv2d(width, 2 * width, 5, padding=2, bias=False)
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 5, padding=2, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            self.last_conv, nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), self.hidden), nn.ReLU(),
        )
        self.feature_dim = self.hidden
        self.classifier = nn.Linear(self.hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# -- DenseNet-BC (Huang et al., 2017, "Densely Connected Convolutional Networks") ---------
class _Bottleneck(nn.Module):
    """BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k); the output is concatenated to the input."""

    def __init__(self, channels: int, growth_rate: int):
        super().__init__()
        inner = 4 * growth_rate
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, inner, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], dim=1)


class _Transition(nn.Module):
    """BN-ReLU-Conv1x1 (compressing channels by ``compression``) then 2x2 average pooling."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNetBC(Configurable, nn.Module):
    """DenseNet-BC (Huang et al., 2017) for CIFAR-sized images: three dense blocks of
    bottleneck layers.

    ``depth = 6 n + 4`` gives ``n`` bottleneck layers per block (each has two convolutions);
    ``depth=100, growth_rate=12`` is the paper's 0.8M-parameter DenseNet-BC. The first
    convolution has ``2 * growth_rate`` channels, transitions keep ``compression`` of them.
    """

    name: ClassVar[str] = "densenet_bc"

    class Params(registry.Params):
        depth: int = Field(100, ge=10, description="layers, 6n+4 (n bottlenecks per block)")
        growth_rate: int = Field(12, ge=1, description="channels each bottleneck adds")
        compression: float = Field(0.5, gt=0.0, le=1.0,
                                   description="share of channels a transition keeps")

        @field_validator("depth")
        @classmethod
        def _six_n_plus_four(cls, depth: int) -> int:
            if (depth - 4) % 6:
                raise ValueError("must be 6n+4 with n >= 1 (e.g. 40, 100)")
            return depth

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, **params):
        super().__init__()
        self._set_params(params)
        depth, growth_rate, compression = self.depth, self.growth_rate, self.compression
        if len(input_shape) != 3:
            raise TrustlabError(f"densenet_bc needs image input (C, H, W), got {input_shape}")
        n_layers = (depth - 4) // 6
        channels = 2 * growth_rate
        modules: list[nn.Module] = [nn.Conv2d(input_shape[0], channels, 3, padding=1,
                                              bias=False)]
        for block in range(3):
            for _ in range(n_layers):
                modules.append(_Bottleneck(channels, growth_rate))
                channels += growth_rate
            if block < 2:
                out = math.floor(channels * compression)
                modules.append(_Transition(channels, out))
                channels = out
        modules += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*modules)
        self.feature_dim = channels
        self.classifier = nn.Linear(channels, n_classes)
        for m in self.modules():  # the paper's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


NETWORKS = Registry("networks", "network", {
    "mlp": "trustlab.training.deep.models:MLP",
    "small_cnn": "trustlab.training.deep.models:SmallCNN",
    "badnets_cnn": "trustlab.training.deep.models:BadNetsCNN",
    "densenet_bc": "trustlab.training.deep.models:DenseNetBC",
    "occam_cnn": "trustlab.training.deep.occam:OccamCNN",
})


def make_model(name: str, input_shape: tuple[int, ...], n_classes: int, **params) -> nn.Module:
    """Build the registered network ``name``; an unknown name or a bad parameter raises
    ``TrustlabError`` (a bad parameter a :class:`~trustlab.registry.ParamError`)."""
    return NETWORKS.get(name)(tuple(int(s) for s in input_shape), int(n_classes), **params)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
