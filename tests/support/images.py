"""Builders for crafted test images (hostile and broken cases): layers from a name -> bytes
map, docker-save archives and OCI layouts around them.

Real-world inputs come from ../shared/corpus and the sample images; these builders make the
cases no real tool writes on purpose: escaping paths, bad digests, truncation, deep JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any


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
    layers: list[bytes], *, tag: str = "test:latest"
) -> dict[str, bytes | tuple[str, str]]:
    """A legacy docker-save archive's members for the given uncompressed layers."""
    diff_ids = [sha256(layer) for layer in layers]
    config = config_bytes(diff_ids)
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    members: dict[str, bytes | tuple[str, str]] = {config_name: config}
    paths = []
    for i, layer in enumerate(layers):
        directory = f"{i:064x}"
        members[f"{directory}/layer.tar"] = layer
        members[f"{directory}/VERSION"] = b"1.0"
        paths.append(f"{directory}/layer.tar")
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": paths}]
    members["manifest.json"] = json.dumps(manifest).encode()
    return members


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
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest.split(":")[1]).write_bytes(data)
        return digest

    layer_descs = [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": put(lyr),
            "size": len(lyr),
        }
        for lyr in layers
    ]
    config_raw = config_bytes(diff_ids or [sha256(lyr) for lyr in layers], **(config or {}))
    config_digest = put(config_raw)
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_raw),
        },
        "layers": layer_descs,
    }
    if annotations:
        manifest_doc["annotations"] = annotations
    manifest = json.dumps(manifest_doc).encode()
    manifest_digest = put(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return {"config": config_digest, "manifest": manifest_digest}


def write_image(
    path: Path, layers: list[bytes], *, tag: str = "test:latest", **config: Any
) -> Path:
    """A legacy docker-save archive of the given uncompressed layers; ``config`` keys replace
    the defaults of config_bytes (history, config, …)."""
    diff_ids = [sha256(layer) for layer in layers]
    raw = config_bytes(diff_ids, **config)
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
    return write_tar(path, members)
