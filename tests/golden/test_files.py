"""golden.files.write_atomic: the whole file or the old one, never a temporary left behind."""

import pytest

from golden.files import write_atomic


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
