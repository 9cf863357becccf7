"""Copy one image between transports, as ``skopeo copy`` does, keeping every digest it can.

- Every blob is streamed (1 MiB at a time) from the source's tree to the destination and
  checked against its digest as it goes: a blob that does not hash to what its manifest
  says stops the copy (exit 3) and nothing is left. zstd stays zstd, gzip stays gzip. The
  layers are copied several at a time when the source can be read so (a registry, a
  directory); each layer's bytes are decompressed on their way through, for its diff_id.
- The manifest's bytes are copied unchanged, so the manifest digest is the source's, to
  ``oci:``, ``oci-archive:`` and ``dir:`` alike (an OCI layout may hold a Docker v2s2
  manifest; skopeo converts it to OCI, which changes the digest). A legacy ``docker save``
  source has no manifest: one is written (OCI for ``oci:``/``oci-archive:``, Docker v2s2
  for ``dir:``, layer types from each blob's own compression), the config unchanged.
- ``docker-archive:`` is the ``docker save`` format skopeo writes: ``manifest.json``, the
  config as ``<hex>.json``, each layer decompressed as ``<diff_id hex>.tar``. It keeps no
  manifest, so the manifest digest is not kept, and a compressed layer's digest becomes its
  diff_id (the config, so the image ID, and the diff_ids are unchanged).
- Written under a temporary name beside the destination and renamed into place once
  verified: ``analyze/verify.py`` over the written copy, given the hashes taken as the layers
  went through (so they are not read again; docker-archive's decompressed layers and
  estargz layers are): every blob's size and digest, each diff_id against the config, the
  chain IDs, the manifest and config digests, media types against the bytes. The tar scan
  inside layers (structure, duplicate paths) is ``verify``'s alone. An error leaves nothing. An
  existing OCI layout is added to, as skopeo does (an entry with the same ref name is
  replaced): blobs go in under temporary names and ``index.json`` is replaced last, so the
  layout is complete at every moment. Any other existing destination is refused.
- From a registry, a blob goes straight to the destination (not through the blob cache); the
  cache then takes each verified blob as a hard link to the file written, when they are on
  one filesystem (``registry/cache.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from inspect_tool.analyze.verify import VerifyReport, verify
from inspect_tool.diskio import write_to
from inspect_tool.errors import DockscopeError, ExitCode, InvalidImageError, UsageError
from inspect_tool.layers.decompress import LayerStream
from inspect_tool.layers.forked import cpus
from inspect_tool.layers.hashing import BlobHash, hash_blob
from inspect_tool.layout.writer import (
    INDEX_FILE,
    LAYOUT_FILE,
    BlobWriter,
    LayoutWriter,
    create_layout,
)
from inspect_tool.model.digest import Digest
from inspect_tool.model.finding import Finding
from inspect_tool.model.image import REF_NAME, Blob, Descriptor, Image, Layer
from inspect_tool.model.jsondoc import parse_json
from inspect_tool.model.mediatypes import (
    Compression,
    MediaType,
    declared_compression,
    sniff_compression,
)
from inspect_tool.model.words import plural
from inspect_tool.sources import ImageSelection, open_candidates
from inspect_tool.sources.location import Location, Transport, parse_location
from inspect_tool.sources.selection import ALL_IMAGES
from inspect_tool.sources.source import Candidate, Source
from inspect_tool.transfer.diffids import WORKERS as WORKERS_FOR_DIFF_IDS
from inspect_tool.transfer.diffids import DiffIds

CHUNK = 1 << 20
# Layers copied at a time from a source that reads in parallel (skopeo fetches 6 at once):
# one per CPU this process may use, 2 to 4. The download threads share the GIL between 64 KiB
# socket reads; on 2 CPUs a third thread only added futex wake-ups (a 1 GiB pull from a local
# registry: 1.85-2.0 s and 0.6-0.7 s of system time with 2, 1.8-2.7 s and 0.9-2.5 s with 3).
WORKERS = max(2, min(4, cpus()))
# Layers smaller than this in all are decompressed in this process (a worker's start costs more).
IN_PROCESS_BELOW = 64 << 20
DIR_VERSION = b"Directory Transport Version: 1.1\n"
_TEMPORARY = ".tmp-"
_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
_OCI_LAYER_TYPES = {
    Compression.NONE: str(MediaType.OCI_LAYER),
    Compression.GZIP: str(MediaType.OCI_LAYER) + "+gzip",
    Compression.ZSTD: str(MediaType.OCI_LAYER) + "+zstd",
}
_DOCKER_LAYER_TYPES = {
    Compression.NONE: str(MediaType.DOCKER_LAYER),
    Compression.GZIP: str(MediaType.DOCKER_LAYER) + ".gzip",
    Compression.ZSTD: str(MediaType.DOCKER_LAYER) + ".zstd",
}


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...


class CopyVerifyError(DockscopeError):
    """The written copy did not verify (exit 1); ``result`` holds the report."""

    exit_code = ExitCode.PROBLEMS
    result: CopyResult | None = None


@dataclass(slots=True)
class CopiedLayer:
    """One layer of a copy: its digest in the source and in the destination, its diff_id, and how
    the destination stores it."""

    index: int
    digest: str  # in the destination
    source_digest: str | None  # in the source (None: the source did not say)
    diff_id: str | None
    size: int
    media_type: str
    decompressed: bool = False  # docker-archive: stored as the uncompressed tar


@dataclass(slots=True)
class CopyResult:
    """What a copy did: from where to where, the manifest and config digests kept or made, each
    layer, the bytes copied and the written copy's verify report."""

    source: str
    destination: str
    format: str  # the destination's transport
    manifest_digest: str | None  # in the destination (None: docker-archive keeps none)
    source_manifest_digest: str | None
    config_digest: str
    layers: list[CopiedLayer]
    bytes_copied: int
    report: VerifyReport | None = None
    notes: list[str] = field(default_factory=list)
    diff_ids_checked: bool = True  # the layers decompressed for their diff_ids (--verify)

    @property
    def manifest_preserved(self) -> bool:
        return (
            self.manifest_digest is not None and self.manifest_digest == self.source_manifest_digest
        )

    @property
    def ok(self) -> bool:
        return self.report is None or self.report.ok


