"""Fashion-MNIST (Xiao et al. 2017, MIT licence) from Debian's ``dataset-fashion-mnist``, checked as it loads.

The package installs the original idx files under ``/usr/share/datasets/fashion-mnist``
(``train-images-idx3-ubyte.gz`` and the other three): 60 000 training and 10 000 test images of
28×28 greyscale pixels, 10 classes.  :func:`load_fashion` reads them (nothing is downloaded),
checks every file's magic number, dimension count, counts, image shape and label range, and
returns an :class:`reports.digits.ImageData` with pixels scaled to [0, 1], so the digits' training
loop (:func:`reports.digits.train`) and the demo's steps take it as they are.  A missing file
raises :class:`golden.errors.ToolMissingError` naming the Debian package; a corrupt or truncated
one :class:`golden.errors.DatasetError`, each in one line.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from golden.errors import DatasetError, ToolMissingError

from .digits import ImageData

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
PACKAGE = "dataset-fashion-mnist"
SIZE = 28
CLASSES = 10
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
#: split -> (images file, labels file, image count)
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
UBYTE = 0x08  # the idx type code of unsigned bytes


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An idx file (gzip-compressed) of unsigned bytes with ``dims`` dimensions, checked against its header."""
    if not path.is_file():
        raise ToolMissingError(f"Fashion-MNIST file {path} not found: install it with `apt-get install {PACKAGE}`")
    try:
        with gzip.open(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path} is not a readable gzip file: {error}") from None
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DatasetError(f"{path} is too short for an idx header ({len(raw)} bytes)")
    zero, kind, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or kind != UBYTE or ndim != dims:
        raise DatasetError(f"{path} has magic number 0x{int.from_bytes(raw[:4], 'big'):08x}, expected 0x00000{UBYTE:x}{dims:02x} "
                           f"(unsigned bytes, {dims} dimension{'s' if dims > 1 else ''})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise DatasetError(f"{path} holds {len(raw) - header} data bytes, its header {shape} says {size}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``split``'s images (N, 28, 28) uint8 and labels (N,) uint8, every count and range checked."""
    images_file, labels_file, count = FILES[split]
    images, labels = read_idx(root / images_file, 3), read_idx(root / labels_file, 1)
    if images.shape != (count, SIZE, SIZE):
        raise DatasetError(f"{root / images_file} holds images of shape {images.shape}, expected ({count}, {SIZE}, {SIZE})")
    if labels.shape != (count,):
        raise DatasetError(f"{root / labels_file} holds {labels.shape[0]} labels, expected {count}")
    if labels.max() >= CLASSES:
        raise DatasetError(f"{root / labels_file} holds label {labels.max()}, expected 0..{CLASSES - 1}")
    return images, labels


def load_fashion(root: str | Path = DEFAULT_ROOT, train_images: int | None = None, test_images: int | None = None) -> ImageData:
    """Fashion-MNIST's official split as ImageData (N, 1, 28, 28) in [0, 1]; optionally its first images only."""
    root = Path(root)
    parts = []
    for split, limit in (("train", train_images), ("test", test_images)):
        images, labels = load_split(root, split)
        images, labels = images[:limit], labels[:limit]
        parts += [torch.from_numpy((images / np.float32(255.0)).astype(np.float32)[:, None]),
                  torch.from_numpy(labels.astype(np.int64))]
    return ImageData(*parts)
