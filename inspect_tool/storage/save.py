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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspect_tool.errors import DockscopeError, ExitCode, UsageError
from inspect_tool.layout.writer import LayoutWriter, create_layout, descriptor_json, index_entry
from inspect_tool.model.mediatypes import MediaType
from inspect_tool.storage import tarsplit
from inspect_tool.storage.detect import open_storage
from inspect_tool.storage.export import check_outside, layer_items, write_tar
from inspect_tool.storage.model import EngineStorage, ImageLayer, ImageRecord
from inspect_tool.storage.writable import Whiteouts


class LayerMismatchError(DockscopeError):
    """A layer rebuilt from engine storage does not hash to its recorded diff_id (exit 1);
    ``result`` holds every layer's outcome."""

    exit_code = ExitCode.PROBLEMS
    result: SaveResult | None = None


@dataclass(slots=True)
class SavedLayer:
    """One layer as ``storage save`` rebuilt it: the digest it hashed to against those the config
    and the engine recorded, how it was rebuilt and what did not match."""

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
    """What ``storage save`` wrote: the image, the layout's manifest and config digests, each
    layer's outcome and the problems found."""

    image: ImageRecord
    output: str
    manifest_digest: str
    config_digest: str
    layers: list[SavedLayer]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems and all(layer.ok for layer in self.layers)


def _save_layer(storage: EngineStorage, layer: ImageLayer, layout: LayoutWriter) -> SavedLayer:
    evidence = storage.evidence
    source = "tar-split" if layer.tar_split else "re-tar"
    name = f"layer {layer.index} ({layer.label})"
    failure: str | None = None
    with evidence.layer(layer.directory) as directory, layout.blob() as out:
        try:
            if layer.tar_split:
                tarsplit.reassemble(evidence, layer.tar_split, directory, out.write)
            elif layer.whiteouts is Whiteouts.NONE and layer.index > 0:
                failure = "no tar-split record, and a full copy (vfs) is not its own diff"
            else:
                write_tar(layer_items(directory, layer.whiteouts), out)
        except DockscopeError as exc:
            failure = str(exc)
        computed = str(out.digest)
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
            out.commit(str(MediaType.OCI_LAYER))
    return saved


def save_image(root: Path, ident: str, output: Path) -> SaveResult:
    """Write image ``ident`` (ID, unique ID prefix, name or name:tag) from the engine storage
    at ``root`` as an OCI image layout in ``output`` (created; it must not exist or be an
    empty directory). Raises ``LayerMismatchError`` listing every layer that fails."""
    check_outside(root, output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"{output} exists and is not an empty directory")
    storage = open_storage(root)
    try:
        with create_layout(output, parents=True) as layout:
            image = storage.resolve_image(ident)
            result = _write_layout(storage, image, layout, str(output))
            if not result.ok:
                problems = [*result.problems, *(p for lyr in result.layers for p in lyr.problems)]
                error = LayerMismatchError(
                    "the image does not match what its engine recorded: " + "; ".join(problems),
                    subject=image.id,
                )
                error.result = result
                raise error
        return result
    finally:
        storage.evidence.close()


def _write_layout(
    storage: EngineStorage, image: ImageRecord, layout: LayoutWriter, label: str
) -> SaveResult:
    problems: list[str] = []
    config = layout.add_bytes(storage.image_config(image), str(MediaType.OCI_CONFIG))
    config_digest = str(config.digest)
    if config_digest != image.id:
        problems.append(f"the config hashes to {config_digest}, not to the image ID {image.id}")
    layers = [_save_layer(storage, layer, layout) for layer in storage.image_layers(image)]
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": str(MediaType.OCI_MANIFEST),
        "config": descriptor_json(config),
        "layers": [
            {"mediaType": str(MediaType.OCI_LAYER), "digest": layer.computed, "size": layer.size}
            for layer in layers
        ],
    }
    descriptor = layout.add_json(manifest, str(MediaType.OCI_MANIFEST))
    name = image.tags[0] if image.tags else None
    layout.finish([index_entry(descriptor, name=name)])
    return SaveResult(image, label, str(descriptor.digest), config_digest, layers, problems)
