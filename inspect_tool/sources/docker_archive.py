"""``docker save`` archives: the legacy layout (manifest.json, repositories, <id>/json,
<id>/layer.tar) and Docker 25+'s, which adds an OCI layout beside manifest.json. Also an
extracted docker-save directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from inspect_tool.errors import BlobNotFoundError, DockscopeError, UnsafePathError
from inspect_tool.model.digest import Digest
from inspect_tool.model.finding import Finding
from inspect_tool.model.image import Blob, Descriptor, Image, ImageFormat, Manifest
from inspect_tool.model.jsondoc import expect_list, expect_object
from inspect_tool.model.mediatypes import MediaType
from inspect_tool.sources.build import LayerSpec, build_image, parse_manifest, read_json
from inspect_tool.sources.oci_layout import check_layout_file, walk_index
from inspect_tool.sources.source import Candidate, Source
from inspect_tool.sources.tree import Tree, clean_path

_HEX64 = re.compile(r"[0-9a-f]{64}")
_BLOB_PATH = re.compile(r"blobs/(sha256|sha512)/([0-9a-f]+)")
# Small blobs are scanned for a manifest when index.json does not list one.
_MANIFEST_SCAN_LIMIT = 256 * 1024


def read_docker_archive(path: Path, tree: Tree, fmt: ImageFormat) -> Source:
    source = Source(path, tree, fmt)
    subject = f"{tree.label}:manifest.json"
    _, data = read_json(tree, "manifest.json")
    entries = [
        expect_object(e, subject=subject, what=f"manifest.json entry {i}")
        for i, e in enumerate(
            expect_list(data, subject=subject, what="manifest.json", allow_null=False)
        )
    ]
    oci = _OciView(source) if tree.entry("index.json") is not None else None
    repositories = _read_repositories(source)
    for i, entry in enumerate(entries):
        _add_entry(source, entry, i, oci, repositories)
    if oci is not None:
        oci.compare(source)
    return source


def _member_path(source: Source, value: Any, what: str) -> str:
    subject = f"{source.label}:manifest.json"
    if not isinstance(value, str) or not value:
        raise BlobNotFoundError(f"{what} is not a path string", subject=subject)
    try:
        return clean_path(value)
    except UnsafePathError:
        raise UnsafePathError(
            f"{what} {value!r} points outside the archive", subject=subject
        ) from None


def _claimed_digest(path: str) -> Digest | None:
    """The digest a file name claims: ``blobs/sha256/<hex>`` or ``<hex>.json``."""
    if match := _BLOB_PATH.fullmatch(path):
        try:
            return Digest.parse(f"{match.group(1)}:{match.group(2)}")
        except DockscopeError:
            return None
    name = path.rsplit("/", 1)[-1].removesuffix(".json")
    return Digest("sha256", name) if _HEX64.fullmatch(name) else None


def _add_entry(
    source: Source,
    entry: dict[str, Any],
    position: int,
    oci: _OciView | None,
    repositories: dict[str, str] | None,
) -> None:
    tree = source.tree
    what = f"manifest.json entry {position}"
    config_path = _member_path(source, entry.get("Config"), f"{what} Config")
    tags_raw = expect_list(
        entry.get("RepoTags"), subject=f"{tree.label}:manifest.json", what="RepoTags"
    )
    repo_tags = tuple(str(t) for t in tags_raw)
    layer_paths = [
        _member_path(source, p, f"{what} Layers[{i}]")
        for i, p in enumerate(
            expect_list(entry.get("Layers"), subject=f"{tree.label}:manifest.json", what="Layers")
        )
    ]
    raw_sources = entry.get("LayerSources")
    layer_sources: dict[str, Any] = raw_sources if isinstance(raw_sources, dict) else {}
    config_digest = _claimed_digest(config_path)
    selector = str(position + 1)
    name = repo_tags[0] if repo_tags else f"image {selector}"
    config_blob = Blob(
        config_path, "config", config_digest, None, MediaType.DOCKER_CONFIG, f"config of {name}"
    )
    specs: list[LayerSpec] = []
    for i, layer_path in enumerate(layer_paths):
        digest = _claimed_digest(layer_path) if layer_path.startswith("blobs/") else None
        # The legacy format declares no media type: docker load reads the bytes, and kaniko
        # (go-containerregistry's tarball.Write) stores gzip layers as <digest>.tar.gz. The
        # media type is implied from the bytes (build_image) unless LayerSources declares one.
        media_type: str | None = None
        declared_size: int | None = None
        if digest is not None and str(digest) in layer_sources:
            try:
                desc = Descriptor.from_json(
                    layer_sources[str(digest)],
                    subject=f"{tree.label}:manifest.json",
                    what="LayerSources entry",
                )
                media_type, declared_size = desc.media_type, desc.size
            except DockscopeError as exc:
                source.findings.append(
                    Finding(
                        "layer-sources",
                        f"{tree.label}:manifest.json",
                        None,
                        None,
                        False,
                        exc.message,
                    )
                )
        specs.append(
            LayerSpec(
                Blob(
                    layer_path, "layer", digest, declared_size, media_type, f"layer {i} of {name}"
                ),
                digest,
                media_type,
                implied=media_type is None,
            )
        )
    if oci is None:
        _check_legacy(source, layer_paths, repo_tags, repositories, name)

    manifest_desc: Descriptor | None = None
    if oci is not None and config_digest is not None:
        manifest_desc = oci.match(config_digest)

    def load() -> Image:
        if tree.entry(config_path) is None:
            raise BlobNotFoundError(
                f"Config {config_path} named in manifest.json is missing",
                subject=f"{tree.label}:{config_path}",
            )
        manifest: Manifest | None = None
        manifest_blob: Blob | None = None
        if manifest_desc is not None:
            manifest_blob = Blob(
                f"blobs/{manifest_desc.digest.algorithm}/{manifest_desc.digest.hex}",
                "manifest",
                manifest_desc.digest,
                manifest_desc.size,
                manifest_desc.media_type,
                f"manifest of {name}",
            )
            raw, data = read_json(tree, manifest_blob.path)
            manifest = parse_manifest(raw, data, subject=f"{tree.label}:{manifest_blob.path}")
        return build_image(
            tree,
            source=source.label,
            fmt=source.format,
            selector=selector,
            repo_tags=repo_tags,
            ref_name=manifest_desc.ref_name if manifest_desc else None,
            config_blob=config_blob,
            manifest=manifest,
            manifest_blob=manifest_blob,
            layers=specs,
        )

    source.candidates.append(
        Candidate(
            selector,
            repo_tags,
            manifest_desc.ref_name if manifest_desc else None,
            manifest_desc.digest if manifest_desc else None,
            manifest_desc.media_type if manifest_desc else None,
            manifest_desc.platform if manifest_desc else None,
            (),
            load,
        )
    )


def _read_repositories(source: Source) -> dict[str, str] | None:
    """``repositories``: repo → tag → the top layer's legacy id, flattened to "repo:tag" → id."""
    tree = source.tree
    if tree.entry("repositories") is None:
        return None
    subject = f"{tree.label}:repositories"
    try:
        _, data = read_json(tree, "repositories")
        repos = expect_object(data, subject=subject, what="repositories")
    except DockscopeError as exc:
        source.findings.append(
            Finding("legacy-repositories", subject, None, None, False, exc.message)
        )
        return {}
    flat: dict[str, str] = {}
    for repo, tags in repos.items():
        if not isinstance(tags, dict):
            source.findings.append(
                Finding(
                    "legacy-repositories",
                    f"{subject}: {repo}",
                    "an object of tags",
                    type(tags).__name__,
                    False,
                )
            )
            continue
        for tag, layer_id in tags.items():
            flat[f"{repo}:{tag}"] = str(layer_id)
    return flat


