"""Verify every byte of a source against its digests; collect every finding, never fail fast.

Checks: each blob exists, has its declared size and digest (read to EOF); the config digest is
the image ID; each layer's diff_id (sha256 of the decompressed stream) matches rootfs.diff_ids
in count and order; chain IDs; manifest digests against the index; Docker 25's two views;
legacy <id>/json and repositories; declared against actual compression; duplicate paths and
tar structure inside each layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from inspect_tool.errors import BlobNotFoundError, DockscopeError
from inspect_tool.layers import zstdchunked
from inspect_tool.layers.estargz import TOC_DIGEST_ANNOTATION
from inspect_tool.layers.forked import run_forked, usable_workers
from inspect_tool.layers.hashing import BlobHash, hash_blob, hash_layer
from inspect_tool.layers.tarstream import TarScan
from inspect_tool.layers.union import MAX_PATH_BYTES
from inspect_tool.model.digest import Digest, chain_ids
from inspect_tool.model.finding import Finding
from inspect_tool.model.image import Blob, Image, Layer
from inspect_tool.model.mediatypes import Compression, declared_compression
from inspect_tool.sources.source import Candidate, Source


@dataclass(slots=True)
class VerifyReport:
    """The outcome of verifying one source: every check made, passed or failed, and the notes left
    by reading it."""

    source: str
    format: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    @property
    def failed(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]


class Progress(Protocol):
    """Receives the total bytes to hash, then each advance (serialised by verify)."""

    def start(self, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...


def verify(
    source: Source,
    candidates: Iterable[Candidate] | None = None,
    *,
    workers: int = 2,
    progress: Progress | None = None,
    known: Mapping[Digest, BlobHash] | None = None,
) -> VerifyReport:
    """Every check on the ``candidates`` (all of the source's by default). ``known``: hashes
    of bytes this process wrote to the source itself, by their digest, as a copy takes them
    on their way through: a layer whose digest and size they give is not read again."""
    chosen = list(source.candidates if candidates is None else candidates)
    report = VerifyReport(
        source.label, source.format.value, list(source.findings), list(source.notes)
    )
    images: list[Image] = []
    for candidate in chosen:
        try:
            images.append(candidate.image())
        except DockscopeError as exc:
            report.findings.append(
                Finding(
                    "blob-exists" if isinstance(exc, BlobNotFoundError) else "image-readable",
                    exc.subject or f"image {candidate.selector}",
                    "readable image",
                    exc.message,
                    False,
                )
            )
    jobs = _plan(source, images)
    results = _run(source, jobs, workers=workers, progress=progress, known=known or {})
    selected_digests = {str(c.manifest_digest) for c in chosen if c.manifest_digest}
    for blob in source.walked:
        if blob.role == "manifest" and blob.digest and str(blob.digest) not in selected_digests:
            continue  # a manifest of an image that was not selected
        _check_blob(
            report,
            blob,
            results.get(blob.path),
            check_digest=("manifest-digest" if blob.role == "manifest" else "blob-digest"),
        )
    for image in images:
        _check_image(report, image, results)
    return report


@dataclass(frozen=True, slots=True)
class _Job:
    """One blob to read to its end and hash (a layer's diff_id computed too), with its size and its
    place in the source's read order."""

    path: str
    layer: bool
    order: int
    size: int
    algorithm: str
    digest: Digest | None


def _plan(source: Source, images: list[Image]) -> list[_Job]:
    tree = source.tree
    jobs: dict[str, _Job] = {}

    def add(blob: Blob | None, layer: bool) -> None:
        if blob is None or blob.path in jobs:
            return
        entry = tree.entry(blob.path)
        if entry is None:
            return
        algorithm = blob.digest.algorithm if blob.digest else "sha256"
        jobs[blob.path] = _Job(blob.path, layer, entry.order, entry.size, algorithm, blob.digest)

    for blob in source.walked:
        add(blob, False)
    for image in images:
        add(image.manifest_blob, False)
        add(image.config_blob, False)
        for layer in image.layers:
            add(layer.blob, True)
    return sorted(jobs.values(), key=lambda j: j.order)


def _run(
    source: Source,
    jobs: list[_Job],
    *,
    workers: int,
    progress: Progress | None,
    known: Mapping[Digest, BlobHash],
) -> dict[str, BlobHash | DockscopeError]:
    tree = source.tree
    done: dict[str, BlobHash | DockscopeError] = {}
    for job in jobs:
        hashed = known.get(job.digest) if job.layer and job.digest is not None else None
        if hashed is not None and hashed.size == job.size:
            done[job.path] = hashed
    jobs = [job for job in jobs if job.path not in done]
    if progress is not None:
        progress.start(sum(j.size for j in jobs))
    lock = threading.Lock()
    advance: Callable[[int], None] | None = None
    if progress is not None:

        def advance(amount: int) -> None:
            with lock:
                progress.advance(amount)

    def work(job: _Job, advance: Callable[[int], None] | None) -> BlobHash | DockscopeError:
        try:
            with tree.open(job.path) as stream:
                if job.layer:
                    return hash_layer(stream, algorithm=job.algorithm, progress=advance)
                return hash_blob(stream, algorithm=job.algorithm, progress=advance)
        except DockscopeError as exc:
            return exc.with_subject(f"{tree.label}:{job.path}")

    workers = usable_workers(workers)
    if workers > 1 and tree.forked_reads and len(jobs) > 1:
        # Processes: a layer's tar scan holds the interpreter, so threads would take turns.
        outcomes = run_forked(work, jobs, [j.size for j in jobs], workers=workers, progress=advance)
        return done | {job.path: outcome for job, outcome in zip(jobs, outcomes, strict=True)}
    if workers > 1 and tree.parallel_reads and len(jobs) > 1:
        # Biggest first, so two cores share the work evenly.
        ordered = sorted(jobs, key=lambda j: -j.size)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(lambda job: work(job, advance), ordered))
        return done | {job.path: outcome for job, outcome in zip(ordered, outcomes, strict=True)}
    return done | {job.path: work(job, advance) for job in jobs}


def _subject(blob: Blob) -> str:
    return f"{blob.what} ({blob.path})" if blob.what else blob.path


def _check_blob(
    report: VerifyReport,
    blob: Blob,
    result: BlobHash | DockscopeError | None,
    *,
    check_digest: str,
    subject: str | None = None,
) -> BlobHash | None:
    """Existence, size and digest of one blob; returns its hash when it could be read."""
    subject = subject or _subject(blob)
    add = report.findings.append
    if result is None:
        add(Finding("blob-exists", subject, "present", "missing", False))
        return None
    if isinstance(result, DockscopeError):
        add(Finding("blob-exists", subject, "readable", result.message, False))
        return None
    add(Finding("blob-exists", subject, "present", "present", True))
    if blob.size is not None:
        add(
            Finding(
                "blob-size", subject, str(blob.size), str(result.size), blob.size == result.size
            )
        )
    if blob.digest is not None:
        actual = f"{blob.digest.algorithm}:{result.digest_hex}"
        add(Finding(check_digest, subject, str(blob.digest), actual, actual == str(blob.digest)))
    return result


def _check_image(
    report: VerifyReport, image: Image, results: dict[str, BlobHash | DockscopeError]
) -> None:
    """Every finding about one image, in order: manifest and config blobs, the diff_ids'
    count, each layer, the chain IDs."""
    name = image.display_name
    _check_manifest_and_config(report, image, results)
    declared = image.diff_ids
    report.findings.append(
        Finding(
            "diff-id-count",
            f"{name}: rootfs.diff_ids against layers",
            str(len(declared)),
            str(len(image.layers)),
            len(declared) == len(image.layers) and all(lyr.blob for lyr in image.layers),
        )
    )
    actual_diff_ids = [_check_layer(report, image, layer, results) for layer in image.layers]
    _check_chain_ids(report, name, declared, actual_diff_ids)


def _check_manifest_and_config(
    report: VerifyReport, image: Image, results: dict[str, BlobHash | DockscopeError]
) -> None:
    """The manifest's digest (when the source has one) and the config's: the image ID."""
    name = image.display_name
    if image.manifest_blob is not None:
        _check_blob(
            report,
            image.manifest_blob,
            results.get(image.manifest_blob.path),
            check_digest="manifest-digest",
            subject=f"manifest of {name} ({image.manifest_blob.path})",
        )
    config_blob = image.config_blob
    config_subject = f"config of {name} ({config_blob.path})"
    config_result = _check_blob(
        report,
        config_blob,
        results.get(config_blob.path),
        check_digest="image-id",
        subject=config_subject,
    )
    if config_result is not None and config_blob.digest is None:
        report.findings.append(
            Finding(
                "image-id",
                config_subject,
                "no digest claimed by the source",
                str(image.image_id),
                True,
            )
        )


def _check_layer(
    report: VerifyReport,
    image: Image,
    layer: Layer,
    results: dict[str, BlobHash | DockscopeError],
) -> Digest | None:
    """One layer's findings: its blob, compression, tar structure, estargz or zstd:chunked
    metadata, ambiguities, duplicate paths and diff_id. Returns the diff_id its bytes have
    (None: no blob, unreadable or undecodable)."""
    add = report.findings.append
    label = f"layer {layer.index} of {image.display_name}"
    if layer.blob is None:
        return None
    subject = f"{label} ({layer.blob.path})"
    result = _check_blob(
        report,
        layer.blob,
        results.get(layer.blob.path),
        check_digest="blob-digest",
        subject=subject,
    )
    if result is None:
        return None
    media_type = _media_type_finding(layer, subject, result)
    if media_type is not None:
        add(media_type)
    problems = _tar_problems(result)
    add(
        Finding(
            "layer-tar",
            subject,
            "a well-formed tar stream",
            "; ".join(problems) or "well-formed",
            not problems,
        )
    )
    _check_estargz(report, image, layer.index, subject, result)
    if result.scan is not None:
        report.findings += _scan_findings(subject, result.scan)
    got = Digest("sha256", result.diff_id_hex) if result.diff_id_hex else None
    if layer.diff_id is not None:
        actual = str(got) if got and not result.stream_error else "undecodable stream"
        add(
            Finding(
                "diff-id",
                f"{label} (uncompressed {layer.blob.path})",
                str(layer.diff_id),
                actual,
                actual == str(layer.diff_id),
            )
        )
    return got if not result.stream_error else None


def _media_type_finding(layer: Layer, subject: str, result: BlobHash) -> Finding | None:
    """The compression the layer's bytes show against the one its media type declares."""
    wanted = declared_compression(layer.media_type)
    if layer.media_type_implied:
        # legacy docker save declares no media type; docker load reads any of the three,
        # so the compression is a fact to show, not something to disagree with
        readable = result.compression is not Compression.UNKNOWN
        return Finding(
            "media-type",
            subject,
            "none declared (legacy docker save): a tar, gzip or zstd stream",
            result.compression.value if readable else "unrecognised bytes",
            readable,
        )
    if wanted is not None:
        return Finding(
            "media-type",
            subject,
            f"{wanted.value} ({layer.media_type})",
            result.compression.value,
            wanted is result.compression,
        )
    if result.compression is Compression.UNKNOWN:
        return Finding(
            "media-type", subject, "a tar, gzip or zstd stream", "unrecognised bytes", False
        )
    return None


def _tar_problems(result: BlobHash) -> list[str]:
    """What keeps a layer's stream from being a well-formed tar."""
    problems: list[str] = []
    if result.stream_error:
        problems.append(result.stream_error)
    if result.trailing_bytes:
        problems.append(
            f"{result.trailing_bytes} bytes after the end of the {result.compression.value} stream"
        )
    scan = result.scan
    if scan is not None:
        if scan.error:
            problems.append(scan.error)
        if scan.long_paths:
            problems.append(
                f"{scan.long_paths} entries with a path over {MAX_PATH_BYTES} bytes "
                "(PATH_MAX - 1: no engine extracts them)"
            )
        if scan.trailing_nonzero:
            problems.append(
                f"{scan.trailing_nonzero} non-zero bytes after the tar's end-of-archive marker"
            )
    return problems


def _scan_findings(subject: str, scan: TarScan) -> list[Finding]:
    """What the tar scan saw that engines may read differently: ambiguous headers and paths
    stored twice."""
    more = scan.ambiguous - len(scan.ambiguities)
    dups = sorted(set(scan.duplicates))
    return [
        Finding(
            "layer-tar-ambiguous",
            subject,
            "one reading for every image engine",
            "; ".join(scan.ambiguities) + (f" (+{more} more)" if more > 0 else "")
            if scan.ambiguities
            else "none",
            not scan.ambiguous,
        ),
        Finding(
            "duplicate-path",
            subject,
            "no path twice",
            ", ".join(dups[:5]) + (f" (+{len(dups) - 5} more)" if len(dups) > 5 else "")
            if dups
            else "none",
            not dups,
        ),
    ]


def _check_chain_ids(
    report: VerifyReport, name: str, declared: list[Digest], actual: list[Digest | None]
) -> None:
    """Each layer's chain ID computed from the declared diff_ids must equal the one computed
    from the bytes actually present (computable up to the first unknown layer)."""
    known: list[Digest] = []
    for digest in actual:
        if digest is None:
            break
        known.append(digest)
    actual_chain = chain_ids(known)
    for i, expected in enumerate(chain_ids(declared)):
        actual_value = str(actual_chain[i]) if i < len(actual_chain) else "not computable"
        report.findings.append(
            Finding(
                "chain-id",
                f"layer {i} of {name}",
                str(expected),
                actual_value,
                actual_value == str(expected),
            )
        )


def _check_estargz(
    report: VerifyReport, image: Image, index: int, subject: str, result: BlobHash
) -> None:
    """estargz: the TOC the footer names, against the descriptor's toc.digest annotation;
    zstd:chunked: the manifest the footer names, against the manifest-checksum annotation."""
    annotations: Mapping[str, str] = {}
    if image.manifest is not None and index < len(image.manifest.layers):
        annotations = image.manifest.layers[index].annotations
    chunked = zstdchunked.check(result.zstd_chunked, annotations)
    if chunked is not None:
        report.findings.append(Finding("zstd-chunked-manifest", subject, *chunked))
    annotation = annotations.get(TOC_DIGEST_ANNOTATION)
    found = result.estargz
    if found is None and annotation is None:
        return
    expected = (
        f"a TOC with digest {annotation}"
        if annotation is not None
        else "a TOC that lists the layer (no toc.digest annotation)"
    )
    if found is None:
        report.findings.append(
            Finding("estargz-toc", subject, expected, "no estargz footer in the blob", False)
        )
        return
    problems = list(found.problems)
    if annotation is not None and found.toc_digest is not None and found.toc_digest != annotation:
        problems.insert(0, f"the TOC's digest is {found.toc_digest}")
    where = "after the end-of-archive marker" if found.after_end else "as the tar's last entry"
    actual = (
        f"{found.toc_digest} ({found.entries} entries, {where})"
        if found.toc_digest is not None
        else "no TOC found"
    )
    report.findings.append(
        Finding(
            "estargz-toc",
            subject,
            expected,
            "; ".join([actual, *problems]) if problems else actual,
            not problems,
        )
    )