def destination_location(dest: str | Path) -> Location:
    """DEST as written; a plain path means an OCI layout directory."""
    location = parse_location(dest)
    if location.is_path:
        return Location(location.text, Transport.OCI, path=location.path)
    return location


def copy_image(
    src: str | Path,
    dest: str | Path,
    selection: ImageSelection = ALL_IMAGES,
    *,
    access: object = None,
    progress: Progress | None = None,
    verify_progress: Progress | None = None,
    check_diff_ids: bool = False,
) -> CopyResult:
    """Copy the one image ``selection`` chooses at ``src`` to ``dest``; verify the copy:
    what the transport proves (every blob's digest, the manifest's and the config's), and,
    with ``check_diff_ids``, the layers decompressed for their diff_ids and chain IDs too
    (a docker-archive destination always: it stores the layers decompressed)."""
    target = destination_location(dest)
    source, chosen = open_candidates(src, selection)
    with source:
        if len(chosen) != 1:
            raise UsageError(
                f"holds {len(chosen)} images; choose one with --image, --ref or --platform "
                "(or in the location: oci:DIR:REF, docker-archive:FILE:NAME:TAG)",
                subject=source.label,
            )
        image = chosen[0].image()
        if target.transport is Transport.DOCKER:
            return _to_registry(source, image, target, access, progress)
        _check_paths(source, target)
        job = _Job(source, image, target, progress)
        job.check_diff_ids = check_diff_ids or target.transport is Transport.DOCKER_ARCHIVE
        writer = {
            Transport.OCI: job.to_oci,
            Transport.OCI_ARCHIVE: job.to_oci_archive,
            Transport.DOCKER_ARCHIVE: job.to_docker_archive,
            Transport.DIR: job.to_dir,
        }.get(target.transport)
        if writer is None:
            raise UsageError(
                f"dockscope cannot write to {target.transport}: (destinations: oci:, "
                "oci-archive:, docker-archive:, dir:, docker://)",
                subject=target.text,
            )
        if progress is not None:
            progress.start(job.total_bytes())
        job.verify_progress = verify_progress
        return writer()


