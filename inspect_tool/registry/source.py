"""``docker://`` references as Sources: the manifest fetched and checked, the rest on demand."""

from __future__ import annotations

from pathlib import Path

from inspect_tool.errors import DockscopeError, InvalidDigestError
from inspect_tool.model.digest import Digest
from inspect_tool.model.image import ImageFormat
from inspect_tool.model.jsondoc import parse_json
from inspect_tool.model.mediatypes import MediaType
from inspect_tool.registry.access import RegistryAccess, current_access
from inspect_tool.registry.cache import BlobCache
from inspect_tool.registry.client import RegistryClient
from inspect_tool.registry.reference import RegistryReference
from inspect_tool.registry.tree import RegistryTree
from inspect_tool.sources.oci_layout import add_candidate, walk_index
from inspect_tool.sources.source import Source

GENERIC_TYPES = frozenset({"", "application/json", "text/plain", "application/octet-stream"})


class RegistrySource(Source):
    """A Source whose label is the reference as the user gave it (a Path would fold its //)."""

    @property
    def label(self) -> str:
        return self.tree.label


def fetch_manifest(
    client: RegistryClient, reference: RegistryReference, cache: BlobCache
) -> tuple[bytes, str, Digest]:
    """The referenced manifest's exact bytes, media type and digest, checked against the
    reference's @DIGEST and the registry's Docker-Content-Digest. A digest reference whose
    manifest is in the cache asks nothing of the registry."""
    algorithm = reference.digest.algorithm if reference.digest else "sha256"
    data: bytes | None = None
    header_type: str | None = None
    if reference.digest is not None:
        data = cache.read(reference.digest)
        if data is not None and Digest.of_bytes(data, algorithm) != reference.digest:
            data = None
    if data is None:
        data, header_type, header_digest = client.get_manifest(reference.manifest_ref)
        actual = Digest.of_bytes(data, algorithm)
        if reference.digest is not None and actual != reference.digest:
            raise client.error(
                f"the manifest the registry sent has digest {actual}, not the "
                f"{reference.digest} asked for"
            )
        if header_digest:
            try:
                claimed = Digest.parse(header_digest.strip(), what="Docker-Content-Digest")
            except InvalidDigestError:
                raise client.error(
                    "the registry's Docker-Content-Digest header is not a digest"
                ) from None
            if claimed.algorithm == algorithm and claimed != actual:
                raise client.error(
                    f"the manifest's bytes have digest {actual}, but the registry's "
                    f"Docker-Content-Digest says {claimed}"
                )
        cache.store(actual, data)
    media_type = header_type if header_type not in GENERIC_TYPES else None
    if media_type is None:
        media_type = _declared_type(data)
    return data, media_type, Digest.of_bytes(data, algorithm)


def _declared_type(data: bytes) -> str:
    try:
        document = parse_json(data, subject="manifest")
    except DockscopeError:
        return str(MediaType.OCI_MANIFEST)
    if isinstance(document, dict):
        declared = document.get("mediaType")
        if isinstance(declared, str) and declared:
            return declared
        if "manifests" in document:
            return str(MediaType.OCI_INDEX)
    return str(MediaType.OCI_MANIFEST)


def open_registry_source(text: str, access: RegistryAccess | None = None) -> Source:
    """Open ``docker://HOST/NAME[:TAG|@DIGEST]``; nothing but the manifest is read now."""
    reference = RegistryReference.parse(text)
    label = reference_label(text)
    client = RegistryClient(reference, access or current_access(), label=label)
    try:
        cache = BlobCache.default()
        data, media_type, digest = fetch_manifest(client, reference, cache)
        tree = RegistryTree(
            client,
            cache,
            label=label,
            manifest=data,
            media_type=media_type,
            digest=digest,
            name=f"{reference.name}:{reference.tag}" if reference.tag else None,
            tag=reference.tag,
        )
    except BaseException:
        client.close()
        raise
    source = RegistrySource(Path(label), tree, ImageFormat.REGISTRY)
    try:
        for descriptor, ref, trail in walk_index(source):
            add_candidate(source, descriptor, ref, trail)
    except BaseException:
        source.close()
        raise
    if not source.candidates:
        source.notes.append(f"{media_type} {digest.short} lists no image manifests")
    return source


def reference_label(text: str) -> str:
    """The reference as typed, its ``docker:/`` restored to ``docker://`` (Path folds it)."""
    rest = text[len("docker:") :].lstrip("/")
    return f"docker://{rest}"
