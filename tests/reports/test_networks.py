"""Traced networks: torchvision's parameter counts, shapes from the trace, bad layers rejected."""

import pytest
import torch
from torch import nn

from golden.errors import ConfigError, UnknownSchemeError
from reports.networks import NETWORKS, Layer, build, count_parameters, network_layers, network_spec, trace

# torchvision's published numbers (docs "Number of parameters" / paper counts)
PUBLISHED = {"resnet18": 11_689_512, "resnet34": 21_797_672, "mobilenet_v2": 3_504_872, "resnet20": 269_722}
# total MACs at batch 1, the usual published GMAC figures: ResNet-18 1.81G, ResNet-34 3.66G, MobileNet-V2 0.30G
PUBLISHED_GMACS = {"resnet18": 1.81, "resnet34": 3.66, "mobilenet_v2": 0.30, "resnet20": 0.041}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_torchvision(name):
    assert count_parameters(build(name)) == PUBLISHED[name] == NETWORKS[name].published_params


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_traced_weights_and_macs(name):
    layers = network_layers(name)
    model = build(name)
    conv_linear_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert sum(layer.params for layer in layers) == conv_linear_weights
    assert round(sum(layer.macs for layer in layers) / 1e9, 2 if name != "resnet20" else 3) == PUBLISHED_GMACS[name]


def test_resnet18_shapes_follow_torchvision():
    layers = {layer.name: layer for layer in network_layers("resnet18")}
    stem = layers["conv1"]
    assert (stem.cin, stem.cout, stem.kh, stem.stride, stem.pad, stem.hin, stem.hout) == (3, 64, 7, 2, 3, 224, 112)
    assert (stem.m, stem.k, stem.n) == (112 * 112, 3 * 49, 64)
    shortcut = layers["layer4.0.downsample.0"]
    assert (shortcut.kh, shortcut.stride, shortcut.hin, shortcut.hout, shortcut.cin, shortcut.cout) == (1, 2, 14, 7, 256, 512)
    fc = layers["fc"]
    assert (fc.type, fc.m, fc.k, fc.n, fc.bias) == ("linear", 1, 512, 1000, True)
    assert len(layers) == 21


def test_mobilenet_depthwise_layers():
    layers = network_layers("mobilenet_v2")
    depthwise = [layer for layer in layers if layer.type == "depthwise"]
    assert len(depthwise) == 17
    first = depthwise[0]
    assert (first.cin, first.groups, first.k, first.n, first.macs) == (32, 32, 9, 1, 32 * 9 * 112 * 112)
    assert layers[-1].name == "classifier.1" and layers[-1].k == 1280


def test_resnet20_is_cifar_layout():
    layers = network_layers("resnet20")
    assert len(layers) == 20 and layers[0].hin == 32 and layers[-1].cout == 10
    assert {layer.cout for layer in layers[:-1]} == {16, 32, 64}
    assert not any("downsample" in layer.name for layer in layers)


def test_unknown_network():
    with pytest.raises(UnknownSchemeError, match="network 'vgg'"):
        network_spec("vgg")


def test_unsupported_module_is_an_error_not_skipped():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Conv1d(1, 1, 3))
    with pytest.raises(UnknownSchemeError, match="Conv1d"):
        trace(model, (1, 3, 8, 8))


def test_model_without_layers():
    with pytest.raises(ConfigError, match="no Conv2d/Linear"):
        trace(nn.Sequential(nn.ReLU()), (1, 3, 8, 8))


def test_trace_handles_non_square_kernels_and_groups():
    layers = trace(nn.Sequential(nn.Conv2d(4, 8, (1, 3), padding=1, groups=2)), (1, 4, 5, 6))
    (layer,) = layers
    assert (layer.type, layer.kh, layer.kw, layer.groups, layer.k, layer.n, layer.m) == ("conv", 1, 3, 2, 6, 4, 7 * 6)
    assert layer.params == 8 * 2 * 3 == sum(p.numel() for p in nn.Conv2d(4, 8, (1, 3), groups=2, bias=False).parameters())


def test_non_square_stride_rejected():
    with pytest.raises(ConfigError, match="non-square stride"):
        trace(nn.Sequential(nn.Conv2d(3, 4, 3, stride=(1, 2))), (1, 3, 8, 8))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"type": "pool"}, UnknownSchemeError, "unknown layer type 'pool'"),
        ({"cin": 0}, ConfigError, "cin must be a positive int"),
        ({"groups": 3}, ConfigError, "groups=3 must divide"),
        ({"type": "depthwise"}, ConfigError, "depthwise layer has groups == cin"),
        ({"type": "linear", "kh": 3}, ConfigError, "linear layer has 1x1"),
        ({"pad": -1}, ConfigError, "pad must be a non-negative int"),
    ],
)
def test_bad_layers(kwargs, error, match):
    fields = {"name": "x", "type": "conv", "cin": 4, "cout": 8, **kwargs}
    with pytest.raises(error, match=match):
        Layer(**fields)


def test_trace_leaves_real_modules_usable():
    """Tracing moves a module to meta; hooks are removed either way."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    trace(model, (1, 3, 8, 8))
    assert not model[0]._forward_hooks
    assert model[0].weight.device == torch.device("meta")