def _to_registry(
    source: Source, image: Image, target: Location, access: object, progress: Progress | None
) -> CopyResult:
    """docker:// destinations: the registry package's push (blobs the registry has are not
    sent again; the manifest's exact bytes), then the pushed manifest read back by its digest
    (the registry checked every blob's digest as it was uploaded)."""
    from inspect_tool.registry.access import RegistryAccess
    from inspect_tool.registry.push import push_image, total_size
    from inspect_tool.sources import open_source

    reached = access if isinstance(access, RegistryAccess) else None
    if progress is not None:
        progress.start(total_size(source, image))
    pushed = push_image(
        source,
        image,
        target.text,
        reached,
        progress=progress.advance if progress is not None else None,
    )
    back = target.text.split("@", 1)[0]
    name, _, tag = back.rpartition(":")
    if "/" not in tag and name not in ("docker", "docker:/"):
        back = name  # the tag is dropped: the manifest is asked for by its digest
    with open_source(f"{back}@{pushed.manifest_digest}", reached) as check:
        read_back = [c.image() for c in check.candidates]
    layers = [
        CopiedLayer(
            index=layer.index,
            digest=str(layer.digest) if layer.digest else "",
            source_digest=str(layer.digest) if layer.digest else None,
            diff_id=str(layer.diff_id) if layer.diff_id else None,
            size=layer.size or 0,
            media_type=layer.media_type or "",
        )
        for image_back in read_back[:1]
        for layer in image_back.layers
    ]
    manifest_digest = str(pushed.manifest_digest)
    source_digest = str(image.manifest.digest) if image.manifest is not None else None
    sent = sum(blob.size for blob in pushed.blobs if blob.action == "uploaded")
    actions = {a: sum(1 for b in pushed.blobs if b.action == a) for a in ("exists", "mounted")}
    notes = [
        f"{plural(count, 'blob')} the registry already had ({action})"
        for action, count in actions.items()
        if count
    ]
    notes.append(
        "verified by the registry as each blob was uploaded (its digest), and the manifest "
        f"read back by its digest {manifest_digest}"
    )
    return CopyResult(
        source=source.label,
        destination=target.text,
        format=Transport.DOCKER.value,
        manifest_digest=manifest_digest,
        source_manifest_digest=source_digest,
        config_digest=str(image.config_blob.digest or Digest.of_bytes(image.config.raw)),
        layers=layers,
        bytes_copied=sent,
        notes=notes,
    )


def _check_paths(source: Source, target: Location) -> None:
    assert target.path is not None
    src = Path(os.path.realpath(source.path))
    dest = Path(os.path.realpath(target.path))
    if dest == src and target.transport is Transport.OCI and source.format == "oci-layout":
        return  # a new name in the same layout, as skopeo allows
    if dest == src or src in dest.parents:
        raise UsageError(
            f"the destination is inside the source ({source.path})", subject=target.text
        )
    if dest in src.parents:
        raise UsageError(
            f"the source is inside the destination ({source.path})", subject=target.text
        )


