"""Tar members of any kind, written exactly as given (names are not cleaned: hostile ones stay),
for the unpack, export and analysis tests."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_TAR_KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


@dataclass(frozen=True)
class Entry:
    """One tar member."""

    name: str
    kind: str = "file"  # a key of _TAR_KINDS, or a raw one-character typeflag
    data: bytes = b""
    link: str = ""
    mode: int | None = None  # default: 0o755 for directories, 0o644 otherwise
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, str], ...] = ()
    pax_path: bool = False  # carry the name in a PAX "path" record


def file_entry(name: str, data: bytes | int = b"", mode: int | None = None, **kw: Any) -> Entry:
    """A regular file; an int ``data`` is that many bytes of "x"."""
    return Entry(name, "file", b"x" * data if isinstance(data, int) else data, mode=mode, **kw)


def dir_entry(name: str, mode: int | None = None, **kw: Any) -> Entry:
    return Entry(name, "dir", mode=mode, **kw)


def symlink_entry(name: str, target: str, **kw: Any) -> Entry:
    return Entry(name, "symlink", link=target, **kw)


def hardlink_entry(name: str, target: str, **kw: Any) -> Entry:
    return Entry(name, "hardlink", link=target, **kw)


def build_layer(entries: Iterable[Entry]) -> bytes:
    """An uncompressed PAX tar of ``entries``, in order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TAR_KINDS.get(entry.kind) or entry.kind.encode()
            info.mode = (
                entry.mode if entry.mode is not None else (0o755 if entry.kind == "dir" else 0o644)
            )
            info.uid, info.gid, info.mtime = entry.uid, entry.gid, entry.mtime
            info.linkname = entry.link
            info.devmajor, info.devminor = entry.devmajor, entry.devminor
            pax = {f"SCHILY.xattr.{k}": v for k, v in entry.xattrs}
            if entry.pax_path:
                pax["path"] = entry.name
            info.pax_headers = pax
            if entry.kind == "file" or entry.kind not in _TAR_KINDS:
                info.size = len(entry.data)
                tf.addfile(info, io.BytesIO(entry.data))
            else:
                tf.addfile(info)
    return buffer.getvalue()
