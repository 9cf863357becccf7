"""The merged root filesystem as one tar stream (what ``crane export`` and ``docker export``
write), computed from the layers without extracting anything.

Pass 1 applies every layer to an in-memory tree (``unpack/memory.py``, which ``unpack``'s
two passes plan with too) with exactly the rules ``unpack`` uses
(``unpack.applier.LayerApplier``: whiteouts, symlinks resolved inside the root, hard links
resolved to the inode they name, the same refusals). The tree holds metadata only. Pass 2
writes the tar depth-first, as GNU tar and umoci do: each directory's entry, then everything
below it, names sorted, then its next sibling. GNU tar (``tar -xp``) sets a directory's
metadata once it meets a member outside that directory; an archive with every directory
first loses the directories' mtimes to the files written into them later. The headers are
laid out first, every size being known from pass 1; file contents are then streamed into
their places, layer by layer in the order each layer stores them, from a second read of
that layer: decompressed up to its last wanted file, and proved by its raw digest, which must
be the first read's (the first read checked the diff_id of what those bytes decompress to).
A stream that cannot seek (a pipe) gets the tar through a temporary file. Every name of a
hard-linked inode follows its first name as a hard link entry. The output depends on the
image alone: same image, same bytes.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from tarfile import BLOCKSIZE
from typing import BinaryIO, Protocol

from inspect_tool.errors import InvalidImageError
from inspect_tool.heap import no_cycle_collection
from inspect_tool.layers.decompress import CHUNK
from inspect_tool.layers.forked import LAYER_WORKERS, run_forked, usable_workers
from inspect_tool.layers.image_fs import open_layer
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember
from inspect_tool.layers.tarwrite import (
    ZERO_ROOM,
    PositionalWriter,
    Readable,
    TarHeader,
    TarStats,
    TarWriter,
)
from inspect_tool.layers.unpack.applier import LayerApplier
from inspect_tool.layers.unpack.audit import AuditEntry, ExtractStats
from inspect_tool.layers.unpack.memory import MemoryBackend, TreeDir, TreeNode, plan_layers, walk
from inspect_tool.model.image import Image, Layer
from inspect_tool.sources.source import Source

_IMPLICIT_DIR_MODE = 0o755
_TAR_TYPES = {
    EntryType.FILE: tarfile.REGTYPE,
    EntryType.SYMLINK: tarfile.SYMTYPE,
    EntryType.FIFO: tarfile.FIFOTYPE,
    EntryType.CHAR: tarfile.CHRTYPE,
    EntryType.BLOCK: tarfile.BLKTYPE,
}


@dataclass(slots=True)
class ExportResult:
    """What ``export`` did: where the tar went, how many layers it merged, the entries it wrote and
    the audit of what was refused or changed."""

    output: str  # a file name, or "-" for stdout
    layers: int
    stats: TarStats = field(default_factory=TarStats)  # entries in the tar
    audit: list[AuditEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.audit


@dataclass(slots=True)
class _Pending:
    """A file whose header is written but whose content is not yet: its place in the tar, filled
    from a second read of its layer."""

    node: TreeNode
    path: str  # the name its content is written under
    offset: int  # of the content in the tar


def _header(path: str, member: TarMember | None, *, directory: bool = False) -> TarHeader:
    """What the tar says of one entry of the tree: its member's metadata (an implied parent
    directory, which no layer lists: 0755, root's, mtime 0)."""
    if member is None:
        return TarHeader(path, tarfile.DIRTYPE, _IMPLICIT_DIR_MODE)
    kind = tarfile.DIRTYPE if directory else _TAR_TYPES[member.type]
    return TarHeader(
        path,
        kind,
        member.mode,
        uid=member.uid,
        gid=member.gid,
        mtime_ns=member.mtime_ns,
        size=member.size if kind == tarfile.REGTYPE else 0,
        linkname=member.linkname if kind == tarfile.SYMTYPE else "",
        devmajor=member.devmajor,
        devminor=member.devminor,
        uname=member.uname,
        gname=member.gname,
        xattrs=member.xattrs,
    )


def _seekable(out: BinaryIO) -> bool:
    """Whether the tar can be laid out in place: a seekable output not opened for appending
    (``>>``: every write, and every pwrite on Linux, lands at the end whatever the offset)."""
    try:
        if not out.seekable():
            return False
    except (OSError, ValueError):
        return False
    try:
        import fcntl

        return not fcntl.fcntl(out.fileno(), fcntl.F_GETFL) & os.O_APPEND
    except (OSError, ValueError, AttributeError):  # no descriptor (io.BytesIO): it seeks
        return True


