"""The data sets the application trains on, each with its network: digits (``--quick``, CI) and Fashion-MNIST."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from golden.errors import ConfigError
from golden.models import DigitsNet, FashionNet

from .. import digits, fashion


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    load: Callable[[int], digits.ImageData]  # seed -> split (Fashion-MNIST's split is fixed; the seed is unused)
    network: Callable[[], nn.Module]
    input_shape: tuple[int, int, int, int]  # one image, NCHW
    test_count: Callable[[], int]  # how many test images the split holds, without loading it

    def check_image_count(self, images: int) -> None:
        """Raise ConfigError unless the split has ``images`` test images to run (the RTL runs exactly those)."""
        available = self.test_count()
        if images > available:
            raise ConfigError(f"rtl-images {images} is more than the {available} test images the {self.name} split holds")


DATASETS = {
    "digits": Dataset("digits", "DigitsNet on scikit-learn digits", digits.load_digits_split, DigitsNet, (1, 1, 8, 8),
                      digits.test_image_count),
    "fashion": Dataset("fashion", "FashionNet on Fashion-MNIST", lambda seed: fashion.load_fashion(), FashionNet,
                       (1, 1, fashion.SIZE, fashion.SIZE), lambda: fashion.FILES["test"][2]),
}


def dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ConfigError(f"data set {name!r} does not exist; expected one of {tuple(DATASETS)}")
    return DATASETS[name]
