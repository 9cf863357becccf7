"""Layers' diff_ids taken beside a copy, in worker processes, off the download path.

A copy writes each layer blob (hashing it for its digest as the bytes arrive) and hands the
file it committed to ``DiffIds.submit``: a worker process reads it back (from the page cache:
it was just written) and decompresses it for the sha256 of the tar inside, while the copy goes
on with the next layers. Decompression holds the process it runs in, so running it in other
processes lets both cores work, whatever the GIL does. ``results`` waits for every layer and
gives what ``verify(known=...)`` takes. A worker that cannot start (no process may be made
here) is replaced by doing the same work in the calling thread, at ``results``.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from types import TracebackType

from inspect_tool.layers.decompress import LayerStream
from inspect_tool.layers.hashing import BlobHash, stream_hash
from inspect_tool.model.digest import Digest

# Two cores: one worker decompresses while the copy downloads; at the end of the downloads
# the second takes the layers still waiting.
WORKERS = 2


def layer_hash(path: str, size: int, digest_hex: str, algorithm: str) -> BlobHash | None:
    """The layer at ``path`` (its digest ``digest_hex`` checked by the caller) decompressed to
    its end: diff_id, compression, a corrupt or truncated stream, trailing bytes. None for an
    estargz blob (its TOC takes ``verify``'s scan)."""
    with open(path, "rb") as raw:
        stream = LayerStream(raw, algorithm=algorithm, hash_raw=False)
        stream.finish()
    return stream_hash(stream, size=size, digest_hex=digest_hex)


class DiffIds:
    """Layers submitted as they are written; their hashes at ``results``."""

    def __init__(self, workers: int = WORKERS) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[Digest, Future[BlobHash | None]] = {}
        self._layers: dict[Digest, tuple[str, int]] = {}  # path and size
        self._waiting: list[Digest] = []  # no worker took them: done at ``results``

    def start(self) -> None:
        """Start the workers now (their start-up overlaps what the caller does next); none
        when ``workers`` is 0: every layer is then done in this process, at ``results``."""
        if self._workers <= 0:
            return
        try:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self._workers, mp_context=context)
            for _ in range(self._workers):
                self._pool.submit(int)  # the workers start while the caller goes on
        except (OSError, RuntimeError):
            self.close()

    def submit(self, digest: Digest, path: Path, size: int) -> None:
        if digest in self._layers:
            return
        self._layers[digest] = (str(path), size)
        if self._pool is not None:
            try:
                self._futures[digest] = self._pool.submit(
                    layer_hash, str(path), size, digest.hex, digest.algorithm
                )
                return
            except RuntimeError:  # the pool broke: the rest is done here
                pass
        self._waiting.append(digest)

    def results(self) -> dict[Digest, BlobHash]:
        """Every submitted layer's hashes (estargz layers left out: verify reads them)."""
        done: dict[Digest, BlobHash] = {}
        for digest, future in self._futures.items():
            try:
                hashed = future.result()
            except (OSError, RuntimeError):  # a worker died (BrokenProcessPool): here
                self._waiting.append(digest)
                continue
            if hashed is not None:
                done[digest] = hashed
        for digest in self._waiting:
            path, size = self._layers[digest]
            hashed = layer_hash(path, size, digest.hex, digest.algorithm)
            if hashed is not None:
                done[digest] = hashed
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> DiffIds:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
