"""A registry image as a Tree that looks like an OCI layout.

``index.json`` is made here, listing the one manifest the reference names; ``blobs/<alg>/<hex>``
are the manifests, indexes, configs and layers that manifests list, fetched only when a
command opens them (sizes come from their descriptors), verified as they stream and kept in
the blob cache once their digest checks. The layout reader, build, verify and the layer code
read it unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from inspect_tool.diskio import write_to
from inspect_tool.errors import BlobNotFoundError, DockscopeError, RegistryError
from inspect_tool.model.digest import Digest
from inspect_tool.model.image import CONTAINERD_NAME
from inspect_tool.model.jsondoc import parse_json
from inspect_tool.model.mediatypes import MediaType
from inspect_tool.registry.cache import BlobCache, discard
from inspect_tool.registry.client import MAX_MANIFEST, RegistryClient
from inspect_tool.registry.http import httpx
from inspect_tool.sources.tree import HEAD_SIZE, Entry, clean_path, read_limited

REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1024 * 1024
# Resumptions of one blob read that breaks off (each continues with a Range request).
MAX_RESUMES = 5


@dataclass(slots=True)
class _Known:
    """A blob the registry tree has learned of from a manifest: its digest and size, whether
    /manifests/ or /blobs/ serves it, and its read position."""

    digest: Digest
    size: int
    manifest: bool  # served by /manifests/ (an index's children) rather than /blobs/
    order: int
    layer: bool = False  # listed in a manifest's layers


class RegistryTree:
    """The Tree of one docker:// reference (see the module's docstring)."""

    compression = None
    parallel_reads = True
    forked_reads = False  # reads share the client's connections

    def __init__(
        self,
        client: RegistryClient,
        cache: BlobCache,
        *,
        label: str,
        manifest: bytes,
        media_type: str,
        digest: Digest,
        name: str | None,
        tag: str | None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.label = label
        self._lock = threading.Lock()
        self._known: dict[str, _Known] = {}
        self._manifests: dict[str, bytes] = {}
        self._heads: dict[Digest, bytes] = {}  # first bytes of layers, from Range requests
        descriptor: dict[str, object] = {
            "mediaType": media_type,
            "digest": str(digest),
            "size": len(manifest),
        }
        annotations = {}
        if name is not None:
            annotations[CONTAINERD_NAME] = name
        if tag is not None:
            annotations[REF_NAME] = tag
        if annotations:
            descriptor["annotations"] = annotations
        self._index = json.dumps(
            {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": [descriptor]}
        ).encode()
        self._remember(digest, len(manifest), manifest=True)
        self._loaded(digest, manifest)

    # -- what the tree holds --------------------------------------------------------------------
    def _remember(self, digest: Digest, size: int, *, manifest: bool, layer: bool = False) -> None:
        path = f"blobs/{digest.algorithm}/{digest.hex}"
        with self._lock:
            if path not in self._known:
                self._known[path] = _Known(digest, size, manifest, len(self._known) + 1, layer)

    def _loaded(self, digest: Digest, data: bytes) -> None:
        """A manifest or index was read: learn the blobs it lists."""
        path = f"blobs/{digest.algorithm}/{digest.hex}"
        with self._lock:
            if path in self._manifests:
                return
            self._manifests[path] = data
        try:
            document = parse_json(data, subject=self.label)
        except DockscopeError:
            return  # the layout reader reports it
        if not isinstance(document, dict):
            return
        children = document.get("manifests")
        if isinstance(children, list):
            for item in children:
                self._learn(item, manifest=True)
        self._learn(document.get("config"), manifest=False)
        layers = document.get("layers")
        if isinstance(layers, list):
            for item in layers:
                self._learn(item, manifest=False, layer=True)

    def _learn(self, item: object, *, manifest: bool, layer: bool = False) -> None:
        if not isinstance(item, dict):
            return
        size = item.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return
        try:
            digest = Digest.parse(item.get("digest"))
        except DockscopeError:
            return
        self._remember(digest, size, manifest=manifest, layer=layer)

    def _find(self, path: str) -> _Known | None:
        with self._lock:
            return self._known.get(clean_path(path))

    # -- the Tree protocol ----------------------------------------------------------------------
    def entry(self, path: str) -> Entry | None:
        name = clean_path(path)
        if name == "index.json":
            return Entry(name, name, len(self._index), 0)
        known = self._find(name)
        if known is None:
            return None
        return Entry(name, name, known.size, known.order)

    def names(self) -> list[str]:
        with self._lock:
            return ["index.json", *self._known]

    def open(self, path: str) -> BinaryIO:
        name = clean_path(path)
        if name == "index.json":
            return io.BytesIO(self._index)
        known = self._find(name)
        if known is None:
            raise BlobNotFoundError("file is missing", subject=f"{self.label}:{path}")
        if known.manifest:
            return io.BytesIO(self._manifest(known))
        cached = self.cache.open(known.digest)
        if cached is not None:
            return cached
        return BlobReader(self.client, self.cache, known.digest, known.size)  # type: ignore[return-value]

    def stream(self, path: str) -> BinaryIO:
        """A blob's bytes for a caller that hashes them itself and checks them against the
        digest (copy): from the cache when it has them, else from the registry with its size
        held to the descriptor's and breaks resumed, neither hashed here nor cached (the
        caller gives the file it verified to ``adopt``)."""
        known = self._find(clean_path(path))
        if known is None or known.manifest:
            return self.open(path)
        cached = self.cache.open(known.digest)
        if cached is not None:
            return cached
        return BlobReader(  # type: ignore[return-value]
            self.client, self.cache, known.digest, known.size, hashed=False
        )

    def cached(self, path: str) -> Path | None:
        """The blob cache's file of the blob at ``path``, when it has one (its digest checked
        when it was stored; a reader checks it again)."""
        known = self._find(clean_path(path))
        if known is None or known.manifest or self.cache.size(known.digest) is None:
            return None
        return self.cache.path(known.digest)

    def adopt(self, path: str, file: Path) -> None:
        """``file`` holds the blob at ``path``, its digest checked by the caller: the cache
        takes it as a hard link (nothing when it cannot: another filesystem, no cache)."""
        known = self._find(clean_path(path))
        if known is not None and not known.manifest:
            self.cache.link(file, known.digest)

    def head(self, path: str, size: int = HEAD_SIZE) -> bytes:
        name = clean_path(path)
        known = self._find(name)
        if known is None or known.manifest or name == "index.json":
            with self.open(path) as stream:
                return stream.read(size)
        cached = self.cache.open(known.digest)
        if cached is not None:
            with cached:
                return cached.read(size)
        head = self._cached_head(known)
        if head is None:
            self._fetch_heads(known)
            head = self._cached_head(known)
            assert head is not None
        return head[:size]

    def _cached_head(self, known: _Known) -> bytes | None:
        if known.size == 0:
            return b""
        with self._lock:
            head = self._heads.get(known.digest)
        if head is None:
            head = self.cache.read(known.digest, "heads")
        if head is not None and len(head) >= min(HEAD_SIZE, known.size):
            return head
        return None

    def _fetch_heads(self, wanted: _Known) -> None:
        """The first bytes of ``wanted`` and, at once, of every other layer known whose head is
        not at hand (inspect sniffs them all, one after the other): Range requests, 4 at a
        time, kept aside in ``heads/``. Only ``wanted``'s failure is raised."""
        with self._lock:
            others = [k for k in self._known.values() if k.layer and k is not wanted]
        missing = [
            k for k in others if self.cache.size(k.digest) is None and self._cached_head(k) is None
        ]
        if not missing:
            self._fetch_head(wanted)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=4) as pool:
            others_done = [pool.submit(self._fetch_head, k) for k in missing[:63]]
            self._fetch_head(wanted)
            for future in others_done:
                with contextlib.suppress(DockscopeError):  # asked for alone, it will say why
                    future.result()

    def _fetch_head(self, known: _Known) -> None:
        want = min(HEAD_SIZE, known.size)
        response = self.client.open_blob(known.digest, 0, want - 1)
        try:
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) >= want:
                    break
        except httpx.HTTPError as exc:
            raise self.client.error(
                f"blob {known.digest}: read failed ({type(exc).__name__})"
            ) from None
        finally:
            response.close()
        head = bytes(data[:want])
        if len(head) < want:
            raise self.client.error(f"blob {known.digest}: ends after {len(head)} bytes")
        with self._lock:
            self._heads[known.digest] = head
        self.cache.store(known.digest, head, "heads")

    def read(self, path: str, limit: int) -> bytes:
        return read_limited(self, path, limit)

    def close(self) -> None:
        self.client.close()

    # -- manifests ------------------------------------------------------------------------------
    def _manifest(self, known: _Known) -> bytes:
        path = f"blobs/{known.digest.algorithm}/{known.digest.hex}"
        with self._lock:
            data = self._manifests.get(path)
        if data is not None:
            return data
        data = self.cache.read(known.digest)
        if data is None or Digest.of_bytes(data, known.digest.algorithm) != known.digest:
            if known.size > MAX_MANIFEST:
                raise self.client.error(
                    f"manifest {known.digest} is {known.size} bytes, more than {MAX_MANIFEST}"
                )
            data, _, _ = self.client.get_manifest(str(known.digest))
            actual = Digest.of_bytes(data, known.digest.algorithm)
            if actual != known.digest:
                raise self.client.error(
                    f"manifest {known.digest}: the registry sent bytes whose digest is {actual}"
                )
            self.cache.store(known.digest, data)
        self._loaded(known.digest, data)
        return data


