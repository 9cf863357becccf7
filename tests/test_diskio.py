"""Bulk writes reach files in pieces of at most WRITE_PIECE bytes (inspect_tool/diskio.py),
every byte in place, short writes continued, and the writers of layouts, tars and unpacked
files go through them."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from inspect_tool import diskio
from inspect_tool.diskio import WRITE_PIECE, pwrite_all, write_all, write_to
from inspect_tool.layers.tarwrite import PositionalWriter
from inspect_tool.layout.writer import BlobWriter

DATA = os.urandom(3 * WRITE_PIECE + 1234)


def write_calls() -> int:
    """The write system calls this process has made (/proc/self/io's syscw)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/self/io")


def test_write_all_cuts_pieces_and_continues_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real_write = os.write

    def short_write(fd: int, data: bytes | memoryview) -> int:
        sizes.append(len(data))
        return real_write(fd, bytes(data)[:5000])  # the kernel may take less than asked

    monkeypatch.setattr(diskio.os, "write", short_write)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_all(fd, DATA)
    finally:
        os.close(fd)
    assert path.read_bytes() == DATA
    assert max(sizes) == WRITE_PIECE
    assert len(sizes) == -(-len(DATA) // 5000)


def test_pwrite_all_writes_at_the_offset_and_leaves_the_descriptor_where_it_was(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"head")
    fd = os.open(path, os.O_RDWR)
    try:
        pwrite_all(fd, DATA, 10)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
    finally:
        os.close(fd)
    assert path.read_bytes() == b"head" + bytes(6) + DATA


class Recorder(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def write(self, data: bytes | memoryview) -> int:  # type: ignore[override]
        self.sizes.append(len(data))
        return super().write(data)


@pytest.mark.parametrize("size", [0, 1, WRITE_PIECE, WRITE_PIECE + 1, len(DATA)])
def test_write_to_hands_a_file_object_pieces_in_order(size: int) -> None:
    out = Recorder()
    write_to(out, DATA[:size])
    assert out.getvalue() == DATA[:size]
    assert all(n <= WRITE_PIECE for n in out.sizes)
    assert len(out.sizes) == max(1, -(-size // WRITE_PIECE))


def test_a_layout_blob_written_a_mebibyte_at_a_time_reaches_its_file_in_pieces(
    tmp_path: Path,
) -> None:
    data = os.urandom(4 << 20)
    with BlobWriter(tmp_path) as blob:
        before = write_calls()
        for start in range(0, len(data), 1 << 20):
            blob.write(data[start : start + (1 << 20)])
        blob.flush()
        calls = write_calls() - before
        descriptor = blob.commit("application/octet-stream")
    assert calls >= len(data) // WRITE_PIECE
    assert descriptor.digest.hex == hashlib.sha256(data).hexdigest()
    assert (tmp_path / descriptor.digest.hex).read_bytes() == data


def test_an_exported_files_bytes_reach_the_tar_in_pieces(tmp_path: Path) -> None:
    data = os.urandom(2 << 20)
    path = tmp_path / "tar"
    path.write_bytes(b"x" * 512)
    fd = os.open(path, os.O_RDWR)
    try:
        before = write_calls()
        PositionalWriter(fd, 512).fill(0, io.BytesIO(data), len(data))
        calls = write_calls() - before
    finally:
        os.close(fd)
    assert calls >= len(data) // WRITE_PIECE
    assert path.read_bytes()[512:] == data


def test_replace_file_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    diskio.replace_file(target, DATA, 0o640)
    assert target.read_bytes() == DATA
    assert os.listdir(tmp_path) == ["state.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o640 & ~umask


def test_replace_file_that_fails_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        diskio.replace_file(target, DATA)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.json"]
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):  # the rename over a directory is refused
        diskio.replace_file(tmp_path / "dir", b"x")
    assert sorted(os.listdir(tmp_path)) == ["dir", "state.json"]