class _Job:
    """One copy: the source image and where it goes."""

    def __init__(
        self, source: Source, image: Image, target: Location, progress: Progress | None
    ) -> None:
        self.source = source
        self.image = image
        self.target = target
        self.progress = progress
        self.verify_progress: Progress | None = None
        self.copied = 0
        self.notes: list[str] = []
        self.decompressed_sizes: dict[int, int] = {}
        self.hashes: dict[Digest, BlobHash] = {}  # layers hashed as they were written
        self.check_diff_ids = False
        self._diff_ids: DiffIds | None = None
        self.written: dict[Digest, int] = {}  # blobs hashed as they were written: sizes
        self._lock = threading.Lock()
        self._stop = threading.Event()  # a parallel copy failed: the others stop
        missing = [layer.index for layer in image.layers if layer.blob is None]
        if missing:
            raise InvalidImageError(
                f"layer {missing[0]} has no blob in the source: nothing to copy",
                subject=source.label,
            )

    def total_bytes(self) -> int:
        total = self.image.config_blob.size or 0
        return total + sum(layer.size or 0 for layer in self.image.layers)

    # -- reading -------------------------------------------------------------------------------

    def _stream(self, blob: Blob) -> BinaryIO:
        return self.source.tree.open(blob.path)

    def _copy_blob(
        self, blob: Blob, writer: BlobWriter, media_type: str, *, layer: bool = False
    ) -> Descriptor:
        """One blob into ``writer``, refused unless it hashes to the digest claimed; a layer
        then decompressed beside the copy for its diff_id (``DiffIds``), when asked."""
        tree = self.source.tree
        # a tree that can hand out bytes it did not hash (the registry's) spares a hash
        stream_of = getattr(tree, "stream", tree.open)
        cached = getattr(tree, "cached", None)
        cached_file = cached(blob.path) if cached is not None else None
        try:
            if cached_file is not None and writer.link(cached_file, self._advance):
                # the blob cache's file, hard-linked and hashed again: no bytes written
                descriptor = writer.commit(media_type, expected=blob.digest)
            else:
                with stream_of(blob.path) as stream:
                    _Tee(stream, writer, self).run()
                    descriptor = writer.commit(media_type, expected=blob.digest)
        except DockscopeError as exc:
            raise exc.with_subject(f"{self.source.label}: {blob.what or blob.path}") from None
        with self._lock:
            self.written[descriptor.digest] = descriptor.size
        if layer and self._diff_ids is not None and writer.committed is not None:
            self._diff_ids.submit(descriptor.digest, writer.committed, descriptor.size)
        adopt = getattr(tree, "adopt", None)
        if adopt is not None and writer.committed is not None and cached_file is None:
            adopt(blob.path, writer.committed)
        return descriptor

    def _parallel(self, jobs: Sequence[Callable[[], Descriptor]]) -> list[Descriptor]:
        """Run ``jobs`` (blob copies), several at a time when the source reads in parallel;
        the first failure stops the others (their temporary files removed) and is raised."""
        if len(jobs) < 2 or not self.source.tree.parallel_reads:
            return [job() for job in jobs]
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="dockscope-copy") as pool:
            futures = [pool.submit(job) for job in jobs]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            finally:
                if not all(f.done() and f.exception() is None for f in futures):
                    self._stop.set()
        failed = [f.exception() for f in futures if f.exception() is not None]
        real = [e for e in failed if not isinstance(e, _Stopped)]
        if real or failed:
            raise (real or failed)[0]  # type: ignore[misc]
        return [f.result() for f in futures]

    def _advance(self, amount: int) -> None:
        with self._lock:
            self.copied += amount
            if self.progress is not None:
                self.progress.advance(amount)

    # -- what is copied ------------------------------------------------------------------------

    def _layer_type(self, index: int, oci: bool) -> str:
        layer = self.image.layers[index]
        if layer.media_type and not layer.media_type_implied:
            return layer.media_type
        table = _OCI_LAYER_TYPES if oci else _DOCKER_LAYER_TYPES
        return table.get(layer.compression, table[Compression.NONE])

    def _config_type(self, oci: bool) -> str:
        """The config's type in the manifest: the one it has, or (no manifest to keep) the
        one of the manifest made for it."""
        blob = self.image.config_blob
        if blob.media_type and self.image.manifest is not None:
            return blob.media_type
        return str(MediaType.OCI_CONFIG) if oci else _DOCKER_CONFIG

    def _blobs(self, write: Callable[[Blob, str, bool], Descriptor], *, oci: bool) -> _Written:
        """Layers (several at a time, biggest first), config, then the manifest (kept, or
        made for a legacy source)."""
        jobs: list[Callable[[], Descriptor]] = []
        for layer in self.image.layers:
            blob = layer.blob
            assert blob is not None
            media_type = self._layer_type(layer.index, oci)
            jobs.append(lambda blob=blob, media_type=media_type: write(blob, media_type, True))  # type: ignore[misc]
        order = sorted(range(len(jobs)), key=lambda i: -(self.image.layers[i].size or 0))
        if self.check_diff_ids:
            layer_bytes = sum(layer.size or 0 for layer in self.image.layers)
            with DiffIds(WORKERS_FOR_DIFF_IDS if layer_bytes >= IN_PROCESS_BELOW else 0) as ids:
                self._diff_ids = ids
                try:
                    done = self._parallel([jobs[i] for i in order])
                    self.hashes.update(ids.results())
                finally:
                    self._diff_ids = None
        else:
            done = self._parallel([jobs[i] for i in order])
        layers = [descriptor for _, descriptor in sorted(zip(order, done, strict=True))]
        config = write(self.image.config_blob, self._config_type(oci), False)
        manifest = self.image.manifest
        if manifest is not None:
            return _Written(layers, config, manifest.raw, manifest.media_type)
        raw, media_type = _make_manifest(config, layers, oci=oci)
        self.notes.append(
            "the source (a legacy docker save) has no manifest: one was written "
            f"({media_type}), the config unchanged"
        )
        return _Written(layers, config, raw, media_type)

    def _result(self, written: _Written | None, manifest_digest: str | None) -> CopyResult:
        image = self.image
        source_manifest = str(image.manifest.digest) if image.manifest is not None else None
        layers = []
        for layer in image.layers:
            if written is not None:
                descriptor = written.layers[layer.index]
                digest, size, media_type = (
                    str(descriptor.digest),
                    descriptor.size,
                    descriptor.media_type,
                )
            else:  # docker-archive: the uncompressed tar
                digest = str(layer.diff_id)
                size = self.decompressed_sizes.get(layer.index, layer.size or 0)
                media_type = str(MediaType.DOCKER_LAYER)
            layers.append(
                CopiedLayer(
                    layer.index,
                    digest,
                    str(layer.digest) if layer.digest else None,
                    str(layer.diff_id) if layer.diff_id else None,
                    size,
                    media_type,
                    decompressed=written is None and layer.compression is not Compression.NONE,
                )
            )
        return CopyResult(
            self.source.label,
            self.target.text,
            str(self.target.transport),
            manifest_digest,
            source_manifest,
            str(image.config_blob.digest or Digest.of_bytes(image.config.raw)),
            layers,
            self.copied,
            notes=self.notes,
        )

    # -- verification --------------------------------------------------------------------------

    def _verify(self, written: Location, result: CopyResult) -> CopyResult:
        """Verify the copy as written (before it is renamed into place, where it can be)."""
        selection = ImageSelection(image=written.image) if written.image else ALL_IMAGES
        source, chosen = open_candidates(written, selection)
        with source:
            if self.check_diff_ids:
                report = verify(source, chosen, progress=self.verify_progress, known=self.hashes)
            else:
                report = self._transport_report(source, chosen)
            result.report = report
            result.diff_ids_checked = self.check_diff_ids
            mine = chosen[0].image() if len(chosen) == 1 else None
        problems = [
            f"{f.check} {f.subject}: {f.actual}, not {f.expected}"
            if f.expected
            else f"{f.check} {f.subject}: {f.actual}"
            for f in report.failed
        ]
        if mine is not None:
            if str(mine.config_blob.digest) != result.config_digest:
                problems.append(f"config {mine.config_blob.digest} is not {result.config_digest}")
            copied = [str(layer.digest) for layer in mine.layers]
            if copied != [layer.digest for layer in result.layers]:
                problems.append("the copy's layer digests are not the ones written")
        else:
            problems.append(f"the copy holds {len(chosen)} images where one was written")
        if problems:
            error = CopyVerifyError(
                "the written copy does not verify: " + "; ".join(problems[:5]),
                subject=result.destination,
            )
            error.result = result
            raise error
        return result

    def _transport_report(self, source: Source, chosen: Sequence[Candidate]) -> VerifyReport:
        """What the transport proves, checked on the written copy (skopeo's and containerd's
        checks): every blob there at its descriptor's size, a layer's bytes as hashed on
        their way in (renamed to that digest: ``written``), the manifest's and the config's
        read again, the manifest's digest the source's, each layer's compression the one its
        media type declares, as many diff_ids as layers, and an uncompressed layer's digest
        against its diff_id (the same hash). No layer is decompressed: the other diff_ids, the
        chain IDs and the tar inside are ``--verify``'s and ``verify``'s."""
        report = VerifyReport(
            source.label, source.format.value, list(source.findings), list(source.notes)
        )
        add = report.findings.append
        tree = source.tree
        for candidate in chosen:
            try:
                image = candidate.image()
            except DockscopeError as exc:
                add(
                    Finding(
                        "image-readable", exc.subject or "image", "readable", exc.message, False
                    )
                )
                continue
            name = image.display_name
            blobs: list[tuple[Blob | None, str, str, bool]] = [
                (image.manifest_blob, "manifest-digest", f"manifest of {name}", False),
                (image.config_blob, "image-id", f"config of {name}", False),
            ]
            blobs += [
                (layer.blob, "blob-digest", f"layer {layer.index} of {name}", True)
                for layer in image.layers
            ]
            for blob, check, what, is_layer in blobs:
                if blob is None:
                    continue
                subject = f"{what} ({blob.path})"
                entry = tree.entry(blob.path)
                if entry is None:
                    add(Finding("blob-exists", subject, "present", "missing", False))
                    continue
                add(Finding("blob-exists", subject, "present", "present", True))
                if blob.size is not None:
                    ok = blob.size == entry.size
                    add(Finding("blob-size", subject, str(blob.size), str(entry.size), ok))
                if blob.digest is None:
                    continue
                if is_layer:
                    hashed = self.written.get(blob.digest) == entry.size
                    actual = str(blob.digest) if hashed else "not the bytes this copy wrote"
                else:
                    with tree.open(blob.path) as stream:
                        got = hash_blob(stream, algorithm=blob.digest.algorithm)
                    actual = f"{blob.digest.algorithm}:{got.digest_hex}"
                add(Finding(check, subject, str(blob.digest), actual, actual == str(blob.digest)))
            if image.manifest is not None and image.manifest_blob is not None:
                expected = self.image.manifest
                if expected is not None:
                    add(
                        Finding(
                            "manifest-digest",
                            f"manifest of {name}: the source's",
                            str(expected.digest),
                            str(image.manifest.digest),
                            expected.digest == image.manifest.digest,
                        )
                    )
            for layer in image.layers:
                if layer.blob is None:
                    continue
                subject = f"layer {layer.index} of {name} ({layer.blob.path})"
                found = _compression_finding(layer, subject, tree)
                if found is not None:
                    add(found)
                if (
                    layer.compression is Compression.NONE
                    and layer.diff_id is not None
                    and layer.blob.digest is not None
                ):
                    # an uncompressed layer's digest is its diff_id: checked for nothing
                    add(
                        Finding(
                            "diff-id",
                            subject,
                            str(layer.diff_id),
                            str(layer.blob.digest),
                            layer.diff_id == layer.blob.digest,
                        )
                    )
            add(
                Finding(
                    "diff-id-count",
                    f"{name}: rootfs.diff_ids against layers",
                    str(len(image.diff_ids)),
                    str(len(image.layers)),
                    len(image.diff_ids) == len(image.layers),
                )
            )
        report.notes.append(
            "the compressed layers were not decompressed: their diff_ids (rootfs.diff_ids), the "
            "chain IDs and the tar inside are not checked (pull/copy --verify, or verify DEST, "
            "do); an uncompressed layer's digest is its diff_id, and is checked"
        )
        return report

    # -- destinations --------------------------------------------------------------------------

    def to_oci(self) -> CopyResult:
        path = self.target.path
        assert path is not None
        ref = self.target.ref
        if path.is_dir() and not path.is_symlink() and any(path.iterdir()):
            return self._add_to_layout(path, ref)
        with create_layout(path) as layout:
            written = self._into_layout(layout)
            manifest = layout.add_bytes(written.manifest, written.media_type)
            layout.finish([_entry(manifest, ref)])
            result = self._result(written, str(manifest.digest))
            staged = Location(str(layout.root), Transport.OCI, path=layout.root, ref=ref)
            return self._verify(staged, result)

    def _into_layout(self, layout: LayoutWriter) -> _Written:
        def write(blob: Blob, media_type: str, layer: bool) -> Descriptor:
            algorithm = blob.digest.algorithm if blob.digest else "sha256"
            with layout.blob(algorithm) as out:
                return self._copy_blob(blob, out, media_type, layer=layer)

        return self._blobs(write, oci=True)

    def _add_to_layout(self, path: Path, ref: str | None) -> CopyResult:
        if not (path / INDEX_FILE).is_file() or not (path / LAYOUT_FILE).is_file():
            raise UsageError(
                "exists and is not an OCI layout (no index.json and oci-layout): dockscope "
                "adds only to a layout",
                subject=self.target.text,
            )
        raw = (path / INDEX_FILE).read_bytes()
        existing = parse_json(raw, subject=f"{path / INDEX_FILE}")
        if not isinstance(existing, dict) or not isinstance(existing.get("manifests"), list):
            raise InvalidImageError("index.json lists no manifests", subject=str(path))
        layout = LayoutWriter(path)
        written = self._into_layout(layout)
        manifest = layout.add_bytes(written.manifest, written.media_type)
        kept = [
            m
            for m in existing["manifests"]
            if ref is None
            or not isinstance(m, dict)
            or (m.get("annotations") or {}).get(REF_NAME) != ref
        ]
        replaced = len(existing["manifests"]) - len(kept)
        if replaced:
            self.notes.append(f"the layout's entry named {ref} now names this image")
        layout.finish([_entry(manifest, ref)], existing={**existing, "manifests": kept})
        result = self._result(written, str(manifest.digest))
        # the new entry, by its ref name or (unnamed) by its position
        position = None if ref is not None else str(len(kept) + 1)
        staged = Location(str(path), Transport.OCI, path=path, ref=ref, image=position)
        return self._verify(staged, result)

    def to_oci_archive(self) -> CopyResult:
        path = self.target.path
        assert path is not None
        _check_new_file(path, self.target.text)
        with _staging(path) as stage:
            layout_dir = stage / "layout"
            with create_layout(layout_dir) as layout:
                written = self._into_layout(layout)
                manifest = layout.add_bytes(written.manifest, written.media_type)
                layout.finish([_entry(manifest, self.target.ref)])
            archive = stage / "archive.tar"
            _tar_directory(layout_dir, archive)
            shutil.rmtree(layout_dir)
            result = self._result(written, str(manifest.digest))
            self._verify(
                Location(str(archive), Transport.OCI_ARCHIVE, path=archive, ref=self.target.ref),
                result,
            )
            os.replace(archive, path)
        return result

    def to_dir(self) -> CopyResult:
        path = self.target.path
        assert path is not None
        _check_new_dir(path, self.target.text)
        with _staging(path) as stage:
            root = stage / "dir"
            root.mkdir()
            (root / "version").write_bytes(DIR_VERSION)

            def write(blob: Blob, media_type: str, layer: bool) -> Descriptor:
                algorithm = blob.digest.algorithm if blob.digest else "sha256"
                with _DirBlob(root, algorithm) as out:
                    return self._copy_blob(blob, out, media_type, layer=layer)

            written = self._blobs(write, oci=False)
            (root / "manifest.json").write_bytes(written.manifest)
            result = self._result(written, str(Digest.of_bytes(written.manifest)))
            self._verify(Location(str(root), Transport.DIR, path=root), result)
            _rename_dir(root, path)
        return result

    def to_docker_archive(self) -> CopyResult:
        path = self.target.path
        assert path is not None
        _check_new_file(path, self.target.text)
        name = self.target.image
        if name is not None and name.isdigit():
            raise UsageError(
                "a docker-archive destination takes NAME:TAG, not @N", subject=self.target.text
            )
        self.notes.append(
            "docker-archive keeps no manifest (docker save format): compressed layers are "
            "stored decompressed as <diff_id>.tar, as skopeo writes them"
        )
        with _staging(path) as stage:
            archive = stage / "archive.tar"
            with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
                names = []
                for layer in self.image.layers:
                    names.append(self._docker_layer(tar, stage, layer.index))
                config = self.image.config.raw
                config_name = f"{Digest.of_bytes(config).hex}.json"
                _add_bytes(tar, config_name, config)
                manifest = [
                    {"Config": config_name, "RepoTags": [name] if name else [], "Layers": names}
                ]
                _add_bytes(
                    tar, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode()
                )
            result = self._result(None, None)
            self._verify(Location(str(archive), Transport.DOCKER_ARCHIVE, path=archive), result)
            os.replace(archive, path)
        return result

    def _docker_layer(self, tar: tarfile.TarFile, stage: Path, index: int) -> str:
        """The layer as its uncompressed tar, named by its diff_id; the diff_id checked."""
        layer = self.image.layers[index]
        assert layer.blob is not None
        if layer.diff_id is None:
            raise InvalidImageError(
                f"layer {index} has no diff_id in the config", subject=self.source.label
            )
        name = f"{layer.diff_id.hex}.tar"
        temporary = stage / f"layer-{index}"
        with open(temporary, "wb") as out, self._stream(layer.blob) as raw:
            stream = LayerStream(raw, progress=self._advance)
            while chunk := stream.read(CHUNK):
                write_to(out, chunk)
            stream.finish()
        subject = f"{self.source.label}: {layer.blob.what or layer.blob.path}"
        if stream.error is not None:
            raise InvalidImageError(stream.error, subject=subject)
        if layer.digest is not None and stream.digest_hex != layer.digest.hex:
            raise InvalidImageError(
                f"blob digest mismatch: got sha256:{stream.digest_hex}, expected {layer.digest}",
                subject=subject,
            )
        if stream.diff_id_hex != layer.diff_id.hex:
            raise InvalidImageError(
                f"diff_id mismatch: got sha256:{stream.diff_id_hex}, expected {layer.diff_id}",
                subject=subject,
            )
        self.decompressed_sizes[index] = stream.uncompressed_size
        info = _info(name, stream.uncompressed_size)
        with open(temporary, "rb") as data:
            tar.addfile(info, data)
        temporary.unlink()
        return name


