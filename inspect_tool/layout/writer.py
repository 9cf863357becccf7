"""Writing an OCI image layout: ``blobs/<algorithm>/<hex>``, ``oci-layout`` and ``index.json``.

The one writer of layouts (``container commit``, ``storage save``). A blob is written to a
temporary file in its ``blobs/<algorithm>/`` directory, hashed and counted as the bytes go
through, and renamed to its digest once complete; bytes that do not hash to the digest
expected of them are refused and removed. JSON documents have one encoding (compact, keys in
the order given, ASCII), so the same document is always the same blob. ``finish`` writes
``oci-layout`` and then ``index.json`` (the mark of a complete layout) each under a temporary
name renamed into place.

``create_layout`` builds the whole layout in a temporary directory beside its destination and
renames it into place only once ``finish`` has run: an error, or an interruption, leaves no
layout and nothing half-written at the destination.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from inspect_tool.diskio import write_to
from inspect_tool.errors import InvalidImageError, UsageError
from inspect_tool.model.digest import Digest
from inspect_tool.model.image import CONTAINERD_NAME, REF_NAME, Descriptor, Platform
from inspect_tool.model.mediatypes import MediaType
from inspect_tool.model.reference import Reference

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = b'{"imageLayoutVersion": "1.0.0"}'
CHUNK = 1 << 20
_TEMPORARY = ".tmp-"


class BlobDigestError(InvalidImageError):
    """Bytes written as a blob do not hash to the digest expected of them (exit 3)."""


def encode_json(document: Mapping[str, Any]) -> bytes:
    """The encoding of every JSON blob the layout holds: compact, keys in the order given."""
    return json.dumps(document, separators=(",", ":")).encode()


def descriptor_json(descriptor: Descriptor) -> dict[str, Any]:
    """A descriptor as the OCI image spec writes it (mediaType, digest, size, then the
    optional platform, annotations and urls)."""
    document: dict[str, Any] = {
        "mediaType": descriptor.media_type,
        "digest": str(descriptor.digest),
        "size": descriptor.size,
    }
    if descriptor.platform is not None:
        document["platform"] = _platform_json(descriptor.platform)
    if descriptor.annotations:
        document["annotations"] = dict(descriptor.annotations)
    if descriptor.urls:
        document["urls"] = list(descriptor.urls)
    return document


def _platform_json(platform: Platform) -> dict[str, str]:
    document = {"architecture": platform.architecture, "os": platform.os}
    if platform.variant:
        document["variant"] = platform.variant
    if platform.os_version:
        document["os.version"] = platform.os_version
    return document


def index_entry(
    manifest: Descriptor, *, name: str | None = None, platform: Platform | None = None
) -> Descriptor:
    """``manifest`` as an entry of ``index.json``: with ``name`` (``NAME[:TAG]``, as given)
    in ``io.containerd.image.name`` and its tag in ``org.opencontainers.image.ref.name``."""
    annotations = dict(manifest.annotations)
    if name:
        annotations[CONTAINERD_NAME] = name
        annotations[REF_NAME] = Reference.split(name).tag
    return Descriptor(
        manifest.media_type,
        manifest.digest,
        manifest.size,
        annotations,
        platform if platform is not None else manifest.platform,
        manifest.urls,
    )


class BlobWriter:
    """One blob being written: a temporary file in ``blobs/<algorithm>/``, every byte hashed
    and counted on its way through. ``commit`` names it by its digest; leaving the ``with``
    block without committing removes it."""

    def __init__(self, directory: Path, algorithm: str = "sha256") -> None:
        self._directory = directory
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self.size = 0
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / f"{_TEMPORARY}{secrets.token_hex(8)}"
        self.committed: Path | None = None  # the blob's file once ``commit`` named it
        self._file: BinaryIO | None = open(  # noqa: SIM115 (closed by commit or discard)
            os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644),
            "wb",
        )

    def write(self, data: bytes | memoryview) -> int:
        if self._file is None:
            raise ValueError("the blob is closed")
        write_to(self._file, data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def link(self, source: Path, progress: Callable[[int], None] | None = None) -> bool:
        """Take the bytes of the file ``source`` as the blob by a hard link in place of the
        temporary file (no bytes copied), then hash them from the link as ``write`` would
        have. False, and nothing done, when no link can be made (another filesystem, a
        blob written to already)."""
        if self._file is None or self.size:
            return False
        linked = self._path.with_name(f"{self._path.name}.link")
        try:
            os.link(source, linked)
            os.chmod(linked, 0o644)
            os.replace(linked, self._path)  # the empty temporary file gives way
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(linked)
            return False
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        with open(self._path, "rb", buffering=0) as data:
            while n := data.readinto(view):
                self._hash.update(view[:n])
                self.size += n
                if progress is not None:
                    progress(n)
        return True

    @property
    def digest(self) -> Digest:
        """The digest of the bytes written so far."""
        return Digest(self._algorithm, self._hash.hexdigest())

    def verify(self, expected: Digest) -> None:
        """Raise ``BlobDigestError`` unless the bytes written so far hash to ``expected``."""
        if self.digest != expected:
            raise BlobDigestError(f"blob digest mismatch: got {self.digest}, expected {expected}")

    def commit(self, media_type: str, *, expected: Digest | None = None) -> Descriptor:
        """Close the blob and name it by its digest (a blob already there has the same
        bytes). With ``expected``, a blob of other bytes is refused and removed."""
        if self._file is None:
            raise ValueError("the blob is closed")
        try:
            if expected is not None:
                self.verify(expected)
            self._file.close()
            self._file = None
            digest = self.digest
            os.replace(self._path, self._directory / digest.hex)
            self.committed = self._directory / digest.hex
        except BaseException:
            self.discard()
            raise
        return Descriptor(media_type, digest, self.size)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.discard()


class LayoutWriter:
    """Blobs, then ``finish``, into the directory ``root`` (which exists)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.finished = False

    def blob(self, algorithm: str = "sha256") -> BlobWriter:
        """A blob to write into (``write``/``flush``), then ``commit``."""
        return BlobWriter(self.root / "blobs" / algorithm, algorithm)

    def add_blob(
        self,
        stream: BinaryIO,
        media_type: str,
        *,
        expected: Digest | None = None,
        algorithm: str | None = None,
    ) -> Descriptor:
        """Copy ``stream`` to its end as one blob (hashed with ``expected``'s algorithm, or
        ``algorithm``, or sha256); refused if ``expected`` is given and not matched."""
        chosen = algorithm or (expected.algorithm if expected is not None else "sha256")
        with self.blob(chosen) as blob:
            while chunk := stream.read(CHUNK):
                blob.write(chunk)
            return blob.commit(media_type, expected=expected)

    def add_bytes(self, data: bytes, media_type: str) -> Descriptor:
        with self.blob() as blob:
            blob.write(data)
            return blob.commit(media_type)

    def add_json(self, document: Mapping[str, Any], media_type: str) -> Descriptor:
        return self.add_bytes(encode_json(document), media_type)

    def finish(
        self, manifests: Sequence[Descriptor], *, existing: Mapping[str, Any] | None = None
    ) -> None:
        """Write ``oci-layout`` (unless the layout has one) and, last, ``index.json`` listing
        ``manifests`` (see ``index_entry`` for names). ``existing``: the index.json of a
        layout being added to, whose entries (as they are, unknown fields and all) and other
        members are kept, the new entries after them."""
        index: dict[str, Any] = {"schemaVersion": 2, "mediaType": str(MediaType.OCI_INDEX)}
        kept: list[Any] = []
        if existing is not None:
            index.update(existing)
            kept = list(existing.get("manifests") or [])
        index["manifests"] = [*kept, *(descriptor_json(m) for m in manifests)]
        if not (self.root / LAYOUT_FILE).is_file():
            self._replace(LAYOUT_FILE, LAYOUT_VERSION)
        self._replace(INDEX_FILE, encode_json(index))
        self.finished = True

    def _replace(self, name: str, data: bytes) -> None:
        temporary = self.root / f".{name}{_TEMPORARY}{secrets.token_hex(4)}"
        try:
            with open(temporary, "xb") as out:
                out.write(data)
            os.replace(temporary, self.root / name)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


@contextlib.contextmanager
def create_layout(output: Path, *, parents: bool = False) -> Iterator[LayoutWriter]:
    """A layout written beside ``output`` and renamed to it once finished. ``output`` must be
    missing or an empty directory; its parent must exist unless ``parents``. An error in the
    ``with`` block, or a block left without ``finish``, leaves nothing behind."""
    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise UsageError("exists and is not a directory", subject=str(output))
    if output.is_dir() and any(output.iterdir()):
        raise UsageError("exists and is not empty", subject=str(output))
    parent = output.absolute().parent
    if parents:
        parent.mkdir(parents=True, exist_ok=True)
    elif not parent.is_dir():
        raise UsageError("the parent directory does not exist", subject=str(output))
    temporary = parent / f".{output.name}{_TEMPORARY}{secrets.token_hex(4)}"
    try:
        temporary.mkdir(mode=0o755)
    except OSError as exc:  # the destination's directory takes no new entry
        raise UsageError(f"cannot write: {exc.strerror or exc}", subject=str(output)) from None
    try:
        writer = LayoutWriter(temporary)
        yield writer
        if writer.finished:
            with contextlib.suppress(FileNotFoundError):
                output.rmdir()  # an empty directory given as the destination
            os.rename(temporary, output)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
