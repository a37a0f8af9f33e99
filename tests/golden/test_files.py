"""golden.files: write_atomic (the whole file or the old one, never a temporary left behind) and torch's cache folder."""

import os
import subprocess
import sys

import pytest

from golden.files import TORCH_CACHE, write_atomic


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "x.txt"
    write_atomic(path, "one")
    write_atomic(path, b"two")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["x.txt"]


def test_text_is_written_as_utf8(tmp_path):
    path = tmp_path / "x.md"
    write_atomic(path, "| float | — |\n")
    assert path.read_bytes() == "| float | — |\n".encode()


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.txt"
    write_atomic(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("golden.files.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


_ONE_ADAM_STEP = """
import sys, torch
if sys.argv[1] == "training":
    import reports.app.training
model = torch.nn.Linear(2, 2)
optimizer = torch.optim.Adam(model.parameters())
model(torch.ones(1, 2)).sum().backward()
optimizer.step()
"""


@pytest.mark.parametrize("mode", ["plain", "training"])
def test_training_leaves_nothing_in_tmp(tmp_path, mode):
    """One Adam step makes torch create its compile cache under $TMPDIR; lutmac's training points it into build/."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "TORCHINDUCTOR_CACHE_DIR"} | {"TMPDIR": str(tmp)}
    subprocess.run([sys.executable, "-c", _ONE_ADAM_STEP, mode], env=env, check=True, cwd=TORCH_CACHE.parent.parent)
    left = [path.name for path in tmp.iterdir()]
    if mode == "plain":  # the hazard is real: without lutmac's setting the folder appears
        assert [name for name in left if name.startswith("torchinductor_")], left
    else:
        assert left == [] and TORCH_CACHE.is_dir()