def _compression_finding(layer: Layer, subject: str, tree: Any) -> Finding | None:
    """The compression a layer's first bytes show against the one its media type declares
    (``verify``'s media-type check, from the head of the blob alone)."""
    assert layer.blob is not None
    shown = sniff_compression(tree.head(layer.blob.path))
    wanted = declared_compression(layer.media_type)
    if layer.media_type_implied or wanted is None:
        readable = shown is not Compression.UNKNOWN
        return Finding(
            "media-type",
            subject,
            "a tar, gzip or zstd stream",
            shown.value if readable else "unrecognised bytes",
            readable,
        )
    return Finding(
        "media-type",
        subject,
        f"{wanted.value} ({layer.media_type})",
        shown.value,
        wanted is shown,
    )


class _Stopped(Exception):
    """Another blob of a parallel copy failed: this one stops (never reported)."""


class _Tee:
    """A blob's bytes as read: written to ``writer`` (which hashes them), counted, stopped
    when another blob of the copy failed. One buffer, reused: a fresh 1 MiB per read costs
    the kernel a page fault per page, and more than the hash and the write."""

    def __init__(self, stream: BinaryIO, writer: BlobWriter, job: _Job) -> None:
        self._stream = stream
        self._writer = writer
        self._job = job

    def run(self) -> None:
        """Every byte, to the end of the stream."""
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        readinto = getattr(self._stream, "readinto", None)
        while True:
            if self._job._stop.is_set():
                raise _Stopped()
            if readinto is not None:
                n = readinto(view)
                chunk: bytes | memoryview = view[:n]
            else:
                chunk = self._stream.read(CHUNK)
                n = len(chunk)
            if not n:
                return
            self._writer.write(chunk)
            self._job._advance(n)


