"""The registry blob cache: content-addressed, written only after a blob's digest checks.

``$DOCKSCOPE_CACHE/blobs/<algorithm>/<hex>`` when DOCKSCOPE_CACHE names a directory (``off``
turns caching off), else ``$XDG_CACHE_HOME/dockscope/blobs/...`` (``~/.cache``), as the
base-view cache places itself. A blob is streamed into a temporary file beside its final
name and renamed there once its size and digest check, so a reader never sees half a blob.
``heads/<algorithm>/<hex>`` keeps the first bytes of layers that ``inspect`` sniffed for
their compression (never used as content).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from inspect_tool.diskio import write_to
from inspect_tool.model.digest import Digest
from inspect_tool.sources.cachedir import cache_home


class BlobCache:
    """Blobs by digest. Every method tolerates a cache that cannot be written: reads then
    simply go to the registry again."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    @classmethod
    def default(cls) -> BlobCache:
        return cls(cache_home())

    def path(self, digest: Digest, kind: str = "blobs") -> Path | None:
        if self.root is None:
            return None
        return self.root / kind / digest.algorithm / digest.hex

    def open(self, digest: Digest) -> BinaryIO | None:
        path = self.path(digest)
        if path is None:
            return None
        try:
            return open(path, "rb")
        except OSError:
            return None

    def size(self, digest: Digest) -> int | None:
        path = self.path(digest)
        try:
            return path.stat().st_size if path is not None else None
        except OSError:
            return None

    def read(self, digest: Digest, kind: str = "blobs") -> bytes | None:
        path = self.path(digest, kind)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def temporary(self, digest: Digest) -> tuple[BinaryIO, Path] | None:
        """A new temporary file beside the blob's final name, or None without a cache."""
        path = self.path(digest)
        if path is None:
            return None
        try:
            self._directory(path.parent)
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{digest.hex[:16]}.")
        except OSError:
            return None
        return os.fdopen(fd, "wb"), Path(name)

    def _directory(self, directory: Path) -> None:
        """Make the directory, mode 0700 from the cache's root down (blobs of private images
        are the user's alone; the files themselves are 0600)."""
        assert self.root is not None
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        below = directory.relative_to(self.root)
        current = self.root
        for part in below.parts:
            current = current / part
            current.mkdir(mode=0o700, exist_ok=True)

    def commit(self, temporary: Path, digest: Digest) -> None:
        """Rename a verified temporary file to its digest (the caller checked it)."""
        path = self.path(digest)
        assert path is not None
        try:
            os.replace(temporary, path)
        except OSError:
            discard(temporary)

    def link(self, file: Path, digest: Digest) -> None:
        """Take ``file`` (its digest checked by the caller) as the blob by a hard link: no
        bytes copied. Nothing when the cache has it already or cannot link (another
        filesystem, no cache)."""
        path = self.path(digest)
        if path is None:
            return
        with contextlib.suppress(OSError):
            self._directory(path.parent)
            os.link(file, path)

    def store(self, digest: Digest, data: bytes, kind: str = "blobs") -> None:
        """Store bytes the caller has verified (or, for ``heads``, only sniffs)."""
        path = self.path(digest, kind)
        if path is None:
            return
        try:
            self._directory(path.parent)
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{digest.hex[:16]}.")
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as out:
                write_to(out, data)
            os.replace(name, path)
        except OSError:
            discard(Path(name))


def discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
