"""The demo's data and model: scikit-learn's handwritten digits and a small CNN, trained on the CPU.

The training loop (:func:`train`), :func:`predict`, :func:`accuracy` and :func:`segments` take any
:class:`ImageData` and any model laid out as ``features`` + ``classifier``: Fashion-MNIST
(:mod:`reports.fashion`) uses them as they are.

The CNN, :class:`golden.models.DigitsNet`, is defined with the other models golden quantizes.

The digits (1797 greyscale 8×8 images, 10 classes) ship inside scikit-learn, so nothing is
downloaded at run time.  The split is fixed and seeded; pixel values 0..16 are scaled to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from golden.errors import ConfigError

TEST_FRACTION = 0.25


@dataclass(frozen=True)
class ImageData:
    """A train/test split of greyscale images: what :func:`train` and the demo's steps take (digits or Fashion-MNIST)."""

    x_train: torch.Tensor  # (N, 1, H, W) float32 in [0, 1]
    y_train: torch.Tensor  # (N,) int64
    x_test: torch.Tensor
    y_test: torch.Tensor


def test_image_count() -> int:
    """How many test images the split holds (450), without splitting."""
    return math.ceil(len(load_digits().target) * TEST_FRACTION)


DigitsData = ImageData  # the digits split is an ImageData of 8x8 images


def load_digits_split(seed: int = 0) -> DigitsData:
    """The fixed, stratified train/test split of scikit-learn's digits."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, digits.target, test_size=TEST_FRACTION, random_state=seed, stratify=digits.target
    )
    return DigitsData(torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te), torch.from_numpy(y_te))


def train(
    model: nn.Module,
    data: ImageData,
    epochs: int,
    lr: float,
    seed: int = 0,
    batch_size: int = 64,
    progress=None,
    after_step: Callable[[nn.Module], object] | None = None,
) -> list[float]:
    """Adam with cosine decay; returns the mean training loss per epoch (deterministic for a seed).

    ``after_step(model)`` runs after every optimizer step (QAT clamps its learned scales there).
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(data.y_train) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    losses = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(data.y_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(model)
            schedule.step()
            total += loss.item() * len(batch)
        losses.append(total / len(order))
        if progress is not None:
            progress.update(1)
    model.eval()
    return losses


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return model(x).argmax(dim=1)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions == labels).float().mean())


def segments(model: nn.Module) -> list[tuple[str, nn.Module, list[nn.Module], nn.Module | None]]:
    """A quantized DigitsNet (or FashionNet: ``features`` + ``classifier``) cut at its quantized layers, for layer-by-layer comparisons with the integer model.

    Each entry is ``(layer name, quantized layer, the modules after it up to the next quantized
    layer, the next layer's activation quantizer or None)``; the names are the export's.
    """
    found: list[list] = []
    for index, module in enumerate(model.features):
        if hasattr(module, "act_quantizer"):
            found.append([f"features.{index}", module, []])
        elif not found:
            raise ConfigError(f"{type(model).__name__}.features must start with a quantized layer")
        else:
            found[-1][2].append(module)
    found.append(["classifier", model.classifier, []])
    consumers = [entry[1].act_quantizer for entry in found[1:]] + [None]
    return [(name, module, post, consumer) for (name, module, post), consumer in zip(found, consumers, strict=True)]