@dataclass(slots=True)
class _Written:
    """What a copy wrote for one image: the layers' and config's descriptors and the manifest's
    bytes and media type."""

    layers: list[Descriptor]
    config: Descriptor
    manifest: bytes
    media_type: str


def _entry(manifest: Descriptor, ref: str | None) -> Descriptor:
    """The index entry skopeo writes: the manifest, and its ref name when one is given."""
    annotations = {REF_NAME: ref} if ref else {}
    return Descriptor(manifest.media_type, manifest.digest, manifest.size, annotations)


def _make_manifest(config: Descriptor, layers: list[Descriptor], *, oci: bool) -> tuple[bytes, str]:
    """A manifest for a source that has none, keys in containers/image's order (Docker's
    descriptors: mediaType, size, digest)."""
    if oci:
        document: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": str(MediaType.OCI_MANIFEST),
            "config": _descriptor(config, docker=False),
            "layers": [_descriptor(layer, docker=False) for layer in layers],
        }
    else:
        document = {
            "schemaVersion": 2,
            "mediaType": str(MediaType.DOCKER_MANIFEST),
            "config": _descriptor(config, docker=True),
            "layers": [_descriptor(layer, docker=True) for layer in layers],
        }
    return json.dumps(document, separators=(",", ":")).encode(), document["mediaType"]


