"""The data sets the application trains on, each with its network and training recipe.

Fashion-MNIST is the main job's (``make``) and the ablation's; scikit-learn's digits is ``--quick``'s and CI's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from golden.errors import ConfigError
from golden.models import DigitsNet, FashionNet

from .. import digits, fashion
from .training import FLOAT_EPOCHS, QAT_EPOCHS, QUICK_FLOAT_EPOCHS, QUICK_QAT_EPOCHS


@dataclass(frozen=True)
class Recipe:
    """How a data set's models train: epochs, and how many images QAT and the per-layer bound check see."""

    float_epochs: int
    qat_epochs: int
    qat_images: int | None = None  # QAT trains on the first this many training images (None: all)
    bound_images: int | None = None  # test images of the per-layer float-vs-integer bound check (None: all)


#: Fashion-MNIST's measured setting (README's ablation): 1 float epoch reaches ~90 %; one QAT epoch on 6000 images
#: keeps a model near 30 core-seconds, of which the integer run of the 10 000 test images is ~20 s and the bound
#: check ~0.08 s per image.
FASHION_RECIPE = Recipe(float_epochs=1, qat_epochs=1, qat_images=6000, bound_images=100)


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    load: Callable[[int], digits.ImageData]  # seed -> split (Fashion-MNIST's split is fixed; the seed is unused)
    network: Callable[[], nn.Module]
    input_shape: tuple[int, int, int, int]  # one image, NCHW
    test_count: Callable[[], int]  # how many test images the split holds, without loading it
    recipe: Recipe
    quick_recipe: Recipe  # ``--quick``'s

    def check_image_count(self, images: int) -> None:
        """Raise ConfigError unless the split has ``images`` test images to run (the RTL runs exactly those)."""
        available = self.test_count()
        if images > available:
            raise ConfigError(f"rtl-images {images} is more than the {available} test images the {self.name} split holds")


DATASETS = {
    "digits": Dataset("digits", "DigitsNet on scikit-learn digits", digits.load_digits_split, DigitsNet, (1, 1, 8, 8),
                      digits.test_image_count, Recipe(FLOAT_EPOCHS, QAT_EPOCHS), Recipe(QUICK_FLOAT_EPOCHS, QUICK_QAT_EPOCHS)),
    "fashion": Dataset("fashion", "FashionNet on Fashion-MNIST", lambda seed: fashion.load_fashion(), FashionNet,
                       (1, 1, fashion.SIZE, fashion.SIZE), lambda: fashion.FILES["test"][2], FASHION_RECIPE, FASHION_RECIPE),
}


def dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ConfigError(f"data set {name!r} does not exist; expected one of {tuple(DATASETS)}")
    return DATASETS[name]
