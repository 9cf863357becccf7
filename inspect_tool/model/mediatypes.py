"""Media types of the OCI image spec and Docker's distribution formats, and compressions."""

from __future__ import annotations

from enum import StrEnum


class MediaType(StrEnum):
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
    DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
    DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


INDEX_TYPES = frozenset({MediaType.OCI_INDEX, MediaType.DOCKER_LIST})
MANIFEST_TYPES = frozenset({MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST})


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    UNKNOWN = "unknown"


_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def sniff_compression(head: bytes) -> Compression:
    """What the first bytes of a blob say about its compression (never the media type)."""
    if head.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    if len(head) >= 262 and head[257:262] == b"ustar":
        return Compression.NONE
    if len(head) == 0 or (len(head) >= 512 and head[:512] == bytes(512)):
        return Compression.NONE  # an empty tar is all zero blocks
    return Compression.UNKNOWN


def declared_compression(media_type: str | None) -> Compression | None:
    """The compression a layer media type declares; None when it declares none we know."""
    if not media_type:
        return None
    if media_type.endswith(("+gzip", ".gzip")):
        return Compression.GZIP
    if media_type.endswith(("+zstd", ".zstd")):
        return Compression.ZSTD
    if media_type.endswith(".tar") or media_type.endswith("v1.tar"):
        return Compression.NONE
    return None
