"""The image model: frozen values that every reader produces.

Names follow the OCI image spec and go-containerregistry: a layer's ``digest`` is the hash of
its blob as stored (usually compressed) and its ``diff_id`` the hash of the uncompressed tar.
The two are never conflated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from inspect_tool.errors import DockscopeError, InvalidJSONError, SelectionError
from inspect_tool.model.digest import Digest
from inspect_tool.model.jsondoc import expect_list, expect_object
from inspect_tool.model.mediatypes import Compression

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


class ImageFormat(StrEnum):
    DOCKER_ARCHIVE = "docker-archive"
    DOCKER_ARCHIVE_OCI = "docker-archive-oci"
    DOCKER_DIR = "docker-dir"
    OCI_LAYOUT = "oci-layout"
    OCI_ARCHIVE = "oci-archive"
    DIR = "dir"  # skopeo's dir: transport
    CONTAINERS_STORAGE = "containers-storage"  # a Podman/Buildah store, read offline
    REGISTRY = "registry"


@dataclass(frozen=True, slots=True)
class Platform:
    """An image's platform, as an index or a config names it."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]`` as given to ``--platform``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise SelectionError(f"platform must be os/arch[/variant], not {text!r}")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_json(cls, obj: Any, *, subject: str) -> Platform | None:
        if obj is None:
            return None
        data = expect_object(obj, subject=subject, what="platform")
        os_name, arch = data.get("os"), data.get("architecture")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            raise InvalidJSONError("platform lacks os or architecture strings", subject=subject)
        variant = data.get("variant")
        os_version = data.get("os.version")
        return cls(
            os_name,
            arch,
            variant if isinstance(variant, str) and variant else None,
            os_version if isinstance(os_version, str) and os_version else None,
        )

    def matches(self, wanted: Platform) -> bool:
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        return wanted.variant is None or wanted.variant == self.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, obj: Any, *, subject: str, what: str = "descriptor") -> Descriptor:
        data = expect_object(obj, subject=subject, what=what)
        media_type = data.get("mediaType", "")
        if not isinstance(media_type, str):
            raise InvalidJSONError(f"{what} mediaType is not a string", subject=subject)
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidJSONError(f"{what} size is not a non-negative integer", subject=subject)
        try:
            digest = Digest.parse(data.get("digest"), what=f"{what} digest")
        except DockscopeError as exc:
            raise exc.with_subject(subject) from None
        raw_annotations = data.get("annotations") or {}
        annotations = {
            str(k): str(v)
            for k, v in expect_object(
                raw_annotations, subject=subject, what=f"{what} annotations"
            ).items()
        }
        urls = tuple(str(u) for u in expect_list(data.get("urls"), subject=subject, what="urls"))
        return cls(
            media_type,
            digest,
            size,
            annotations,
            Platform.from_json(data.get("platform"), subject=subject),
            urls,
        )

    @property
    def ref_name(self) -> str | None:
        return self.annotations.get(REF_NAME)


