"""The atomic file writer behind ``hwmodel.save_arch``, the ZigZag export and the run
files: permissions like a plain ``open(path, "w")`` and symlinks written through."""

from __future__ import annotations

import os
import stat

import pytest

import hwmodel


@pytest.fixture
def umask():
    """Set the process umask for one test; restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda m: os.umask(m)
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_new_file_respects_the_umask(tmp_path, umask, mask):
    arch = hwmodel.load_arch("eyeriss")
    umask(mask)
    p = tmp_path / "a.yaml"
    hwmodel.save_arch(arch, p)
    assert _mode(p) == 0o666 & ~mask
    with open(tmp_path / "plain.txt", "w") as f:  # what a plain open gives, for reference
        f.write("x")
    assert _mode(p) == _mode(tmp_path / "plain.txt")


def test_overwrite_keeps_the_files_mode(tmp_path, umask):
    arch = hwmodel.load_arch("eyeriss")
    p = tmp_path / "a.yaml"
    p.write_text("old\n")
    os.chmod(p, 0o640)
    umask(0o022)
    hwmodel.save_arch(arch, p)
    assert _mode(p) == 0o640
    assert hwmodel.load_arch(p) is not None


def test_symlink_is_written_through(tmp_path):
    arch = hwmodel.load_arch("eyeriss")
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "accel.yaml"
    target.write_text("old\n")
    link = tmp_path / "accel.yaml"
    link.symlink_to(target)
    hwmodel.save_arch(arch, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == arch.to_yaml()
    assert sorted(os.listdir(tmp_path)) == ["accel.yaml", "real"]  # no temp file left
    assert os.listdir(tmp_path / "real") == ["accel.yaml"]


def test_dangling_symlink_creates_its_target(tmp_path):
    arch = hwmodel.load_arch("eyeriss")
    target = tmp_path / "new.yaml"
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    hwmodel.save_arch(arch, link)
    assert link.is_symlink() and target.read_text() == arch.to_yaml()


def test_failed_write_leaves_nothing(tmp_path):
    p = tmp_path / "a.yaml"
    with pytest.raises(Exception):
        hwmodel.save_arch("not an architecture", p)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_bytes_mode_umask_symlink_and_no_temp_left(tmp_path, umask, mask):
    data = bytes(range(256)) * 3  # not UTF-8: written as is
    umask(mask)
    p = tmp_path / "a.bin"
    hwmodel.atomic_write_bytes(p, data)
    assert p.read_bytes() == data and _mode(p) == 0o666 & ~mask
    os.chmod(p, 0o640)
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "b.bin"
    link = tmp_path / "b.bin"
    link.symlink_to(target)
    hwmodel.atomic_write_bytes(p, b"new")
    hwmodel.atomic_write_bytes(link, memoryview(b"through"))
    assert p.read_bytes() == b"new" and _mode(p) == 0o640
    assert link.is_symlink() and target.read_bytes() == b"through"
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin", "real"]


def test_bytes_mode_failed_write_leaves_the_old_file(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    with pytest.raises(TypeError):
        hwmodel.atomic_write_bytes(p, "text is not bytes")
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]


def test_text_mode_writes_utf8_bytes(tmp_path):
    p = tmp_path / "t.txt"
    hwmodel.atomic_write_text(p, "µJ\nline 2\r\n")
    assert p.read_bytes() == "µJ\nline 2\r\n".encode()