def _same_file(tree: Tree, a: str, b: str) -> bool:
    """Whether two paths lead (through links) to the same file."""
    try:
        first, second = tree.entry(a), tree.entry(b)
    except DockscopeError:
        return False
    return first is not None and second is not None and first.target == second.target


def _check_legacy(
    source: Source,
    layer_paths: list[str],
    repo_tags: tuple[str, ...],
    repositories: dict[str, str] | None,
    name: str,
) -> None:
    """Legacy metadata: ``<id>/json`` chains parent to child in layer order, each ``<id>/
    layer.tar`` is the layer manifest.json lists at that position, and ``repositories`` names
    the top layer's id for each tag.

    The ids come from the layer paths (docker: ``<id>/layer.tar``) or, where the layers are
    stored elsewhere (containers/image writes ``<diff_id>.tar`` plus ``<id>/layer.tar``
    symlinks), from following ``parent`` down from the id ``repositories`` gives.
    """
    tree = source.tree
    ids: list[str] | None = None
    if layer_paths and all(p.endswith("/layer.tar") for p in layer_paths):
        ids = [p.rsplit("/", 2)[-2] for p in layer_paths]
    tops = {tag: repositories[tag] for tag in repo_tags if repositories and tag in repositories}
    if ids is None and tops:
        ids = _walk_parents(source, next(iter(tops.values())), len(layer_paths))
    for tag, top in tops.items():
        expected = ids[-1] if ids else None
        source.findings.append(
            Finding(
                "legacy-repositories",
                f"{tree.label}:repositories: {tag}",
                expected or "the top layer's id",
                top,
                top == expected,
            )
        )
    if repositories is not None:
        for tag in repo_tags:
            if tag not in repositories and ":" in tag:
                source.findings.append(
                    Finding(
                        "legacy-repositories",
                        f"{tree.label}:repositories: {tag}",
                        "listed",
                        "missing",
                        False,
                        "a RepoTags entry has no repositories entry",
                    )
                )
    if not ids or not any(tree.entry(f"{i}/json") for i in ids):
        return
    previous: str | None = None
    for position, layer_id in enumerate(ids):
        json_path = f"{layer_id}/json"
        subject = f"{tree.label}:{json_path} (layer {position} of {name})"
        if tree.entry(json_path) is None:
            source.findings.append(Finding("legacy-json", subject, "present", "missing", False))
            previous = layer_id
            continue
        try:
            _, data = read_json(tree, json_path)
            obj = expect_object(data, subject=subject, what="legacy layer json")
        except DockscopeError as exc:
            source.findings.append(Finding("legacy-json", subject, None, None, False, exc.message))
            previous = layer_id
            continue
        own = obj.get("id")
        source.findings.append(
            Finding("legacy-json", f"{subject}: id", layer_id, str(own), own == layer_id)
        )
        parent = obj.get("parent")
        source.findings.append(
            Finding(
                "legacy-json", f"{subject}: parent", str(previous), str(parent), parent == previous
            )
        )
        if position < len(layer_paths) and tree.entry(f"{layer_id}/layer.tar") is not None:
            same = _same_file(tree, f"{layer_id}/layer.tar", layer_paths[position])
            source.findings.append(
                Finding(
                    "legacy-json",
                    f"{subject}: layer.tar",
                    layer_paths[position],
                    f"{layer_id}/layer.tar",
                    same,
                    "" if same else "the legacy layer is not the one manifest.json lists here",
                )
            )
        previous = layer_id


