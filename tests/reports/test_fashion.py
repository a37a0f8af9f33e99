"""Fashion-MNIST's loader on the installed files and on corrupted copies; FashionNet's size."""

import gzip
import shutil

import numpy as np
import pytest
import torch

from golden.errors import DatasetError, LutmacError, ToolMissingError
from golden.models import FashionNet
from reports import fashion

INSTALLED = all((fashion.DEFAULT_ROOT / name).is_file() for files in fashion.FILES.values() for name in files[:2])


def _idx(path, array: np.ndarray, magic: int | None = None) -> None:
    dims = array.ndim
    header = (magic if magic is not None else (0x08 << 8) | dims).to_bytes(4, "big")
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def _fake_root(tmp_path, train=6, test=4):
    """A folder with valid idx files of a few images each (counts differ from the real ones)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        images, labels, _ = fashion.FILES[split]
        _idx(tmp_path / images, rng.integers(0, 256, (count, 28, 28)))
        _idx(tmp_path / labels, rng.integers(0, 10, count))
    return tmp_path


@pytest.mark.skipif(not INSTALLED, reason=f"Debian package {fashion.PACKAGE} not installed")
def test_installed_files_load_whole():
    data = fashion.load_fashion()
    assert data.x_train.shape == (60_000, 1, 28, 28) and data.x_test.shape == (10_000, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    # the official split is balanced: 6000 / 1000 images per class
    assert torch.equal(torch.bincount(data.y_train), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(data.y_test), torch.full((10,), 1000))
    few = fashion.load_fashion(train_images=5, test_images=3)
    assert torch.equal(few.x_train, data.x_train[:5]) and torch.equal(few.y_test, data.y_test[:3])


def test_missing_file_names_the_package(tmp_path):
    with pytest.raises(ToolMissingError, match=f"apt-get install {fashion.PACKAGE}") as error:
        fashion.load_fashion(tmp_path)
    assert "\n" not in str(error.value)


def test_the_counts_of_the_real_files_are_required(tmp_path):
    with pytest.raises(DatasetError, match=r"shape \(6, 28, 28\), expected \(60000, 28, 28\)"):
        fashion.load_fashion(_fake_root(tmp_path))


def _real_sized(tmp_path, monkeypatch):
    monkeypatch.setitem(fashion.FILES, "train", (*fashion.FILES["train"][:2], 6))
    monkeypatch.setitem(fashion.FILES, "test", (*fashion.FILES["test"][:2], 4))
    return _fake_root(tmp_path)


def test_valid_small_files_load(tmp_path, monkeypatch):
    data = fashion.load_fashion(_real_sized(tmp_path, monkeypatch))
    assert data.x_train.shape == (6, 1, 28, 28) and data.y_test.shape == (4,)


@pytest.mark.parametrize("corruption, message", [
    ("magic", "magic number 0x00000804, expected 0x00000803"),
    ("truncated", "data bytes, its header"),
    ("not_gzip", "not a readable gzip file"),
    ("label", "holds label 12, expected 0..9"),
    ("label_count", "holds 5 labels, expected 6"),
    ("image_shape", r"shape \(6, 28, 27\)"),
])
def test_corrupted_files_fail_in_one_line(tmp_path, monkeypatch, corruption, message):
    root = _real_sized(tmp_path, monkeypatch)
    images, labels, _ = fashion.FILES["train"]
    if corruption == "magic":
        _idx(root / images, np.zeros((6, 28, 28, 1)), magic=0x0804)
    elif corruption == "truncated":
        raw = gzip.decompress((root / images).read_bytes())
        (root / images).write_bytes(gzip.compress(raw[:-10]))
    elif corruption == "not_gzip":
        (root / images).write_bytes(b"not a gzip file at all")
    elif corruption == "label":
        _idx(root / labels, np.array([0, 1, 2, 12, 3, 4]))
    elif corruption == "label_count":
        _idx(root / labels, np.arange(5))
    else:
        _idx(root / images, np.zeros((6, 28, 27)))
    with pytest.raises(DatasetError, match=message) as error:
        fashion.load_fashion(root)
    assert isinstance(error.value, LutmacError) and "\n" not in str(error.value)


def test_a_copy_of_the_installed_files_is_read_from_its_folder(tmp_path):
    if not INSTALLED:
        pytest.skip(f"Debian package {fashion.PACKAGE} not installed")
    for name in fashion.FILES["test"][:2]:
        shutil.copy(fashion.DEFAULT_ROOT / name, tmp_path / name)
    with pytest.raises(ToolMissingError, match="train-images"):
        fashion.load_fashion(tmp_path)


def test_fashion_net_has_four_convs_and_about_2_5_million_macs():
    model = FashionNet()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    macs = []
    hooks = [m.register_forward_hook(lambda mod, i, o: macs.append(o.numel() * mod.in_channels * 9)) for m in convs]
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    for hook in hooks:
        hook.remove()
    assert len(convs) == 4 and all(c.kernel_size == (3, 3) for c in convs)
    assert 2.4e6 < sum(macs) + model.classifier.in_features * 10 < 2.6e6
