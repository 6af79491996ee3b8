"""Deep networks: shapes, the width knob, DenseNet-BC's published size, bad input, the
registry's declarations."""

from __future__ import annotations

import pytest
import torch

from trustlab.errors import TrustlabError
from trustlab.registry import ParamError
from trustlab.training.deep import NETWORKS, count_parameters, make_model


@pytest.mark.parametrize("name,shape", [("mlp", (1, 8, 8)), ("mlp", (2, 28, 28)),
                                        ("small_cnn", (1, 8, 8)), ("small_cnn", (3, 32, 32))])
def test_forward_shape_and_features(name, shape):
    torch.manual_seed(0)
    model = make_model(name, shape, 7, width=16)
    x = torch.rand(5, *shape)
    assert model(x).shape == (5, 7)
    feats = model.features(x)
    assert feats.shape == (5, model.feature_dim)
    assert torch.allclose(model.classifier(feats), model(x))


def test_mlp_parameter_count_grows_with_width_exactly():
    counts = []
    for width in (8, 32, 128):
        model = make_model("mlp", (1, 8, 8), 10, width=width, depth=2)
        # 64 inputs -> width -> width -> 10 classes, with biases.
        expected = 64 * width + width + width * width + width + width * 10 + 10
        assert count_parameters(model) == expected
        counts.append(count_parameters(model))
    assert counts == sorted(counts) and len(set(counts)) == 3
    cnn = [count_parameters(make_model("small_cnn", (1, 8, 8), 10, width=w)) for w in (8, 16)]
    assert cnn[0] < cnn[1]


def test_densenet_bc_on_cifar_batch():
    torch.manual_seed(0)
    model = make_model("densenet_bc", (3, 32, 32), 10, depth=100, growth_rate=12)
    # Huang et al. (2017), Table 2: DenseNet-BC (L=100, k=12) has 0.8M parameters.
    assert 750_000 < count_parameters(model) < 850_000
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    small = make_model("densenet_bc", (3, 32, 32), 10, depth=40, growth_rate=12)
    assert count_parameters(small) < count_parameters(model)
    # 3 blocks of (40 - 4) / 6 = 6 bottlenecks, each with two convolutions.
    n_bottlenecks = sum(1 for m in small.modules() if type(m).__name__ == "_Bottleneck")
    assert n_bottlenecks == 18


def test_bad_model_input_is_a_trustlab_error():
    with pytest.raises(TrustlabError, match="unknown network 'resnet'"):
        make_model("resnet", (1, 8, 8), 10)
    with pytest.raises(ParamError, match="widht: unknown parameter; parameters: depth, "
                                         "dropout, width"):
        make_model("mlp", (1, 8, 8), 10, widht=3)
    with pytest.raises(ParamError, match="depth: must be 6n\\+4"):
        make_model("densenet_bc", (3, 32, 32), 10, depth=50)
    with pytest.raises(ParamError, match="width: Input should be greater than or equal to 1"):
        make_model("mlp", (1, 8, 8), 10, width=0)
    with pytest.raises(TrustlabError, match="small_cnn needs image input"):
        make_model("small_cnn", (64,), 10)


def test_networks_declare_their_parameters():
    assert list(NETWORKS) == ["mlp", "small_cnn", "badnets_cnn", "densenet_bc", "occam_cnn"]
    assert NETWORKS.resolve("densenet_bc", {"depth": 40}) == {
        "depth": 40, "growth_rate": 12, "compression": 0.5}
    model = make_model("mlp", (4,), 2, width=8)
    assert (model.width, model.depth, model.dropout) == (8, 2, 0.0)
    assert model.params == NETWORKS.get("mlp").Params(width=8)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32)])
def test_badnets_cnn_keeps_the_spatial_layout_to_its_dense_layers(shape):
    import torch

    model = make_model("badnets_cnn", shape, 10, width=4, hidden=16)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)
    # two 2x2 poolings: the first dense layer sees 2*width channels at H/4 x W/4
    dense = [m for m in model.features if isinstance(m, torch.nn.Linear)][0]
    assert dense.in_features == 8 * (shape[1] // 4) * (shape[2] // 4)
    assert model.features(torch.zeros(2, *shape)).shape == (2, 16) and model.feature_dim == 16
    assert model.last_conv.out_channels == 8


def test_badnets_cnn_refuses_images_it_cannot_pool():
    from trustlab.errors import TrustlabError

    with pytest.raises(TrustlabError, match="divisible by 4"):
        make_model("badnets_cnn", (1, 10, 10), 10)
