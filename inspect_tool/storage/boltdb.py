"""A read-only reader of bbolt files (libpod's ``bolt_state.db``), from bytes in memory.

bbolt keeps a B+tree of pages: two meta pages (the valid one with the higher transaction id
wins), branch pages pointing at children, leaf pages holding key/value pairs, and nested
buckets (a bucket header in a leaf value: its root page, or the bucket inline after the
header when the root is 0). Everything here is bounds-checked: the file is evidence and may
be damaged or hostile, so a bad page is a ``BoltError``, never a crash or a loop.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from inspect_tool.errors import InvalidImageError

MAGIC = 0xED0CDAED
_PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_META = struct.Struct("<IIII QQ QQQ Q")  # magic version page_size flags root seq freelist pgid txid
_BRANCH = struct.Struct("<IIQ")  # pos, ksize, pgid
_LEAF = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BUCKET = struct.Struct("<QQ")  # root, sequence
_BRANCH_PAGE, _LEAF_PAGE, _META_PAGE = 0x01, 0x02, 0x04
_BUCKET_LEAF = 0x01
MAX_DEPTH = 64


class BoltError(InvalidImageError):
    """A bbolt file that cannot be read."""


class Bucket:
    """One bucket: iterate ``items()``; ``value``/``bucket`` look a key up."""

    def __init__(self, db: BoltDB, root: int, inline: bytes | None, depth: int) -> None:
        self._db = db
        self._root = root
        self._inline = inline
        self._depth = depth

    def items(self) -> Iterator[tuple[bytes, bytes | Bucket]]:
        """(key, value) pairs in key order; a nested bucket comes as a Bucket."""
        if self._inline is not None:
            yield from self._leaf_items(self._inline, 0)
            return
        yield from self._walk(self._root, 0, set())

    def value(self, key: bytes) -> bytes | None:
        for k, v in self.items():
            if k == key:
                return v if isinstance(v, bytes) else None
        return None

    def bucket(self, key: bytes) -> Bucket | None:
        for k, v in self.items():
            if k == key:
                return v if isinstance(v, Bucket) else None
        return None

    def _walk(
        self, pgid: int, level: int, seen: set[int]
    ) -> Iterator[tuple[bytes, bytes | Bucket]]:
        if level > MAX_DEPTH or self._depth > MAX_DEPTH:
            raise BoltError("the B+tree is deeper than any real database", subject=self._db.name)
        if pgid in seen:
            raise BoltError(f"page {pgid} is reached twice: a loop", subject=self._db.name)
        seen.add(pgid)
        offset = self._db.page_offset(pgid)
        _, flags, count, _ = _PAGE_HEADER.unpack_from(self._db.data, offset)
        if flags & _BRANCH_PAGE:
            base = offset + _PAGE_HEADER.size
            for i in range(count):
                element = base + i * _BRANCH.size
                if element + _BRANCH.size > len(self._db.data):
                    raise BoltError("a branch element lies beyond the file", subject=self._db.name)
                _, _, child = _BRANCH.unpack_from(self._db.data, element)
                yield from self._walk(child, level + 1, seen)
        elif flags & _LEAF_PAGE:
            yield from self._leaf_items(self._db.data, offset)
        else:
            raise BoltError(f"page {pgid} is neither a branch nor a leaf", subject=self._db.name)

    def _leaf_items(self, data: bytes, offset: int) -> Iterator[tuple[bytes, bytes | Bucket]]:
        if offset + _PAGE_HEADER.size > len(data):
            raise BoltError("a page lies beyond the end of the file", subject=self._db.name)
        _, flags, count, _ = _PAGE_HEADER.unpack_from(data, offset)
        if not flags & _LEAF_PAGE:
            raise BoltError("an inline bucket is not a leaf page", subject=self._db.name)
        base = offset + _PAGE_HEADER.size
        for i in range(count):
            element = base + i * _LEAF.size
            if element + _LEAF.size > len(data):
                raise BoltError("a leaf element lies beyond its page", subject=self._db.name)
            eflags, pos, ksize, vsize = _LEAF.unpack_from(data, element)
            start = element + pos
            if start + ksize + vsize > len(data):
                raise BoltError("a key or value lies beyond the file", subject=self._db.name)
            key = bytes(data[start : start + ksize])
            value = bytes(data[start + ksize : start + ksize + vsize])
            if eflags & _BUCKET_LEAF:
                if len(value) < _BUCKET.size:
                    raise BoltError("a bucket header is truncated", subject=self._db.name)
                root, _ = _BUCKET.unpack_from(value, 0)
                inline = value[_BUCKET.size :] if root == 0 else None
                yield key, Bucket(self._db, root, inline, self._depth + 1)
            else:
                yield key, value


class BoltDB:
    """A bbolt database held in memory (libpod's is small: a few hundred KiB)."""

    def __init__(self, data: bytes, *, name: str) -> None:
        self.data = data
        self.name = name
        metas = [m for m in (self._meta(0), self._meta(1)) if m is not None]
        if not metas:
            raise BoltError("no valid bbolt meta page", subject=name)
        self.page_size, self._root, self.txid = max(metas, key=lambda m: m[2])

    def _meta(self, index: int) -> tuple[int, int, int] | None:
        # the first meta page sits at 0; the second at the page size the first one names
        offset = 0
        if index == 1:
            first = self._raw_meta(0)
            offset = first[2] if first is not None else 4096
        meta = self._raw_meta(offset)
        if meta is None:
            return None
        _, _, page_size, _, root, _, _, _, txid, _ = meta
        return page_size, root, txid

    def _raw_meta(self, offset: int) -> tuple[int, ...] | None:
        start = offset + _PAGE_HEADER.size
        if start + _META.size > len(self.data):
            return None
        _, flags, _, _ = _PAGE_HEADER.unpack_from(self.data, offset)
        fields = _META.unpack_from(self.data, start)
        if not flags & _META_PAGE or fields[0] != MAGIC or fields[1] != 2:
            return None
        if _fnv1a(self.data[start : start + _META.size - 8]) != fields[-1]:
            return None
        if fields[2] < 512 or fields[2] > 1 << 16:
            return None
        return tuple(fields)

    def page_offset(self, pgid: int) -> int:
        offset = pgid * self.page_size
        if pgid < 2 or offset + _PAGE_HEADER.size > len(self.data):
            raise BoltError(f"page {pgid} lies outside the file", subject=self.name)
        return offset

    def root(self) -> Bucket:
        return Bucket(self, self._root, None, 0)

    def find(self, *path: bytes) -> Bucket | None:
        """The bucket at ``path`` (bucket names from the root), or None."""
        bucket: Bucket | None = self.root()
        for name in path:
            if bucket is None:
                return None
            bucket = bucket.bucket(name)
        return bucket


def _fnv1a(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value ^= byte
        value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value
