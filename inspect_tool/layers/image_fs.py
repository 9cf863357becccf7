"""An image's layers as file systems: stream a layer's members, build the merged view."""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from inspect_tool.errors import BlobNotFoundError, DockscopeError, InvalidImageError
from inspect_tool.layers.decompress import CHUNK, LayerStream, Prefetcher
from inspect_tool.layers.forked import LAYER_WORKERS, iter_forked, usable_workers
from inspect_tool.layers.tarformat import TarFormatError
from inspect_tool.layers.tarreader import HeaderReader, TarMember, TarReader
from inspect_tool.layers.union import FileInfo, LayerChanges, PathTooLongError, UnionFS
from inspect_tool.model.image import Image, Layer
from inspect_tool.model.mediatypes import Compression
from inspect_tool.sources.source import Source


class DiffIdMismatchError(InvalidImageError):
    """A layer's uncompressed bytes do not hash to its recorded diff_id."""


class BlobChangedError(InvalidImageError):
    """A blob read a second time is not the blob its first read checked."""


class StoredBytes:
    """The stored bytes of members, taken from the uncompressed stream as it goes by, without
    parsing the tar again: for a second read, whose first noted where each member's bytes lie
    (``TarMember.data_offset``). Ask for the members in the order their bytes lie."""

    __slots__ = ("_chunk", "_position", "_read", "_subject")

    def __init__(self, prefetcher: Prefetcher, subject: str) -> None:
        self._read = prefetcher.chunk
        self._subject = subject
        self._position = 0  # of the chunk in the uncompressed stream
        self._chunk = memoryview(b"")

    def pieces(self, member: TarMember) -> Iterator[memoryview]:
        """``member``'s ``size`` bytes from ``data_offset`` on, in pieces (views of the
        stream's chunks, valid until the next piece); InvalidImageError if the stream ends
        before them."""
        first, size = member.data_offset, member.size
        written = 0
        while written < size:
            end = self._position + len(self._chunk)
            if first + written >= end:  # the bytes are further on
                self._position = end
                self._chunk = memoryview(self._read())
                if not self._chunk:
                    raise InvalidImageError(
                        f"the layer ended before the bytes of {member.name!r}",
                        subject=self._subject,
                    )
                continue
            lo = first + written - self._position
            piece = self._chunk[lo : lo + size - written]
            yield piece
            written += len(piece)


@dataclass(slots=True)
class OpenLayer:
    """A layer blob being read: the stream that hashes it, the tar reader over its decompressed
    bytes and the thread that reads ahead of them."""

    stream: LayerStream  # hashes the blob and the decompressed tar as they are read
    reader: TarReader
    prefetcher: Prefetcher

    def finish(self, layer: Layer, *, label: str) -> None:
        """Read to the end; raise when the stream was corrupt or its diff_id is wrong."""
        self.prefetcher.drain()
        self.stream.finish()
        subject = f"{label}: layer {layer.index}"
        if self.stream.error:
            raise InvalidImageError(self.stream.error, subject=subject)
        if layer.diff_id is not None and layer.diff_id.hex != self.stream.diff_id_hex:
            raise DiffIdMismatchError(
                f"diff_id mismatch: got sha256:{self.stream.diff_id_hex}, expected {layer.diff_id}",
                subject=subject,
            )

    def members(self) -> HeaderReader:
        """The members alone, none of their bytes read (never mixed with ``reader``): the
        stream's chunks are walked in place, the data skipped by offset."""
        return HeaderReader(self.prefetcher.chunk)

    def stored(self, layer: Layer, *, label: str) -> StoredBytes:
        """Members' stored bytes by ``data_offset`` (for a second read: never mixed with
        ``reader``), ended by ``finish_again``."""
        return StoredBytes(self.prefetcher, f"{label}: layer {layer.index}")

    def again(
        self, known: Mapping[int, TarMember], layer: Layer, *, label: str
    ) -> Iterator[TarMember]:
        """The members of a second read that the first saw, by header offset (``known``),
        each checked to be the same entry (name, size, type), their bytes then read from
        ``reader``; InvalidImageError when one changed or is missing. Ended by
        ``finish_again``."""
        subject = f"{label}: layer {layer.index}"
        left = len(known)
        if not left:
            return
        for member in self.reader:
            first = known.get(member.offset)
            if first is None:
                continue
            if (member.name, member.size, member.type) != (first.name, first.size, first.type):
                raise InvalidImageError(
                    f"{member.name!r} at byte {member.offset} changed between two reads",
                    subject=subject,
                )
            yield member
            left -= 1
            if not left:
                return
        raise InvalidImageError(
            f"{left} entries seen on the first read are missing on the second", subject=subject
        )

    def finish_again(self, layer: Layer, *, label: str, digest_hex: str) -> None:
        """End a second read of the blob whose first read gave ``digest_hex`` (and checked
        the diff_id): what is left is hashed, not decompressed, and the raw digest must be
        the first read's, which proves every byte decompressed now was checked then."""
        self.prefetcher.close()  # its thread no longer touches the stream
        self.stream.finish_raw()
        got = self.stream.digest_hex
        if got != digest_hex:
            raise BlobChangedError(
                f"the blob changed between two reads (its bytes hashed to {digest_hex}, "
                f"then to {got})",
                subject=f"{label}: layer {layer.index}",
            )