def _descriptor(descriptor: Descriptor, *, docker: bool) -> Mapping[str, Any]:
    if docker:
        return {
            "mediaType": descriptor.media_type,
            "size": descriptor.size,
            "digest": str(descriptor.digest),
        }
    return {
        "mediaType": descriptor.media_type,
        "digest": str(descriptor.digest),
        "size": descriptor.size,
    }


class _DirBlob(BlobWriter):
    """A blob of a dir: directory: a file named by its hex digest (``algorithm-hex`` for
    another algorithm than sha256)."""

    def commit(self, media_type: str, *, expected: Digest | None = None) -> Descriptor:
        descriptor = super().commit(media_type, expected=expected)
        if descriptor.digest.algorithm != "sha256":
            own = self._directory / descriptor.digest.hex
            self.committed = self._directory / f"{descriptor.digest.algorithm}-{own.name}"
            os.replace(own, self.committed)
        return descriptor


def _check_new_file(path: Path, text: str) -> None:
    if os.path.lexists(path):
        raise UsageError("exists: dockscope does not replace an archive", subject=text)
    if not path.absolute().parent.is_dir():
        raise UsageError("the parent directory does not exist", subject=text)


def _check_new_dir(path: Path, text: str) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UsageError("exists and is not a directory", subject=text)
    if path.is_dir() and any(path.iterdir()):
        raise UsageError("exists and is not empty", subject=text)
    if not path.absolute().parent.is_dir():
        raise UsageError("the parent directory does not exist", subject=text)


