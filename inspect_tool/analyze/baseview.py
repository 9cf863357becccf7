"""A cache of merged base views, so that diffing images that share a large base reads only
the layers they do not share.

Two images with the same chain ID at layer N have byte-identical layers 0..N. The first diff
that reads such a base (verifying every diff_id as it streams) stores the merged view of it:
every entry's packed record and, for regular files, the sha256 of its content. Later diffs
over the same chain ID look up only the paths the other layers touch (with their parents and
subtrees), by binary search in that file, and never open the base layers again.

The file lives in ``$XDG_CACHE_HOME/dockscope/base-views/<chain ID hex>.v1`` (``~/.cache``
when unset; ``DOCKSCOPE_CACHE`` overrides, ``DOCKSCOPE_CACHE=off`` disables it), in a
directory only its owner can read. It is written under a temporary name and renamed into
place, and every read is checked: a damaged or foreign file is ignored (and replaced), never
trusted as evidence. Nothing is written next to the images.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from inspect_tool.layers.union import UnionFS
from inspect_tool.model.digest import Digest
from inspect_tool.sources.cachedir import cache_home

MAGIC = b"dockscope base view v2\n"  # v2: hard links carry their content's size and hash
_COUNT = struct.Struct("<Q")
_OFFSET = struct.Struct("<Q")
_LENGTHS = struct.Struct("<IHB")  # path, record, hash lengths


def cache_dir() -> Path | None:
    """``$DOCKSCOPE_CACHE``, else ``base-views/`` in the XDG cache (None: caching is off)."""
    return cache_home("base-views")


def _key(path: str) -> bytes:
    # "/" sorts before every other character: sorted keys are parents-first, depth-first order
    return path.encode("utf-8", "surrogateescape").replace(b"/", b"\x00")


def write(chain_id: Digest, union: UnionFS, hashes: dict[str, str]) -> Path | None:
    """Store the merged view of the base ending in ``chain_id``; None when caching is off or
    the cache directory cannot be written (diffs still work, just without the cache)."""
    directory = cache_dir()
    if directory is None:
        return None
    records = sorted((_key(path), path, meta) for path, meta in union.records())
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = directory / f"{chain_id.hex}.v1"
        temporary = directory / f".{chain_id.hex}.{secrets.token_hex(4)}.tmp"
        with open(temporary, "wb") as f:
            f.write(MAGIC)
            f.write(_COUNT.pack(len(records)))
            table_at = f.tell()
            f.write(bytes(_OFFSET.size * len(records)))
            offsets = []
            for key, path, meta in records:
                offsets.append(f.tell())
                digest = hashes.get(path)
                raw_hash = bytes.fromhex(digest.split(":", 1)[1]) if digest else b""
                f.write(_LENGTHS.pack(len(key), len(meta), len(raw_hash)))
                f.write(key)
                f.write(meta)
                f.write(raw_hash)
            f.seek(table_at)
            f.write(b"".join(_OFFSET.pack(o) for o in offsets))
        os.replace(temporary, target)
        return target
    except OSError:
        with contextlib.suppress(OSError, UnboundLocalError):
            temporary.unlink()
        return None


class BaseView:
    """A stored base view, searched in place (memory-mapped, nothing loaded up front)."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        data = self._map
        if data[: len(MAGIC)] != MAGIC:
            raise ValueError("not a dockscope base view")
        self._count = _COUNT.unpack_from(data, len(MAGIC))[0]
        self._table = len(MAGIC) + _COUNT.size
        if self._table + self._count * _OFFSET.size > len(data):
            raise ValueError("truncated base view")

    @classmethod
    def open(cls, chain_id: Digest) -> BaseView | None:
        directory = cache_dir()
        if directory is None:
            return None
        path = directory / f"{chain_id.hex}.v1"
        try:
            return cls(path)
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        self._map.close()

    def _record(self, index: int) -> tuple[bytes, bytes, bytes]:
        offset = _OFFSET.unpack_from(self._map, self._table + index * _OFFSET.size)[0]
        key_len, meta_len, hash_len = _LENGTHS.unpack_from(self._map, offset)
        start = offset + _LENGTHS.size
        key = self._map[start : start + key_len]
        meta = self._map[start + key_len : start + key_len + meta_len]
        raw = self._map[start + key_len + meta_len : start + key_len + meta_len + hash_len]
        return key, meta, raw

    def _lower_bound(self, key: bytes) -> int:
        low, high = 0, self._count
        while low < high:
            middle = (low + high) // 2
            if self._record(middle)[0] < key:
                low = middle + 1
            else:
                high = middle
        return low

    def get(self, path: str) -> tuple[bytes, str | None] | None:
        key = _key(path)
        index = self._lower_bound(key)
        if index < self._count:
            found, meta, raw = self._record(index)
            if found == key:
                return meta, ("sha256:" + raw.hex()) if raw else None
        return None

    def subtree(self, path: str) -> Iterator[tuple[str, bytes, str | None]]:
        """Every entry below ``path`` (not itself), parents first."""
        prefix = _key(path) + b"\x00"
        index = self._lower_bound(prefix)
        while index < self._count:
            key, meta, raw = self._record(index)
            if not key.startswith(prefix):
                return
            path_text = key.replace(b"\x00", b"/").decode("utf-8", "surrogateescape")
            yield path_text, meta, ("sha256:" + raw.hex()) if raw else None
            index += 1

    def partial(
        self, paths: Iterable[str], trees: Iterable[str] = ()
    ) -> tuple[UnionFS, dict[str, str]]:
        """A view holding ``paths`` and ``trees`` as the base had them, with their parents,
        and everything below each of ``trees``; and the content hashes of its files."""
        union = UnionFS()
        hashes: dict[str, str] = {}
        wanted: dict[str, tuple[bytes, str | None]] = {}
        below = set(trees)
        for path in [*paths, *below]:
            parts = [p for p in path.split("/") if p]
            if not parts:  # the root itself (an opaque marker at the top): everything
                for sub, meta, digest in self.subtree(""):
                    wanted.setdefault(sub, (meta, digest))
                continue
            for depth in range(1, len(parts) + 1):
                prefix = "/" + "/".join(parts[:depth])
                if prefix in wanted:
                    continue
                found = self.get(prefix)
                if found is None:
                    break
                wanted[prefix] = found
            full = "/" + "/".join(parts)
            if path in below and full in wanted:
                for sub, meta, digest in self.subtree(full):
                    wanted.setdefault(sub, (meta, digest))
        for path in sorted(wanted, key=_key):
            meta, digest = wanted[path]
            union.insert(path, meta)
            if digest:
                hashes[path] = digest
        return union, hashes