def _walk_parents(source: Source, top: str, limit: int) -> list[str] | None:
    """Ids from ``top`` down through ``parent``, returned bottom first."""
    chain: list[str] = []
    current: str | None = top
    while current and len(chain) <= limit:
        if not _HEX64.fullmatch(current):
            return None  # never used to build a path unless it is a plain hex id
        chain.append(current)
        try:
            _, data = read_json(source.tree, f"{current}/json")
        except DockscopeError:
            return None
        parent = data.get("parent") if isinstance(data, dict) else None
        current = parent if isinstance(parent, str) else None
    return list(reversed(chain))


class _OciView:
    """Docker 25+ archives also hold an OCI layout: index.json and manifests in blobs/."""

    def __init__(self, source: Source) -> None:
        self.source = source
        check_layout_file(source)
        self.listed = walk_index(source)
        self.manifests: dict[str, tuple[Descriptor, Manifest]] = {}
        for descriptor, _ref, _trail in self.listed:
            manifest = self._load(descriptor)
            if manifest is not None:
                self.manifests[str(manifest.config.digest)] = (descriptor, manifest)
        self.matched: set[str] = set()

    def _load(self, descriptor: Descriptor) -> Manifest | None:
        tree = self.source.tree
        path = f"blobs/{descriptor.digest.algorithm}/{descriptor.digest.hex}"
        if tree.entry(path) is None:
            return None  # verify reports the missing blob
        try:
            raw, data = read_json(tree, path)
            return parse_manifest(raw, data, subject=f"{tree.label}:{path}")
        except DockscopeError:
            return None

    def match(self, config_digest: Digest) -> Descriptor | None:
        key = str(config_digest)
        if key in self.manifests:
            self.matched.add(key)
            return self.manifests[key][0]
        found = self._scan_blobs(config_digest)
        if found is not None:
            self.source.notes.append(
                f"index.json lists no manifest for config {config_digest.short}; "
                f"manifest {found.digest.short} was found among the blobs"
            )
        return found

    def _scan_blobs(self, config_digest: Digest) -> Descriptor | None:
        """Find an unlisted manifest blob whose config is ``config_digest``."""
        tree = self.source.tree
        for name in tree.names():
            if not name.startswith("blobs/"):
                continue
            entry = tree.entry(name)
            if entry is None or entry.size > _MANIFEST_SCAN_LIMIT:
                continue
            if not tree.head(name, 1).startswith(b"{"):
                continue
            digest = _claimed_digest(name)
            if digest is None:
                continue
            try:
                raw, data = read_json(tree, name)
                if not isinstance(data, dict) or "layers" not in data:
                    continue
                manifest = parse_manifest(raw, data, subject=f"{tree.label}:{name}")
            except DockscopeError:
                continue
            if manifest.config.digest == config_digest:
                return Descriptor(manifest.media_type, digest, entry.size)
        return None

    def compare(self, source: Source) -> None:
        """Report where manifest.json and index.json disagree (the two views of one archive)."""
        subject = f"{source.label}: manifest.json against index.json"
        for key, (descriptor, _manifest) in self.manifests.items():
            if key not in self.matched:
                source.findings.append(
                    Finding(
                        "docker25-agreement",
                        subject,
                        "listed in manifest.json",
                        f"manifest {descriptor.digest} (config {key}) only in index.json",
                        False,
                    )
                )
        for candidate in source.candidates:
            if candidate.manifest_digest is None:
                continue
            pair = next(
                (m for d, m in self.manifests.values() if d.digest == candidate.manifest_digest),
                None,
            )
            if pair is None:
                continue
            try:
                image = candidate.image()
            except DockscopeError:
                continue
            docker_layers = [str(layer.digest) for layer in image.layers]
            oci_layers = [str(d.digest) for d in pair.layers]
            source.findings.append(
                Finding(
                    "docker25-agreement",
                    f"{subject}: layers of image {candidate.selector}",
                    " ".join(oci_layers),
                    " ".join(docker_layers),
                    docker_layers == oci_layers,
                )
            )
        if not self.listed and source.candidates:
            source.findings.append(
                Finding(
                    "docker25-agreement",
                    subject,
                    "index.json and manifest.json list the same images",
                    "index.json lists no manifests",
                    True,
                    "nothing to disagree with: manifest.json is authoritative",
                )
            )
