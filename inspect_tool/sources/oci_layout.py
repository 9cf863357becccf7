"""OCI image layouts, as a directory or a tar (oci-archive): index.json, nested indexes,
Docker manifest lists, and manifests selected by ref name or platform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspect_tool.errors import BlobNotFoundError, DockscopeError, InvalidImageError
from inspect_tool.model.finding import Finding
from inspect_tool.model.image import CONTAINERD_NAME, Blob, Descriptor, Image, ImageFormat
from inspect_tool.model.jsondoc import expect_list, expect_object
from inspect_tool.model.mediatypes import INDEX_TYPES, MANIFEST_TYPES
from inspect_tool.sources.build import (
    LayerSpec,
    blob_path,
    build_image,
    looks_like_index,
    parse_manifest,
    read_json,
)
from inspect_tool.sources.source import Candidate, Source
from inspect_tool.sources.tree import Tree

MAX_INDEX_DEPTH = 8
# Descriptors read across index.json and every nested index. Each index digest is expanded
# once (an index graph is a DAG: listing the next index twice, eight deep, must not mean 2**8
# walks), and the walk stops at this bound, as it stops at the nesting bound.
MAX_DESCRIPTORS = 10_000


def read_oci_layout(path: Path, tree: Tree, fmt: ImageFormat) -> Source:
    source = Source(path, tree, fmt)
    check_layout_file(source)
    for descriptor, ref, trail in walk_index(source):
        add_candidate(source, descriptor, ref, trail)
    if not source.candidates:
        source.notes.append("index.json lists no image manifests")
    return source


def check_layout_file(source: Source) -> None:
    tree = source.tree
    if tree.entry("oci-layout") is None:
        source.findings.append(
            Finding(
                "oci-layout",
                f"{tree.label}:oci-layout",
                "present",
                "missing",
                False,
                "the OCI layout has no oci-layout file",
            )
        )
        return
    _, data = read_json(tree, "oci-layout")
    version = data.get("imageLayoutVersion") if isinstance(data, dict) else None
    source.findings.append(
        Finding(
            "oci-layout",
            f"{tree.label}:oci-layout",
            "1.0.0",
            str(version),
            version == "1.0.0",
            "imageLayoutVersion",
        )
    )


def walk_index(source: Source) -> list[tuple[Descriptor, str | None, tuple[str, ...]]]:
    """Every image manifest descriptor reachable from index.json, depth first, in order.

    Returns (descriptor, ref name, trail of indexes). Missing or broken nested indexes are
    recorded as problems and skipped, so one bad branch does not hide the others.
    """
    tree = source.tree
    _, data = read_json(tree, "index.json")
    found: list[tuple[Descriptor, str | None, tuple[str, ...]]] = []
    _walk(source, data, "index.json", ("index.json",), None, set(), found, _Visit())
    return found


class _Visit:
    """What the whole walk has seen: descriptors read, indexes expanded, images found."""

    def __init__(self) -> None:
        self.descriptors = 0
        self.expanded: set[tuple[str, str | None]] = set()
        self.images: set[tuple[str, str | None]] = set()
        self.walked: set[tuple[str, str]] = set()


def _walk(
    source: Source,
    data: Any,
    subject_path: str,
    trail: tuple[str, ...],
    inherited_ref: str | None,
    seen: set[str],
    found: list[tuple[Descriptor, str | None, tuple[str, ...]]],
    visit: _Visit,
) -> None:
    tree = source.tree
    subject = f"{tree.label}:{subject_path}"
    index = expect_object(data, subject=subject, what="index")
    if len(trail) > MAX_INDEX_DEPTH:
        raise InvalidImageError(f"indexes nested deeper than {MAX_INDEX_DEPTH}", subject=subject)
    entries = expect_list(index.get("manifests"), subject=subject, what="manifests")
    visit.descriptors += len(entries)
    if visit.descriptors > MAX_DESCRIPTORS:
        raise InvalidImageError(
            f"the indexes list more than {MAX_DESCRIPTORS} descriptors "
            f"(the bound of descriptors visited)",
            subject=subject,
        )

    def walked(blob: Blob) -> None:
        key = (blob.path, blob.role)
        if key not in visit.walked:
            visit.walked.add(key)
            source.walked.append(blob)

    for i, item in enumerate(entries):
        descriptor = Descriptor.from_json(item, subject=subject, what=f"manifests[{i}]")
        # A ref name belongs to the top-level descriptor in index.json; nested manifests inherit it.
        ref = inherited_ref or descriptor.ref_name
        path = blob_path(descriptor.digest)
        media_type = descriptor.media_type
        kind = "index" if media_type in INDEX_TYPES else "manifest"
        blob = Blob(
            path,
            kind,
            descriptor.digest,
            descriptor.size,
            media_type,
            f"{kind} {descriptor.digest.short} listed in {subject_path}",
        )
        if media_type in MANIFEST_TYPES:
            walked(blob)
            if (str(descriptor.digest), ref) not in visit.images:
                visit.images.add((str(descriptor.digest), ref))
                found.append((descriptor, ref, trail))
            continue
        if tree.entry(path) is None:
            walked(blob)
            continue  # verify reports the missing blob
        if str(descriptor.digest) in seen:
            source.findings.append(
                Finding(
                    "index-cycle",
                    subject,
                    None,
                    str(descriptor.digest),
                    False,
                    "an index refers back to itself",
                )
            )
            continue
        if (str(descriptor.digest), ref) in visit.expanded:
            continue  # reached again through another index: walked once (per ref name)
        visit.expanded.add((str(descriptor.digest), ref))
        try:
            _, child = read_json(tree, path)
        except DockscopeError as exc:
            source.findings.append(
                Finding("index-json", f"{tree.label}:{path}", None, None, False, exc.message)
            )
            continue
        if media_type in INDEX_TYPES or looks_like_index(child):
            walked(
                Blob(
                    path,
                    "index",
                    descriptor.digest,
                    descriptor.size,
                    media_type,
                    blob.what.replace("manifest ", "index "),
                )
            )
            _walk(
                source,
                child,
                path,
                (*trail, f"{descriptor.digest} (index)"),
                ref,
                seen | {str(descriptor.digest)},
                found,
                visit,
            )
        elif isinstance(child, dict) and "config" in child:
            # A manifest under a generic or unusual media type: go by its content.
            walked(blob)
            if (str(descriptor.digest), ref) not in visit.images:
                visit.images.add((str(descriptor.digest), ref))
                found.append((descriptor, ref, trail))
        else:
            source.notes.append(
                f"{subject_path}: skipped {media_type or 'untyped'} "
                f"{descriptor.digest.short} (not an image)"
            )


def add_candidate(
    source: Source,
    descriptor: Descriptor,
    ref: str | None,
    trail: tuple[str, ...],
    *,
    repo_tags: tuple[str, ...] | None = None,
    warnings: list[str] | None = None,
) -> Candidate:
    selector = str(len(source.candidates) + 1)
    if repo_tags is None:
        name = descriptor.annotations.get(CONTAINERD_NAME)
        repo_tags = (name,) if name else ()

    def load() -> Image:
        return load_oci_image(
            source,
            descriptor,
            selector=selector,
            repo_tags=repo_tags,
            ref_name=ref,
            trail=trail,
            warnings=warnings,
        )

    candidate = Candidate(
        selector,
        repo_tags,
        ref,
        descriptor.digest,
        descriptor.media_type,
        descriptor.platform,
        trail,
        load,
    )
    source.candidates.append(candidate)
    return candidate


def load_oci_image(
    source: Source,
    descriptor: Descriptor,
    *,
    selector: str,
    repo_tags: tuple[str, ...],
    ref_name: str | None,
    trail: tuple[str, ...],
    warnings: list[str] | None = None,
) -> Image:
    tree = source.tree
    path = blob_path(descriptor.digest)
    if tree.entry(path) is None:
        raise BlobNotFoundError(
            f"manifest blob {descriptor.digest} is missing", subject=f"{tree.label}:{path}"
        )
    raw, data = read_json(tree, path)
    manifest = parse_manifest(raw, data, subject=f"{tree.label}:{path}")
    manifest_blob = Blob(
        path,
        "manifest",
        descriptor.digest,
        descriptor.size,
        descriptor.media_type,
        f"manifest {descriptor.digest.short}",
    )
    config_blob = Blob(
        blob_path(manifest.config.digest),
        "config",
        manifest.config.digest,
        manifest.config.size,
        manifest.config.media_type,
        f"config of manifest {descriptor.digest.short}",
    )
    if tree.entry(config_blob.path) is None:
        raise BlobNotFoundError(
            f"config blob {manifest.config.digest} is missing",
            subject=f"{tree.label}:{config_blob.path}",
        )
    layers = [
        LayerSpec(
            Blob(
                blob_path(d.digest),
                "layer",
                d.digest,
                d.size,
                d.media_type,
                f"layer {i} of manifest {descriptor.digest.short}",
            ),
            d.digest,
            d.media_type,
        )
        for i, d in enumerate(manifest.layers)
    ]
    return build_image(
        tree,
        source=source.label,
        fmt=source.format,
        selector=selector,
        repo_tags=repo_tags,
        ref_name=ref_name,
        config_blob=config_blob,
        manifest=manifest,
        manifest_blob=manifest_blob,
        layers=layers,
        index_path=trail,
        warnings=warnings,
    )