@contextlib.contextmanager
def _staging(path: Path) -> Iterator[Path]:
    """A private directory beside ``path``, removed whatever happens. Where none can be made,
    the destination cannot be written: a usage error naming it (as the other commands')."""
    parent = path.absolute().parent
    stage = parent / f".{path.name}{_TEMPORARY}{secrets.token_hex(4)}"
    try:
        stage.mkdir(mode=0o700)
    except OSError as exc:
        raise UsageError(f"cannot write: {exc.strerror or exc}", subject=str(path)) from None
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _rename_dir(staged: Path, path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.rmdir()  # an empty directory given as the destination
    os.rename(staged, path)


def _info(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _tar_directory(root: Path, archive: Path) -> None:
    """An OCI layout directory as a tar (oci-archive): sorted, owners 0, mtimes 0."""
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory, subdirectories, files in os.walk(root):
            subdirectories.sort()
            rel = os.path.relpath(directory, root)
            if rel != ".":
                tar.addfile(_info(rel, 0, directory=True))
            for name in sorted(files):
                full = os.path.join(directory, name)
                st = os.lstat(full)
                if not stat.S_ISREG(st.st_mode):
                    continue
                member = name if rel == "." else f"{rel}/{name}"
                with open(full, "rb") as data:
                    tar.addfile(_info(member, st.st_size), data)
