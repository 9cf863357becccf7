"""``storage save``: an image in engine storage written as an OCI image layout, every layer
checked against the diff_id its engine recorded.

Each layer's blob is its original tar, rebuilt from the engine's tar-split record and the
unpacked layer directory (``tarsplit.py``): byte for byte what the engine received, so its
sha256 must be the diff_id in the image config and in the engine's own layer record
(Docker's layerdb ``diff``, containers/storage's ``diff-digest``). Without a tar-split record
the layer directory is re-tarred deterministically (whiteouts in ``.wh.`` form), which only
matches a diff_id if the original was written the same way. Every mismatch is collected and
reported together, naming the layer, with the files whose content no longer matches what
the tar-split recorded; nothing is left in DIR when a layer fails. Blobs are uncompressed
(``application/vnd.oci.image.layer.v1.tar``), so each layer's digest is its diff_id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from inspect_tool.errors import DockscopeError, ExitCode, UsageError
from inspect_tool.storage import tarsplit
from inspect_tool.storage.detect import open_storage
from inspect_tool.storage.export import check_outside, layer_items, write_tar
from inspect_tool.storage.model import EngineStorage, ImageLayer, ImageRecord
from inspect_tool.storage.writable import Whiteouts

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


class LayerMismatchError(DockscopeError):
    """A layer rebuilt from engine storage does not hash to its recorded diff_id (exit 1);
    ``result`` holds every layer's outcome."""

    exit_code = ExitCode.PROBLEMS
    result: SaveResult | None = None


@dataclass(slots=True)
class SavedLayer:
    index: int
    label: str
    diff_id: str
    recorded: str | None
    computed: str
    size: int
    source: str  # "tar-split" or "re-tar"
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class SaveResult:
    image: ImageRecord
    output: str
    manifest_digest: str
    config_digest: str
    layers: list[SavedLayer]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems and all(layer.ok for layer in self.layers)


class _HashingFile:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _write_blob(blobs: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}"


def _save_layer(storage: EngineStorage, layer: ImageLayer, blobs: Path) -> SavedLayer:
    evidence = storage.evidence
    fd, temp = tempfile.mkstemp(dir=blobs, prefix=".layer-")
    source = "tar-split" if layer.tar_split else "re-tar"
    name = f"layer {layer.index} ({layer.label})"
    failure: str | None = None
    with evidence.layer(layer.directory) as directory:
        with os.fdopen(fd, "wb") as raw:
            out = _HashingFile(raw)
            try:
                if layer.tar_split:
                    tarsplit.reassemble(evidence, layer.tar_split, directory, out.write)
                elif layer.whiteouts is Whiteouts.NONE and layer.index > 0:
                    failure = "no tar-split record, and a full copy (vfs) is not its own diff"
                else:
                    write_tar(layer_items(directory, layer.whiteouts), out)
            except DockscopeError as exc:
                failure = str(exc)
        computed = "sha256:" + out.hash.hexdigest()
        saved = SavedLayer(
            layer.index, layer.label, layer.diff_id, layer.recorded, computed, out.size, source
        )
        if failure is not None:
            saved.problems.append(f"{name}: cannot be rebuilt from {source}: {failure}")
        else:
            expected = {("rootfs.diff_ids", layer.diff_id)}
            if layer.recorded is not None:
                expected.add(("the engine's layer record", layer.recorded))
            for where, value in sorted(expected):
                if value != computed:
                    saved.problems.append(
                        f"{name}: rebuilt from {source} it hashes to {computed}, {where} says "
                        f"{value}"
                    )
        if saved.problems and layer.tar_split:
            altered = tarsplit.altered_files(evidence, layer.tar_split, directory)
            if altered:
                shown = ", ".join(altered[:20]) + (" …" if len(altered) > 20 else "")
                saved.problems.append(f"{name}: files that differ from the original tar: {shown}")
    if saved.ok:
        os.replace(temp, blobs / computed.removeprefix("sha256:"))
    else:
        os.unlink(temp)
    return saved


def save_image(root: Path, ident: str, output: Path) -> SaveResult:
    """Write image ``ident`` (ID, unique ID prefix, name or name:tag) from the engine storage
    at ``root`` as an OCI image layout in ``output`` (created; it must not exist or be an
    empty directory). Raises ``LayerMismatchError`` listing every layer that fails."""
    check_outside(root, output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"{output} exists and is not an empty directory")
    storage = open_storage(root)
    parent = output.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=parent, prefix=f".{output.name}.partial-"))
    try:
        image = storage.resolve_image(ident)
        result = _write_layout(storage, image, work, str(output))
        if not result.ok:
            problems = [*result.problems, *(p for lyr in result.layers for p in lyr.problems)]
            error = LayerMismatchError(
                "the image does not match what its engine recorded: " + "; ".join(problems),
                subject=image.id,
            )
            error.result = result
            raise error
        if output.exists():
            output.rmdir()
        work.rename(output)
        return result
    finally:
        storage.evidence.close()
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _write_layout(storage: EngineStorage, image: ImageRecord, out: Path, label: str) -> SaveResult:
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    problems: list[str] = []
    config = storage.image_config(image)
    config_digest = _write_blob(blobs, config)
    if config_digest != image.id:
        problems.append(f"the config hashes to {config_digest}, not to the image ID {image.id}")
    layers = [_save_layer(storage, layer, blobs) for layer in storage.image_layers(image)]
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [
            {"mediaType": OCI_LAYER, "digest": layer.computed, "size": layer.size}
            for layer in layers
        ],
    }
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_digest = _write_blob(blobs, manifest_bytes)
    descriptor: dict[str, Any] = {
        "mediaType": OCI_MANIFEST,
        "digest": manifest_digest,
        "size": len(manifest_bytes),
    }
    name = image.tags[0] if image.tags else None
    if name:
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
        descriptor["annotations"] = {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": tag,
        }
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    with contextlib.suppress(OSError):
        os.chmod(out, 0o755)
    return SaveResult(image, label, manifest_digest, config_digest, layers, problems)
