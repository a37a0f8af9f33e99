"""A CIFAR ResNet-20 with random weights, traced by ``golden.export`` into an integer network for RTL runs.

The float model is :func:`golden.models.resnet20` (He et al. 2016: 19 convolutions and one
linear layer, option-A shortcuts).  It gets seeded random BatchNorm gains and shifts (a few
negative, as training leaves them) and BatchNorm statistics measured on the input, so every
layer's output is normalized as in a trained network.  :func:`golden.layers.quantize_model`
then quantizes it (first conv, with its signed input, and fc at 8-bit LSQ; the rest at
``scheme`` / ``bits``), :func:`golden.layers.calibrate` initializes every quantizer on the same
input, and :func:`golden.export.export_model` traces it, option-A shortcuts included.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from golden.export import export_model
from golden.integer import IntegerNetwork
from golden.layers import calibrate, quantize_model
from golden.models import resnet20

NEGATIVE_GAIN_EVERY = 7  # every 7th BatchNorm channel gets a negative gain


def _randomize_batch_norm(model: nn.Module, generator: torch.Generator) -> None:
    """Random gains (some negative) and shifts; running statistics restart as a cumulative average."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            gain = torch.empty(module.num_features).uniform_(0.6, 1.4, generator=generator)
            gain[::NEGATIVE_GAIN_EVERY] *= -1
            module.weight.data.copy_(gain)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.2 + 0.1)
            module.reset_running_stats()
            module.momentum = None


def quantized_resnet20(x: np.ndarray, scheme: str = "post", bits: int = 4, seed: int = 0) -> nn.Module:
    """The fake-quant ResNet-20 (eval mode) for CIFAR-shaped input ``x`` (``[N, 3, H, W]`` reals), calibrated on ``x``."""
    torch.manual_seed(seed)
    model = resnet20()
    _randomize_batch_norm(model, torch.Generator().manual_seed(seed))
    batch = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    with torch.no_grad():
        model.train()(batch)  # BatchNorm statistics of this input (cumulative average of one batch)
    quantized = quantize_model(model.eval(), scheme, bits)
    return calibrate(quantized, batch).eval()


def random_resnet20(x: np.ndarray, scheme: str = "post", bits: int = 4, seed: int = 0) -> IntegerNetwork:
    """ResNet-20 for CIFAR input ``x`` (``[N, 3, 32, 32]`` reals) as a golden integer network, calibrated on ``x``."""
    network, _ = export_model(quantized_resnet20(x, scheme, bits, seed))
    return network