class BlobReader(io.RawIOBase):
    """A blob streamed from the registry: hashed and counted as it is read, resumed with a
    Range request when the connection breaks, written to a temporary file in the cache and
    renamed to its digest only when the whole blob has arrived and matches it. A mismatch,
    or a blob shorter or longer than its descriptor, raises RegistryError at the end.
    ``hashed=False``: counted and resumed only, neither hashed nor cached (the caller hashes)."""

    def __init__(
        self,
        client: RegistryClient,
        cache: BlobCache,
        digest: Digest,
        size: int,
        *,
        hashed: bool = True,
    ) -> None:
        self._client = client
        self._cache = cache
        self._digest = digest
        self._size = size
        self._hash = hashlib.new(digest.algorithm) if hashed else None
        self._offset = 0
        self._resumes = 0
        self._buffer = b""
        self._done = False
        temporary = cache.temporary(digest) if hashed else None
        self._out: BinaryIO | None = temporary[0] if temporary else None
        self._temporary: Path | None = temporary[1] if temporary else None
        self._response: httpx.Response | None = None
        self._chunks: object = None
        try:
            self._connect()
        except BaseException:
            self._discard()
            raise

    def _connect(self) -> None:
        response = self._client.open_blob(self._digest, self._offset)
        skip = 0
        if self._offset:
            if response.status_code == 200:
                skip = self._offset  # the server ignored the Range: skip what we have
            elif not response.headers.get("Content-Range", "").startswith(f"bytes {self._offset}-"):
                response.close()
                raise self._error("the registry resumed the blob at the wrong offset")
        self._response = response
        self._chunks = response.iter_bytes()  # as received: a break keeps what came
        while skip:
            chunk = self._next_raw()
            if chunk is None:
                raise self._error(f"ends after {self._offset - skip} of {self._size} bytes")
            if len(chunk) > skip:
                self._buffer = chunk[skip:]
                skip = 0
            else:
                skip -= len(chunk)

    def _next_raw(self) -> bytes | None:
        try:
            return next(self._chunks)  # type: ignore[call-overload,no-any-return]
        except StopIteration:
            return None

    def _error(self, message: str) -> RegistryError:
        return self._client.error(f"blob {self._digest}: {message}")

    def readable(self) -> bool:
        return True

    def _pull(self) -> bytes:
        """The next bytes of the blob, b'' at its verified end."""
        while not self._done:
            if self._buffer:  # left by a read, or by a resumption that skipped what it had
                buffered, self._buffer = self._buffer, b""
                return buffered
            chunk: bytes | None
            try:
                chunk = self._next_raw()
            except (httpx.TransportError, httpx.StreamError) as exc:
                chunk = None
                broken: Exception | None = exc
            else:
                broken = None
            if chunk:
                return chunk
            if self._offset < self._size:
                # ended or broke before the descriptor's size: resume from where it stopped
                if self._response is not None:
                    self._response.close()
                self._resumes += 1
                if self._resumes > MAX_RESUMES:
                    why = f" ({type(broken).__name__})" if broken else ""
                    raise self._error(
                        f"truncated: ends after {self._offset} of {self._size} bytes{why}"
                    )
                self._connect()
                continue
            if broken is not None:
                pass  # everything arrived; the connection's end does not matter
            self._finish()
        return b""

    def _finish(self) -> None:
        self._done = True
        if self._response is not None:
            self._response.close()
        if self._hash is None:
            return  # the caller hashes
        actual = Digest(self._digest.algorithm, self._hash.hexdigest())
        if actual != self._digest:
            self._discard()
            raise self._error(f"content does not match its digest (got {actual})")
        if self._out is not None and self._temporary is not None:
            try:
                self._out.close()
            except OSError:
                self._discard()
                return
            self._cache.commit(self._temporary, self._digest)
            self._out = self._temporary = None

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, fewer only at the end (as a buffered file reads): a caller
        that asks for more than the blob holds reaches its end, and so its verification."""
        if size is None or size < 0:
            size = self._size - self._offset + 1
        parts = list(self._pieces(size))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _pieces(self, size: int) -> Iterator[bytes]:
        """The received pieces making up the next ``size`` bytes (fewer at the end), each
        taken (counted, hashed, written) before it is given."""
        got = 0
        while got < size:
            chunk = self._pull()
            if not chunk:
                return
            want = size - got
            if len(chunk) > want:
                chunk, self._buffer = chunk[:want], chunk[want:]
            self._take(chunk)
            yield chunk
            got += len(chunk)

    def _take(self, chunk: bytes) -> None:
        if self._offset + len(chunk) > self._size:
            self._discard()
            raise self._error(f"longer than the {self._size} bytes its descriptor says")
        self._offset += len(chunk)
        if self._hash is not None:
            self._hash.update(chunk)
        if self._out is not None:
            try:
                write_to(self._out, chunk)
            except OSError:
                self._discard()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """``read`` into ``buffer``, the received pieces copied straight in: a caller that
        reuses one buffer (copy) allocates nothing per chunk."""
        view = memoryview(buffer).cast("B")
        got = 0
        for chunk in self._pieces(len(view)):
            view[got : got + len(chunk)] = chunk
            got += len(chunk)
        return got

    def _discard(self) -> None:
        if self._out is not None:
            with contextlib.suppress(OSError):
                self._out.close()
        if self._temporary is not None:
            discard(Path(self._temporary))
        self._out = self._temporary = None

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        self._discard()  # a blob not read to its verified end never reaches the cache
        super().close()
