"""Where a layer's entries land: the ``Backend`` protocol the applier writes through.

Two backends implement it: a directory on disk (``disk.DiskBackend``, for unpack and the
runtime's layer store) and an in-memory tree (``export.py``'s, metadata only), so the
flattened tar of export is exactly the tree unpack writes. Handles name directories; the
applier never sees a path joined onto the root.
"""

from __future__ import annotations

import errno
from enum import Enum
from typing import Protocol, TypeVar

from inspect_tool.errors import UsageError
from inspect_tool.layers.tarreader import TarMember, TarReader
from inspect_tool.layers.unpack.audit import Note


class DestinationError(UsageError):
    """DEST cannot be used (not empty, not a directory) or cannot be written (exit 2)."""


class Kind(Enum):
    DIR = "directory"
    FILE = "file"
    SYMLINK = "symlink"
    OTHER = "special file"


H = TypeVar("H")


class Backend(Protocol[H]):
    """Where entries land: a directory on disk, or an in-memory tree (export).

    ``write_file``, ``mkdir``, ``symlink``, ``link`` and ``special`` raise FileExistsError
    when the name is taken, before reading any data. Handles name directories.
    """

    root: H
    devices: bool  # device nodes can be created
    note: Note  # set by the applier: reports a problem with the current entry

    def start_layer(self, index: int) -> None: ...
    def step(self, parent: H, name: str) -> tuple[Kind | None, H | None, str | None]: ...
    def kind(self, parent: H, name: str) -> Kind | None: ...
    def mkdir(self, parent: H, name: str, path: str, member: TarMember | None) -> None: ...
    def dir_meta(self, parent: H, name: str, path: str, member: TarMember) -> None: ...
    def root_meta(self, member: TarMember) -> None: ...
    def write_file(self, parent: H, name: str, member: TarMember, reader: TarReader) -> None: ...
    def symlink(self, parent: H, name: str, member: TarMember) -> None: ...
    def special(self, parent: H, name: str, member: TarMember) -> None: ...
    def whiteout_device(self, parent: H, name: str) -> None: ...
    def mark_opaque(self, directory: H) -> None: ...
    def link(self, src: H, src_name: str, parent: H, name: str) -> None: ...
    def remove(self, parent: H, name: str, kind: Kind, path: str) -> None: ...
    def listdir(self, parent: H) -> list[str]: ...
    def open_child(self, parent: H, name: str) -> H | None: ...
    def close(self, handle: H) -> None: ...


# errnos that mean the destination itself cannot take more: stop, do not report per entry
FATAL_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE}
)


def join(parent: str, name: str) -> str:
    """A resolved path one level down (the root is "")."""
    return f"{parent}/{name}" if parent else name