def export(
    source: Source,
    image: Image,
    out: BinaryIO,
    *,
    output_name: str = "-",
    progress: Callable[[int], None] | None = None,
    on_pass: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write the image's merged filesystem to ``out`` as one tar stream.

    ``on_pass`` is called before each read of the layers with the bytes it will read.
    Raises InvalidImageError when a layer is unreadable or its diff_id is wrong (the tar
    written so far is then incomplete).
    """
    with no_cycle_collection():  # the tree has no cycles: collections would walk it for nothing
        return _export(source, image, out, output_name, progress, on_pass)


def _export(
    source: Source,
    image: Image,
    out: BinaryIO,
    output_name: str,
    progress: Callable[[int], None] | None,
    on_pass: Callable[[int], None] | None,
) -> ExportResult:
    result = ExportResult(output_name, len(image.layers))
    tree = MemoryBackend()
    applier = LayerApplier(tree, ExtractStats(), result.audit)
    if on_pass is not None:
        on_pass(sum(layer.size or 0 for layer in image.layers))
    digests = plan_layers(source, image.layers, applier, progress)
    applier.close()

    if _seekable(out):
        _write_tar(source, image, tree, digests, out, result, progress, on_pass)
        return result
    with tempfile.TemporaryFile(prefix="dockscope-export-") as spool:
        _write_tar(source, image, tree, digests, spool, result, progress, on_pass)
        spool.seek(0)
        shutil.copyfileobj(spool, out, CHUNK)
        out.flush()
    return result


def _write_tar(
    source: Source,
    image: Image,
    tree: MemoryBackend,
    digests: dict[int, str],
    out: BinaryIO,
    result: ExportResult,
    progress: Callable[[int], None] | None,
    on_pass: Callable[[int], None] | None,
) -> None:
    writer = TarWriter(out, error=InvalidImageError, seekable=True)
    pending: list[_Pending] = []  # content to fill in from a second read of the layers
    for path, node in walk(tree.root):
        if isinstance(node, TreeDir):
            writer.add(_header(path, node.member, directory=True))
            continue
        # every name of an inode holds the same node: the first written, the others link to it
        offset = writer.add(_header(path, node.member), inode=id(node))
        if offset is not None and node.member.size > 0:
            pending.append(_Pending(node, path, offset))
    start = writer.start
    result.stats = writer.close()  # every header and the end blocks: the contents go between

    by_layer: dict[int, dict[int, _Pending]] = {}
    for item in pending:
        by_layer.setdefault(item.node.layer, {})[item.node.member.offset] = item
    layers = [layer for layer in image.layers if layer.index in by_layer]
    if on_pass is not None:
        on_pass(sum(layer.size or 0 for layer in layers))
    fd = _descriptor(out)
    workers = usable_workers(LAYER_WORKERS)
    if fd is not None and workers > 1 and len(layers) > 1 and source.tree.forked_reads:
        # Each layer read again in a worker process, which writes its files' bytes into
        # their places with pwrite: the layers' second reads use both cores.
        places = PositionalWriter(fd, start, error=InvalidImageError)

        def fill(layer: Layer, advance: Callable[[int], None] | None) -> InvalidImageError | None:
            wanted = by_layer[layer.index]
            return _write_contents(source, layer, digests[layer.index], wanted, places, advance)

        sizes = [layer.size or 0 for layer in layers]
        failures = run_forked(fill, layers, sizes, workers=workers, progress=progress)
    else:
        filler: _Filler = (
            PositionalWriter(fd, start, error=InvalidImageError) if fd is not None else writer
        )
        failures = []
        for layer in layers:
            wanted = by_layer[layer.index]
            digest = digests[layer.index]
            failures.append(_write_contents(source, layer, digest, wanted, filler, progress))
            if failures[-1] is not None:
                break
    for failure in failures:
        if failure is not None:
            raise failure


def _descriptor(out: BinaryIO) -> int | None:
    """The output's file descriptor, flushed, when it has one (pwrite then works on it)."""
    try:
        fd = out.fileno()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
        return None
    out.flush()
    return fd


class _Filler(Protocol):
    """What fills a reserved place: ``TarWriter.fill``, or a ``PositionalWriter``'s."""

    def fill(self, offset: int, reader: Readable, size: int, *, subject: str = "") -> None: ...


def _write_contents(
    source: Source,
    layer: Layer,
    digest_hex: str,
    wanted: dict[int, _Pending],
    filler: _Filler,
    progress: Callable[[int], None] | None,
) -> InvalidImageError | None:
    """The bytes of ``wanted`` files, from a second read of ``layer``, each written at its
    place; the error that stopped it (the tar then lacks those bytes), or None. The blob
    must hash to ``digest_hex``, its first read's raw digest: the first read checked the
    diff_id of what these bytes decompress to, so this one decompresses only up to the
    last file it wants and hashes the rest."""
    subject = f"{source.label}: layer {layer.index}"
    if isinstance(filler, PositionalWriter) and all(
        item.node.member.data_offset >= 0 for item in wanted.values()
    ):
        return _copy_ranges(source, layer, digest_hex, wanted, filler, progress)
    known = {offset: item.node.member for offset, item in wanted.items()}
    try:
        with open_layer(source, layer, progress=progress, hash_diff=False) as opened:
            for member in opened.again(known, layer, label=source.label):
                item = wanted[member.offset]
                filler.fill(item.offset, opened.reader, member.size, subject=subject)
            opened.finish_again(layer, label=source.label, digest_hex=digest_hex)
    except InvalidImageError as exc:
        return exc
    return None


def _copy_ranges(
    source: Source,
    layer: Layer,
    digest_hex: str,
    wanted: dict[int, _Pending],
    places: PositionalWriter,
    progress: Callable[[int], None] | None,
) -> InvalidImageError | None:
    """``_write_contents`` without parsing the tar again: the first read noted where each
    file's bytes lie in the layer's tar (``TarMember.data_offset``), so the second copies
    those ranges of the uncompressed stream as it goes by. The blob's raw digest, the first
    read's again, proves the bytes are the ones the first read parsed."""
    items = sorted(wanted.values(), key=lambda item: item.node.member.data_offset)
    try:
        with open_layer(source, layer, progress=progress, hash_diff=False) as opened:
            stored = opened.stored(layer, label=source.label)
            for item in items:
                member = item.node.member
                size = member.size
                written = 0
                for piece in stored.pieces(member):
                    places.write_at(item.offset + written, piece)
                    written += len(piece)
                padded = size + (-size % BLOCKSIZE)
                if padded > ZERO_ROOM and padded > size:  # skipped by a seek: may not be zeros
                    places.write_at(item.offset + size, bytes(padded - size))
            opened.finish_again(layer, label=source.label, digest_hex=digest_hex)
    except InvalidImageError as exc:
        return exc
    return None
