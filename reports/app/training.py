"""The demo's training: the float DigitsNet (or any ``features`` + ``classifier`` model), then QAT per (scheme, bits) from the float weights.

Every model is saved with ``golden.layers.save_checkpoint`` and reloaded with
``weights_only=True`` into a fresh model (:func:`reload`); the reloaded model is the one exported.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from golden.files import keep_torch_cache_out_of_tmp
from golden.layers import calibrate, clamp_scales_, load_checkpoint, quantize_model, save_checkpoint
from golden.models import DigitsNet

from .. import digits

FLOAT_EPOCHS, QAT_EPOCHS = 30, 15
QUICK_FLOAT_EPOCHS, QUICK_QAT_EPOCHS = 10, 4
FLOAT_LR, QAT_LR = 3e-3, 1e-3
CALIBRATION_IMAGES = 256

keep_torch_cache_out_of_tmp()  # before any optimizer is made


def model_name(scheme: str, bits: int) -> str:
    return f"{scheme}_w{bits}"


def model_seed(seed: int, scheme: str, bits: int) -> int:
    """A per-model seed that does not depend on which other models run (crc32, not hash())."""
    return (seed * 1_000_003 + zlib.crc32(model_name(scheme, bits).encode())) % (1 << 31)


def train_float(data: digits.ImageData, seed: int, epochs: int, progress=None,
                network: Callable[[], nn.Module] = DigitsNet) -> nn.Module:
    """A fresh ``network()`` (DigitsNet by default, FashionNet for Fashion-MNIST) trained in float from ``seed``."""
    torch.manual_seed(seed)
    model = network()
    digits.train(model, data, epochs, FLOAT_LR, seed=seed, progress=progress)
    return model


def train_quantized(float_model: nn.Module, data: digits.ImageData, scheme: str, bits: int, seed: int, epochs: int,
                    progress=None) -> nn.Module:
    """QAT from the float weights: quantize, calibrate on training images (:func:`qat_start`), train with clamped scales."""
    torch.manual_seed(seed)
    model = qat_start(float_model, data, scheme, bits)
    digits.train(model, data, epochs, QAT_LR, seed=seed, progress=progress, after_step=clamp_scales_)
    return model


def qat_start(float_model: nn.Module, data: digits.ImageData, scheme: str, bits: int) -> nn.Module:
    """QAT's starting point: a quantized copy of the float model, calibrated on the first training images."""
    model = quantize_model(float_model, scheme, bits)
    return calibrate(model, data.x_train[:CALIBRATION_IMAGES])


def reload(model: nn.Module, path: Path, fresh: nn.Module) -> nn.Module:
    """Save ``model``, load it back into ``fresh`` (weights_only=True) and return the reloaded model."""
    save_checkpoint(model, path)
    return load_checkpoint(fresh, path).eval()
