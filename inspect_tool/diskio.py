"""Bulk writes to files, cut into pieces the page cache takes cheaply.

A ``write()`` into a file on ext4 (which caches regular files in large folios since Linux
6.x) is given page-cache folios as large as the write. On the virtual machines this project
runs on, whose balloon takes back free memory, large folios cost several times the system
time of small ones when memory has been idle a few seconds. Measured writing 666 MiB: 1 MiB
writes 0.8-1.1 s of system time, 256 KiB ones 0.16 s; with two layers written side by side
(``pull``), 256 KiB writes still 0.7 s and 64 KiB ones 0.35 s (benchmarks/README.md). GNU
tar and Go's ``io.Copy`` (skopeo, crane) write in pieces of this order already.

So reads, hashing and decompression keep their 1 MiB steps; only the ``write()`` calls that
move bulk data into files go through here, at most ``WRITE_PIECE`` bytes each.
"""

from __future__ import annotations

import contextlib
import os

WRITE_PIECE = 64 * 1024

Buffer = bytes | memoryview

TYPE_CHECKING = False
if TYPE_CHECKING:  # for the type checker only: typing is not imported on a warm run's path
    from typing import Protocol

    class Writable(Protocol):
        def write(self, data: Buffer, /) -> object: ...


def write_all(fd: int, data: Buffer) -> None:
    """Every byte of ``data`` to the descriptor ``fd``, ``WRITE_PIECE`` at most per call
    (short writes continued)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view[:WRITE_PIECE]) :]


def pwrite_all(fd: int, data: Buffer, offset: int) -> None:
    """Every byte of ``data`` at ``offset`` of ``fd``, which is not moved (processes sharing
    the descriptor can write side by side)."""
    view = memoryview(data).cast("B")
    while view:
        done = os.pwrite(fd, view[:WRITE_PIECE], offset)
        offset += done
        view = view[done:]


def replace_file(path: str | os.PathLike[str], data: Buffer, mode: int = 0o666) -> None:
    """``path`` replaced whole by ``data``: written to a new hidden file beside it
    (``.NAME.<random>.tmp``, created exclusively, ``mode`` less the umask), then renamed over
    it, so that a reader, or a process killed mid-write, never sees half a file. On any
    failure the temporary is removed and the error raised; the old file stays whole."""
    directory, name = os.path.split(os.fspath(path))
    temporary = os.path.join(directory, f".{name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:  # a full disk, an interrupt: no temporary is left
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_to(out: Writable, data: Buffer) -> None:
    """Every byte of ``data`` to the file object ``out`` (whose ``write`` takes all it is
    given, as buffered files do), ``WRITE_PIECE`` at most per call."""
    if len(data) <= WRITE_PIECE:
        out.write(data)
        return
    view = memoryview(data).cast("B")
    for start in range(0, len(view), WRITE_PIECE):
        out.write(view[start : start + WRITE_PIECE])