@dataclass(frozen=True, slots=True)
class Blob:
    """Where some bytes live in the source, and what was claimed about them."""

    path: str  # inside the source's tree
    role: str  # "index", "manifest", "config", "layer"
    digest: Digest | None = None  # claimed digest: from a descriptor or the file name
    size: int | None = None  # claimed size, from a descriptor
    media_type: str | None = None
    what: str = ""  # a human name: "layer 2 of dive-test:latest"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One entry of the config's ``history``."""

    created: str | None
    created_by: str | None
    author: str | None
    comment: str | None
    empty_layer: bool

    @classmethod
    def from_json(cls, obj: Any, *, subject: str) -> HistoryEntry:
        data = expect_object(obj, subject=subject, what="history entry")

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        return cls(
            text("created"),
            text("created_by"),
            text("author"),
            text("comment"),
            bool(data.get("empty_layer", False)),
        )


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """An image configuration: the exact bytes and what they say."""

    raw: bytes
    data: Mapping[str, Any]
    digest: Digest  # sha256 of raw: the image ID

    @classmethod
    def from_bytes(cls, raw: bytes, data: Any, *, subject: str) -> ImageConfig:
        obj = expect_object(data, subject=subject, what="image config")
        config = obj.get("config")
        if config is not None and not isinstance(config, dict):
            raise InvalidJSONError("config.config is not a JSON object", subject=subject)
        rootfs = obj.get("rootfs")
        if rootfs is not None and not isinstance(rootfs, dict):
            raise InvalidJSONError("rootfs is not a JSON object", subject=subject)
        return cls(raw, obj, Digest.of_bytes(raw))

    @property
    def config(self) -> Mapping[str, Any]:
        value = self.data.get("config")
        return value if isinstance(value, dict) else {}

    @property
    def history_raw(self) -> list[Any]:
        value = self.data.get("history")
        return value if isinstance(value, list) else []

    def history(self, *, subject: str) -> list[HistoryEntry]:
        return [HistoryEntry.from_json(h, subject=subject) for h in self.history_raw]

    def diff_ids(self, *, subject: str) -> list[Digest]:
        rootfs = self.data.get("rootfs")
        if not isinstance(rootfs, dict):
            return []
        raw = expect_list(rootfs.get("diff_ids"), subject=subject, what="rootfs.diff_ids")
        return [Digest.parse(d, what=f"rootfs.diff_ids[{i}]") for i, d in enumerate(raw)]

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        return value if isinstance(value, str) else None

    @property
    def platform(self) -> Platform | None:
        os_name, arch = self.text("os"), self.text("architecture")
        if not os_name or not arch:
            return None
        return Platform(os_name, arch, self.text("variant") or None, self.text("os.version"))


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer: its blob where the source has one, and its IDs."""

    index: int
    blob: Blob | None  # None when the source lists no blob for a diff_id
    digest: Digest | None  # the blob's digest where known without hashing
    diff_id: Digest | None  # from rootfs.diff_ids
    chain_id: Digest | None
    media_type: str | None
    size: int | None  # the blob's size as stored; None when the blob is missing
    compression: Compression  # what the blob's bytes say
    created_by: str | None
    history_index: int | None
    # the source declares no media type (legacy docker save): media_type is the one the
    # blob's bytes imply (docker load reads them), so it cannot disagree with compression
    media_type_implied: bool = False

    @property
    def uncompressed_size(self) -> int | None:
        return self.size if self.compression is Compression.NONE else None


@dataclass(frozen=True, slots=True)
class Manifest:
    """An image manifest: its own bytes and digest, and the descriptors it lists."""

    raw: bytes
    data: Mapping[str, Any]
    digest: Digest
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class Image:
    """One image: its config, its layers and how it was found in its source."""

    source: str
    format: ImageFormat
    archive_compression: Compression | None
    selector: str
    repo_tags: tuple[str, ...]
    ref_name: str | None
    config: ImageConfig
    config_blob: Blob
    manifest: Manifest | None
    manifest_blob: Blob | None
    layers: tuple[Layer, ...]
    history: tuple[HistoryEntry, ...]
    index_path: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def image_id(self) -> Digest:
        return self.config.digest

    @property
    def display_name(self) -> str:
        """How messages name this image: its first tag, its ref name, or its position."""
        if self.repo_tags:
            return self.repo_tags[0]
        if self.ref_name:
            return f"ref {self.ref_name}"
        return f"image {self.selector}"

    @property
    def platform(self) -> Platform | None:
        return self.config.platform

    @property
    def diff_ids(self) -> list[Digest]:
        return [layer.diff_id for layer in self.layers if layer.diff_id is not None]


def align_history(
    history: list[HistoryEntry], layer_count: int
) -> list[tuple[str | None, int | None]]:
    """(created_by, history index) for each layer: non-empty history entries in order."""
    aligned: list[tuple[str | None, int | None]] = []
    for i, entry in enumerate(history):
        if not entry.empty_layer:
            aligned.append((entry.created_by, i))
    aligned = aligned[:layer_count]
    aligned += [(None, None)] * (layer_count - len(aligned))
    return aligned