@contextmanager
def open_layer(
    source: Source,
    layer: Layer,
    *,
    progress: Callable[[int], None] | None = None,
    hash_diff: bool = True,
) -> Iterator[OpenLayer]:
    """A layer's tar members, streamed from its blob (decompressed as its bytes say).
    ``hash_diff=False``: a second read, ended by ``finish_again``, not ``finish``."""
    if layer.blob is None or source.tree.entry(layer.blob.path) is None:
        raise BlobNotFoundError(f"layer {layer.index} blob is missing", subject=f"{source.label}")
    with source.tree.open(layer.blob.path) as raw:
        stream = LayerStream(raw, progress=progress, hash_diff=hash_diff)
        prefetcher = Prefetcher(stream)
        subject = f"{source.label}: layer {layer.index}"
        try:
            yield OpenLayer(stream, TarReader(io.BufferedReader(prefetcher, CHUNK)), prefetcher)
        except TarFormatError as exc:
            # a broken stream says more than the tar error it causes
            if stream.error:
                raise InvalidImageError(stream.error, subject=subject) from exc
            if stream.compression is Compression.UNKNOWN:
                raise InvalidImageError(
                    "the blob is not a tar, gzip or zstd stream", subject=subject
                ) from exc
            raise exc.with_subject(subject) from None
        except PathTooLongError as exc:
            raise exc.with_subject(subject) from None
        finally:
            prefetcher.close()


@contextmanager
def naming_layer(source: Source, layer: Layer) -> Iterator[None]:
    """A ``PathTooLongError`` raised inside named with its layer, as ``open_layer`` names
    it: for a reader of the members ``read_layers`` gives."""
    try:
        yield
    except PathTooLongError as exc:
        raise exc.with_subject(f"{source.label}: layer {layer.index}") from None


class TooManyEntries(DockscopeError):
    """More members than a reader that holds them all has room for (``read_layers``'s
    ``limit``): not a fault of the image, a sign to read it another way."""


LayerRead = tuple[list[TarMember], str] | DockscopeError


def read_members(
    source: Source,
    layer: Layer,
    progress: Callable[[int], None] | None,
    limit: int | None = None,
) -> LayerRead:
    """Every member of ``layer`` and the blob's raw digest, its diff_id checked; or what
    made it unreadable (``TooManyEntries`` past ``limit`` members, the rest not read)."""
    try:
        with open_layer(source, layer, progress=progress) as opened:
            if limit is None:
                members = list(opened.members())
            else:
                members = list(itertools.islice(opened.members(), limit + 1))
                if len(members) > limit:
                    raise TooManyEntries(
                        f"more than {limit} entries", subject=f"{source.label}: layer {layer.index}"
                    )
            opened.finish(layer, label=source.label)
    except DockscopeError as exc:
        return exc
    return members, opened.stream.digest_hex


def read_layers(
    source: Source,
    layers: Sequence[Layer],
    progress: Callable[[int], None] | None,
    *,
    limit: int | None = None,
) -> Generator[tuple[Layer, list[TarMember], str], None, None]:
    """Each layer with its members and its blob's raw digest, in order, every layer read
    whole first (decompressed, hashed, diff_id checked, headers parsed): by forked workers
    while the caller works on the layers already given, where the source allows. Raises,
    when its turn comes, what made a layer unreadable (``TooManyEntries`` for a layer of
    more than ``limit`` members). Close it when it is left before its end
    (``contextlib.closing``): that stops the workers."""

    def read(layer: Layer, advance: Callable[[int], None] | None) -> LayerRead:
        return read_members(source, layer, advance, limit)

    workers = usable_workers(LAYER_WORKERS)
    results: Generator[LayerRead, None, None]
    if workers > 1 and len(layers) > 1 and source.tree.forked_reads:
        results = iter_forked(read, layers, workers=workers, progress=progress)
    else:
        results = (read(layer, progress) for layer in layers)
    with contextlib.closing(results):
        for layer, got in zip(layers, results, strict=True):
            if isinstance(got, DockscopeError):
                raise got
            members, digest = got
            yield layer, members, digest


def merged_view(
    source: Source,
    image: Image,
    *,
    upto: int | None = None,
    record: bool = False,
    on_remove: Callable[[FileInfo, int, str], None] | None = None,
    on_layer: Callable[[LayerChanges], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> UnionFS:
    """The filesystem as it stands after layer ``upto`` (default: the top), layers verified
    against their diff_ids as they stream past (one at a time: a layer's members are never
    all held at once, which keeps a layer of a million entries within bounds)."""
    last = len(image.layers) - 1 if upto is None else upto
    if not 0 <= last < len(image.layers):
        from inspect_tool.errors import UsageError

        raise UsageError(
            f"--layer {upto}: the image has layers 0 to {len(image.layers) - 1}",
            subject=source.label,
        )
    union = UnionFS(on_remove=on_remove)
    for layer in image.layers[: last + 1]:
        with open_layer(source, layer, progress=progress) as opened:
            changes = union.apply(layer.index, opened.members(), record=record)
            opened.finish(layer, label=source.label)
        if on_layer is not None:
            on_layer(changes)
    return union
