"""The ResNet-20 the network runs use: a traced torch CIFAR ResNet-20 (option-A shortcuts), not a hand-built one."""

import dataclasses

import numpy as np
import pytest
import torch

from golden.export import export_model
from golden.integer import IntegerNetwork
from golden.stages import Residual
from sim.resnet20 import quantized_resnet20, random_resnet20

STAGES = ((1, 16), (2, 32), (3, 64))


def cifar_input(seed: int, size: int = 8, batch: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (batch, 3, size, size))


def test_layout_is_the_cifar_resnet20():
    network = random_resnet20(cifar_input(7), seed=7)
    blocks = [f"layer{stage}.{block}" for stage, _ in STAGES for block in range(3)]
    assert [layer.name for layer in network.layers] == (
        ["conv1"] + [f"{block}.{conv}" for block in blocks for conv in ("conv1", "conv2")] + ["fc"]
    )
    layers = {layer.name: layer for layer in network.layers}
    stem, fc = layers["conv1"], layers["fc"]
    assert stem.signed_input and network.input_stage.signed and network.input_stage.bits == 8
    assert (stem.cfg.scheme, stem.cfg.weight.bits, stem.weight_codes.shape) == ("int", 8, (16, 3, 3, 3))
    assert (fc.cfg.scheme, fc.cfg.weight.bits, fc.output.mode, fc.weight_codes.shape) == ("int", 8, "accumulator", (10, 64))
    previous = "conv1"
    for (stage, channels), block in ((s, b) for s in STAGES for b in range(3)):
        name = f"layer{stage}.{block}"
        first, second = layers[f"{name}.conv1"], layers[f"{name}.conv2"]
        downsample = stage > 1 and block == 0
        assert first.stride == ((2, 2) if downsample else (1, 1)) and first.residual is None
        assert first.weight_codes.shape[:2] == (channels, channels // 2 if downsample else channels)
        assert (first.cfg.scheme, first.cfg.weight.bits, first.cfg.act_bits) == ("post", 4, 4)
        pad = channels // 4 if downsample else 0
        assert second.residual == Residual(previous, "codes", 2 if downsample else 1, (pad, pad))
        previous = second.name
    last = layers["layer3.2.conv2"].output
    assert last.global_pool and last.bits == 8  # the fc's 8-bit input, averaged over the 2x2 positions


def test_the_network_is_a_function_of_input_and_seed():
    x = cifar_input(3)
    assert random_resnet20(x, seed=3).to_dict() == random_resnet20(x, seed=3).to_dict()
    first, other = random_resnet20(x, seed=3), random_resnet20(x, seed=4)
    assert not np.array_equal(first.layers[1].weight_codes, other.layers[1].weight_codes)


@pytest.mark.parametrize(("scheme", "bits", "weights", "act_format"), [
    ("lsq", 4, "int", "uniform"), ("pot", 3, "pot", "uniform"), ("asq_post", 4, "post", "uniform"),
    ("apot", 4, "apot", "table"), ("lcq", 3, "lcq", "table"),
])  # fmt: skip
def test_other_schemes_trace_and_track_the_fake_quant_model(scheme, bits, weights, act_format):
    """End to end (the integer shortcut adds codes, the fake-quant one floats): measured <= 14 %, floor 25 %."""
    x = cifar_input(0, size=32, batch=2)
    model = quantized_resnet20(x, scheme, bits)
    network, _ = export_model(model)
    body = network.layers[1]
    assert (body.cfg.scheme, body.cfg.act_bits, body.cfg.act_format) == (weights, bits, act_format)
    with torch.no_grad():
        reference = model(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    logits = network.logits(x)
    assert np.abs(logits - reference).max() < 0.25 * np.abs(reference).max()


def test_a_misplaced_shortcut_is_caught_by_the_end_to_end_check():
    """The floor above is tight enough to see option-A padding on the wrong channels."""
    x = cifar_input(0, size=32, batch=2)
    model = quantized_resnet20(x)
    network, _ = export_model(model)
    layers = list(network.layers)
    index = [layer.name for layer in layers].index("layer3.0.conv2")
    layers[index] = dataclasses.replace(layers[index], residual=dataclasses.replace(layers[index].residual, channel_pad=(32, 0)))
    misplaced = IntegerNetwork(tuple(layers), network.input_stage)
    with torch.no_grad():
        reference = model(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    assert np.abs(network.logits(x) - reference).max() < 0.25 * np.abs(reference).max()
    assert np.abs(misplaced.logits(x) - reference).max() > 0.25 * np.abs(reference).max()
