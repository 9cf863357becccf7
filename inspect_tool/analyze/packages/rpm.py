"""rpm's database without rpm: the three formats rpm has written, each a store of header
blobs, and the header blob itself (rpm's ``headerImport`` layout), parsed with ``struct``.

- sqlite (``rpmdb.sqlite``, rpm ≥ 4.16: Fedora 33+, RHEL 9, CBL-Mariner): table ``Packages``
  (``hnum``, ``blob``), read from memory with ``sqlite3``'s ``deserialize``, after the
  committed transactions of its ``rpmdb.sqlite-wal`` (rpm writes in WAL mode) are applied;
- NDB (``Packages.db``, SUSE): a slot table (``Slot`` magic: package index, block offset)
  pointing at blobs (``BlbS`` magic, 16-byte blocks), little-endian;
- BerkeleyDB hash (``Packages``, rpm < 4.16: RHEL ≤ 8, CentOS, Amazon Linux 2): the hash
  pages' values, each an overflow chain holding one header.

A header blob: entry count and data length (big-endian 32-bit), 16-byte index entries
(tag, type, offset, count), then the data. Every count, offset and chain is checked against
the bytes at hand; anything out of bounds is a ``PackageDataError``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from inspect_tool.analyze.packages.model import Ecosystem, Package, PackageDataError, text

MAX_ENTRIES = 0xFFFF  # rpm's own hdrchkTags
MAX_DATA = 256 * 1024 * 1024  # rpm's hdrchkData
MAX_PACKAGES = 100_000
MAX_FILES = 1_000_000

NAME, VERSION, RELEASE, EPOCH = 1000, 1001, 1002, 1003
SIZE, LICENSE, ARCH, SOURCERPM = 1009, 1014, 1022, 1044
OLDFILENAMES, DIRINDEXES, BASENAMES, DIRNAMES = 1027, 1116, 1117, 1118
LONGSIZE = 5009
_WANTED = {
    NAME,
    VERSION,
    RELEASE,
    EPOCH,
    SIZE,
    LICENSE,
    ARCH,
    SOURCERPM,
    OLDFILENAMES,
    DIRINDEXES,
    BASENAMES,
    DIRNAMES,
    LONGSIZE,
}

_INT_TYPES = {2: ("B", 1), 3: (">H", 2), 4: (">I", 4), 5: (">Q", 8)}
STRING, BIN, STRING_ARRAY, I18NSTRING = 6, 7, 8, 9


def parse_header(blob: bytes, *, database: str, location: str) -> Package:
    """One package from its header blob."""
    if len(blob) < 8:
        raise PackageDataError("a header blob shorter than 8 bytes", subject=database)
    count, size = struct.unpack_from(">II", blob)
    if count > MAX_ENTRIES or size > MAX_DATA:
        raise PackageDataError(f"a header of {count} entries and {size} bytes", subject=database)
    start = 8 + 16 * count
    if start + size > len(blob):
        raise PackageDataError("a header blob shorter than its index says", subject=database)
    data = blob[start : start + size]
    values: dict[int, str | list[str] | list[int]] = {}
    for tag, kind, offset, n in struct.iter_unpack(">iIiI", blob[8:start]):
        if tag not in _WANTED:
            continue
        if offset < 0 or offset > size:
            raise PackageDataError(f"tag {tag}: offset {offset} outside the data", subject=database)
        values[tag] = _value(data, kind, offset, n, tag=tag, database=database)

    def one(tag: int) -> str:
        value = values.get(tag)
        if isinstance(value, list):
            return str(value[0]) if value else ""
        return value or ""

    name = one(NAME)
    if not name:
        raise PackageDataError("a header without a name", subject=database)
    version = one(VERSION)
    if one(RELEASE):
        version = f"{version}-{one(RELEASE)}"
    if one(EPOCH):
        version = f"{one(EPOCH)}:{version}"
    source = one(SOURCERPM).removesuffix(".src.rpm").removesuffix(".nosrc.rpm")
    if source.count("-") >= 2:
        source = source.rsplit("-", 2)[0]
    size_value = values.get(LONGSIZE) or values.get(SIZE)
    installed = size_value[0] if isinstance(size_value, list) and size_value else None
    return Package(
        Ecosystem.RPM,
        name,
        version,
        location,
        database,
        source=source,
        arch=one(ARCH),
        license=one(LICENSE),
        installed_size=installed if isinstance(installed, int) else None,
        files=_files(values, database),
    )


def _value(
    data: bytes, kind: int, offset: int, n: int, *, tag: int, database: str
) -> str | list[str] | list[int]:
    if kind in _INT_TYPES:
        fmt, width = _INT_TYPES[kind]
        if n > MAX_FILES or offset + width * n > len(data):
            raise PackageDataError(f"tag {tag}: {n} numbers past the data", subject=database)
        return [v[0] for v in struct.iter_unpack(fmt, data[offset : offset + width * n])]
    if kind in (STRING, STRING_ARRAY, I18NSTRING):
        if n > MAX_FILES:
            raise PackageDataError(f"tag {tag}: {n} strings", subject=database)
        strings: list[str] = []
        position = offset
        for _ in range(1 if kind == STRING else n):
            end = data.find(b"\0", position)
            if end < 0:
                raise PackageDataError(f"tag {tag}: a string without its end", subject=database)
            strings.append(text(data[position:end]))
            position = end + 1
        return strings[0] if kind == STRING else strings
    return []


def _files(values: dict[int, str | list[str] | list[int]], database: str) -> tuple[str, ...]:
    basenames, dirnames, indexes = (
        values.get(BASENAMES),
        values.get(DIRNAMES),
        values.get(DIRINDEXES),
    )
    if isinstance(basenames, list) and isinstance(dirnames, list) and isinstance(indexes, list):
        if len(basenames) != len(indexes):
            raise PackageDataError(
                "file names and directory indexes differ in number", subject=database
            )
        files = []
        for base, index in zip(basenames, indexes, strict=True):
            if not isinstance(index, int) or index >= len(dirnames):
                raise PackageDataError(f"directory index {index} out of range", subject=database)
            files.append(f"{dirnames[index]}{base}")
        return tuple(files)
    old = values.get(OLDFILENAMES)
    return tuple(str(f) for f in old) if isinstance(old, list) else ()


def _packages(blobs: Iterator[bytes], *, database: str, location: str) -> list[Package]:
    packages: list[Package] = []
    for blob in blobs:
        if len(packages) >= MAX_PACKAGES:
            raise PackageDataError(f"more than {MAX_PACKAGES} packages", subject=database)
        packages.append(parse_header(blob, database=database, location=location))
    return packages


# -- sqlite -------------------------------------------------------------------------------------
MAX_SQLITE_STEPS = 50_000_000  # VM instructions: a hostile schema cannot loop forever


def parse_sqlite(data: bytes, *, database: str, location: str, wal: bytes = b"") -> list[Package]:
    """The packages of an rpmdb.sqlite; ``wal``: its ``-wal`` file, whose committed
    transactions are applied first (what SQLite itself would read)."""
    import sqlite3

    if not data.startswith(b"SQLite format 3\0") or len(data) < 100:
        raise PackageDataError("not an SQLite database", subject=database)
    image = bytearray(apply_wal(data, wal, database=database) if wal else data)
    image[18:20] = b"\x01\x01"  # a WAL database read as a rollback-journal one: no -wal file
    connection = sqlite3.connect(":memory:")
    steps = 0

    def progress() -> int:
        nonlocal steps
        steps += 1000
        return 1 if steps > MAX_SQLITE_STEPS else 0

    try:
        connection.deserialize(bytes(image))
        connection.set_progress_handler(progress, 1000)
        kind = connection.execute(
            "SELECT type FROM sqlite_master WHERE name = 'Packages'"
        ).fetchone()
        if kind is None or kind[0] != "table":
            raise PackageDataError("no Packages table", subject=database)
        rows = connection.execute("SELECT blob FROM Packages ORDER BY hnum")
        blobs = (bytes(row[0]) for row in rows if isinstance(row[0], bytes | memoryview))
        return _packages(blobs, database=database, location=location)
    except sqlite3.Error as exc:
        raise PackageDataError(f"SQLite: {exc}", subject=database) from None
    finally:
        connection.close()


# the write-ahead log (sqlite.org/fileformat2.html#walformat): a 32-byte header, then frames
# of a 24-byte header and one page; a frame counts when its salts are the header's and the
# running checksum holds, and pages count up to the last commit frame (one whose second
# field, the database size in pages, is not 0)
_WAL_MAGIC = {0x377F0682: "<", 0x377F0683: ">"}  # the checksum's byte order
MAX_DATABASE_PAGES = 1 << 20


def _wal_checksum(data: bytes, order: str, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def apply_wal(data: bytes, wal: bytes, *, database: str) -> bytes:
    """``data`` with the committed frames of ``wal`` written over its pages."""
    if len(wal) < 32:
        return data
    magic, _version, page_size, _sequence, salt1, salt2, c1, c2 = struct.unpack_from(">8I", wal)
    order = _WAL_MAGIC.get(magic)
    if order is None or page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise PackageDataError("its -wal file is not a SQLite write-ahead log", subject=database)
    s0, s1 = _wal_checksum(wal[:24], order, 0, 0)
    if (s0, s1) != (c1, c2):
        return data  # a log SQLite would ignore (reset, not yet written)
    pages: dict[int, bytes] = {}
    committed: dict[int, bytes] = {}
    size = 0
    position = 32
    while position + 24 + page_size <= len(wal):
        number, commit, f1, f2, c1, c2 = struct.unpack_from(">6I", wal, position)
        page = wal[position + 24 : position + 24 + page_size]
        if (f1, f2) != (salt1, salt2) or number == 0 or number > MAX_DATABASE_PAGES:
            break
        s0, s1 = _wal_checksum(wal[position : position + 8] + page, order, s0, s1)
        if (s0, s1) != (c1, c2):
            break
        pages[number] = page
        if commit:
            if commit > MAX_DATABASE_PAGES:
                break
            committed.update(pages)
            pages.clear()
            size = commit
        position += 24 + page_size
    if not committed:
        return data
    image = bytearray(data[: size * page_size].ljust(size * page_size, b"\0"))
    for number, page in committed.items():
        if number <= size:
            image[(number - 1) * page_size : number * page_size] = page
    return bytes(image)


# -- NDB ----------------------------------------------------------------------------------------
_NDB_MAGIC = b"RpmP"
_SLOT_MAGIC = b"Slot"
_BLOB_MAGIC = b"BlbS"
_NDB_PAGE = 4096
_NDB_BLOCK = 16


def parse_ndb(data: bytes, *, database: str, location: str) -> list[Package]:
    if len(data) < 32 or data[:4] != _NDB_MAGIC:
        raise PackageDataError("not an rpm NDB Packages.db (no RpmP magic)", subject=database)
    version, _generation, slot_pages = struct.unpack_from("<III", data, 4)
    if version != 0:
        raise PackageDataError(f"NDB version {version}, not 0", subject=database)
    slots_end = slot_pages * _NDB_PAGE
    if slot_pages == 0 or slots_end > len(data):
        raise PackageDataError(f"{slot_pages} slot pages past the file's end", subject=database)

    def blobs() -> Iterator[bytes]:
        for position in range(32, slots_end, 16):
            magic = data[position : position + 4]
            index, block, blocks = struct.unpack_from("<III", data, position + 4)
            if magic != _SLOT_MAGIC:
                raise PackageDataError(f"slot at byte {position}: bad magic", subject=database)
            if index == 0:
                continue
            start = block * _NDB_BLOCK
            if start + 16 > len(data) or blocks * _NDB_BLOCK > len(data) - start:
                raise PackageDataError(
                    f"package {index}: blob past the file's end", subject=database
                )
            if data[start : start + 4] != _BLOB_MAGIC:
                raise PackageDataError(f"package {index}: bad blob magic", subject=database)
            blob_index, _checksum, length = struct.unpack_from("<III", data, start + 4)
            if blob_index != index or length > blocks * _NDB_BLOCK:
                raise PackageDataError(f"package {index}: blob header disagrees", subject=database)
            yield data[start + 16 : start + 16 + length]

    return _packages(blobs(), database=database, location=location)


# -- BerkeleyDB hash ----------------------------------------------------------------------------
_HASH_MAGIC = 0x061561
_P_HASH_UNSORTED, _P_OVERFLOW, _P_HASHMETA, _P_HASH = 2, 7, 8, 13
_H_KEYDATA, _H_OFFPAGE = 1, 3
_PAGE_HEADER = 26


def parse_bdb(data: bytes, *, database: str, location: str) -> list[Package]:
    if len(data) < 512:
        raise PackageDataError("not a BerkeleyDB hash database (too short)", subject=database)
    for order in ("<", ">"):
        if struct.unpack_from(order + "I", data, 12)[0] == _HASH_MAGIC:
            break
    else:
        raise PackageDataError("not a BerkeleyDB hash database (no hash magic)", subject=database)
    (page_size,) = struct.unpack_from(order + "I", data, 20)
    (last_page,) = struct.unpack_from(order + "I", data, 32)
    if (
        data[25] != _P_HASHMETA
        or page_size < 512
        or page_size > 65536
        or (page_size & (page_size - 1))
    ):
        raise PackageDataError(f"a hash metadata page of size {page_size}", subject=database)
    pages = min(last_page + 1, len(data) // page_size)

    def page(number: int) -> tuple[bytes, int, int, int]:
        """(page bytes, next page, entries, hf_offset)"""
        body = data[number * page_size : (number + 1) * page_size]
        _, _, following, entries, offset = struct.unpack_from(order + "IIIHH", body, 8)
        return body, following, entries, offset

    def overflow(first: int, length: int) -> bytes:
        chunks: list[bytes] = []
        got, number, seen = 0, first, set()
        while number != 0:
            if number in seen or number >= pages:
                raise PackageDataError(f"overflow chain through page {number}", subject=database)
            seen.add(number)
            body, following, _, used = page(number)
            if body[25] != _P_OVERFLOW or used > page_size - _PAGE_HEADER:
                raise PackageDataError(f"page {number} is not an overflow page", subject=database)
            chunks.append(body[_PAGE_HEADER : _PAGE_HEADER + used])
            got += used
            if got >= length:
                break
            number = following
        value = b"".join(chunks)
        if len(value) < length:
            raise PackageDataError("an overflow chain shorter than its item", subject=database)
        return value[:length]

    def blobs() -> Iterator[bytes]:
        for number in range(1, pages):
            body, _, entries, _ = page(number)
            if body[25] not in (_P_HASH, _P_HASH_UNSORTED):
                continue
            if _PAGE_HEADER + 2 * entries > page_size:
                raise PackageDataError(f"page {number}: {entries} entries", subject=database)
            offsets = struct.unpack_from(f"{order}{entries}H", body, _PAGE_HEADER)
            for item in range(1, entries, 2):  # keys at even, data at odd positions
                at = offsets[item]
                if at >= page_size:
                    raise PackageDataError(f"page {number}: item past the page", subject=database)
                if body[at] == _H_OFFPAGE:
                    if at + 12 > page_size:
                        raise PackageDataError(
                            f"page {number}: item past the page", subject=database
                        )
                    first, length = struct.unpack_from(order + "II", body, at + 4)
                    if length > MAX_DATA:
                        raise PackageDataError(f"an item of {length} bytes", subject=database)
                    yield overflow(first, length)
                # H_KEYDATA values on page are rpm's own 4-byte records (the next instance)

    return _packages(blobs(), database=database, location=location)
