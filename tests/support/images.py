"""Builders for crafted test images (hostile and broken cases): layers from a name -> bytes
map, docker-save archives and OCI layouts around them (``oci_layout`` for an ordinary image,
``Layout`` blob by blob for the rest).

Real-world inputs come from ../shared/corpus and the sample images; these builders make the
cases no real tool writes on purpose: escaping paths, bad digests, truncation, deep JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_tar(path: Path, members: dict[str, bytes | tuple[str, str]]) -> Path:
    """Write a tar whose members are bytes, or ("symlink"|"hardlink", target) pairs."""
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, value in members.items():
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if isinstance(value, tuple):
                kind, target = value
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = target
                tf.addfile(info)
            else:
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value))
    return path


def config_bytes(diff_ids: list[str], **extra: Any) -> bytes:
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"step {i}"} for i in range(len(diff_ids))],
    }
    config.update(extra)
    return json.dumps(config).encode()


def docker_archive_members(
    layers: list[bytes], *, tag: str = "test:latest", **config: Any
) -> dict[str, bytes | tuple[str, str]]:
    """A legacy docker-save archive's members for the given uncompressed layers; ``config``
    keys replace the defaults of config_bytes (history, config, …)."""
    raw = config_bytes([sha256(layer) for layer in layers], **config)
    config_name = hashlib.sha256(raw).hexdigest() + ".json"
    members: dict[str, bytes | tuple[str, str]] = {config_name: raw}
    paths = []
    for i, layer in enumerate(layers):
        directory = f"{i:064x}"
        members[f"{directory}/layer.tar"] = layer
        members[f"{directory}/VERSION"] = b"1.0"
        paths.append(f"{directory}/layer.tar")
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": paths}]
    members["manifest.json"] = json.dumps(manifest).encode()
    return members


class Layout:
    """An OCI layout directory written blob by blob: any config bytes, any layer list (one blob
    many times, a blob written elsewhere), any number of manifests in the index."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        (self.blobs / digest.split(":")[1]).write_bytes(data)
        return digest

    def put_json(self, value: Any) -> tuple[str, int]:
        """``value`` as JSON (bytes as they are): its digest and size."""
        data = json.dumps(value).encode() if not isinstance(value, bytes) else value
        return self.put(data), len(data)

    def manifest(
        self,
        layers: Sequence[tuple[bytes, str] | dict[str, Any]],
        diff_ids: list[str] | None = None,
        config: bytes | None = None,
        *,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A manifest of ``layers``, each a (blob, media type) pair written here or a descriptor
        of a blob already in place, over ``config`` (default: config_bytes of ``diff_ids``,
        default the layers' digests); ``annotations`` are the manifest's. Returns its
        descriptor."""
        described: dict[tuple[bytes, str], dict[str, Any]] = {}  # a blob listed many times
        descriptors = []
        for layer in layers:
            if isinstance(layer, dict):
                descriptors.append(layer)
                continue
            if layer not in described:
                blob, media = layer
                described[layer] = {"mediaType": media, "digest": self.put(blob), "size": len(blob)}
            descriptors.append(described[layer])
        if config is None:
            config = config_bytes(diff_ids or [d["digest"] for d in descriptors])
        body: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.put(config), "size": len(config)},
            "layers": descriptors,
        }
        if annotations:
            body["annotations"] = annotations
        digest, size = self.put_json(body)
        return {"mediaType": OCI_MANIFEST, "digest": digest, "size": size}

    def index(self, manifests: list[dict[str, Any]]) -> None:
        (self.root / "index.json").write_text(
            json.dumps({"schemaVersion": 2, "manifests": manifests})
        )


def oci_layout(
    root: Path,
    layers: list[bytes],
    *,
    ref: str = "latest",
    diff_ids: list[str] | None = None,
    config: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, str]:
    """An OCI layout directory with uncompressed layers; returns the digests written.
    ``diff_ids`` replaces the ones the config records (to test a mismatch); ``config`` keys
    replace the config's defaults; ``annotations`` are the manifest's."""
    layout = Layout(root)
    config_raw = config_bytes(diff_ids or [sha256(lyr) for lyr in layers], **(config or {}))
    manifest = layout.manifest(
        [(lyr, OCI_LAYER_TAR) for lyr in layers], config=config_raw, annotations=annotations
    )
    manifest["annotations"] = {"org.opencontainers.image.ref.name": ref}
    layout.index([manifest])
    return {"config": sha256(config_raw), "manifest": manifest["digest"]}


def write_image(
    path: Path, layers: list[bytes], *, tag: str = "test:latest", **config: Any
) -> Path:
    """A legacy docker-save archive of the given uncompressed layers; ``config`` keys replace
    the defaults of config_bytes (history, config, …)."""
    return write_tar(path, docker_archive_members(layers, tag=tag, **config))
