"""How each identifier of an image is computed from bytes, with this image's real values."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from inspect_tool.errors import DockscopeError
from inspect_tool.layers.hashing import hash_layer
from inspect_tool.model.digest import Digest
from inspect_tool.model.image import Image, Layer
from inspect_tool.model.mediatypes import Compression
from inspect_tool.sources.source import Source


@dataclass(frozen=True, slots=True)
class Step:
    """One identifier of the image explained: how it is computed from bytes, the value computed
    here, what the image records and a shell command that recomputes it."""

    title: str
    explanation: str
    formula: str
    value: str | None
    recorded: str | None = None  # what the image records, where it records the value
    command: str | None = None  # a shell command that recomputes it
    details: tuple[str, ...] = ()

    @property
    def matches(self) -> bool | None:
        if self.recorded is None or self.value is None:
            return None
        return self.recorded == self.value


@dataclass(slots=True)
class Explanation:
    """How each identifier of an image is computed, one step per identifier in the order they build
    on each other."""

    image: Image
    steps: list[Step] = field(default_factory=list)


def _member_cmd(source: Source, path: str) -> str:
    """A shell command that writes a blob's bytes to stdout."""
    src = shlex.quote(source.label)
    if source.format.value in ("oci-layout", "docker-dir"):
        return f"cat {src}/{shlex.quote(path)}"
    compression = source.archive_compression
    option = {Compression.GZIP: "-z ", Compression.ZSTD: "--zstd "}.get(
        compression or Compression.NONE, ""
    )
    return f"tar {option}-xOf {src} {shlex.quote(path)}"


def explain_ids(source: Source, image: Image) -> Explanation:
    """Each identifier in the order they build on each other: the image ID, every layer's
    diff_id (its blob read and hashed), the chain IDs, the manifest digest."""
    out = Explanation(image)
    out.steps.append(_image_id_step(source, image))
    for layer in image.layers:
        step = _diff_id_step(source, layer)
        if step is not None:
            out.steps.append(step)
    out.steps += _chain_id_steps(image)
    out.steps.append(_manifest_step(source, image))
    return out


def _image_id_step(source: Source, image: Image) -> Step:
    config = image.config
    return Step(
        title="Image ID",
        explanation=(
            "The image ID is the sha256 of the config JSON exactly as stored: every byte, "
            "whitespace and key order included. Re-serialising the JSON would change it."
        ),
        formula=f"sha256(bytes of {image.config_blob.path}, {len(config.raw)} bytes)",
        value=str(config.digest),
        recorded=str(image.config_blob.digest) if image.config_blob.digest else None,
        command=f"{_member_cmd(source, image.config_blob.path)} | sha256sum",
        details=(f"first bytes: {config.raw[:60].decode('utf-8', 'replace')}…",),
    )


def _diff_id_step(source: Source, layer: Layer) -> Step | None:
    """The layer's diff_id from its bytes; None when it has no blob or the blob is unreadable."""
    if layer.blob is None:
        return None
    try:
        with source.tree.open(layer.blob.path) as stream:
            result = hash_layer(stream)
    except DockscopeError:
        return None
    diff_id = Digest("sha256", result.diff_id_hex or "") if not result.stream_error else None
    blob_digest = f"sha256:{result.digest_hex}"
    decompress = {
        Compression.GZIP: " | gzip -dc",
        Compression.ZSTD: " | zstd -dc",
    }.get(result.compression, "")
    if result.compression is Compression.NONE:
        why = "This blob is an uncompressed tar, so its digest and its diff_id are the same number."
    else:
        why = (
            f"This blob is {result.compression.value}-compressed: its digest "
            f"({blob_digest[:19]}…) hashes the {result.size} compressed bytes, its diff_id "
            f"the {result.uncompressed_size} bytes of tar inside."
        )
    return Step(
        title=f"diff_id of layer {layer.index}",
        explanation=(
            "A diff_id is the sha256 of the layer's uncompressed tar stream; the config "
            f"lists them in rootfs.diff_ids, bottom layer first. {why}"
        ),
        formula=f"sha256(decompress(bytes of {layer.blob.path}))",
        value=str(diff_id) if diff_id else "undecodable stream",
        recorded=str(layer.diff_id) if layer.diff_id else None,
        command=f"{_member_cmd(source, layer.blob.path)}{decompress} | sha256sum",
        details=(f"blob digest: {blob_digest} ({result.size} bytes as stored)",),
    )


def _chain_id_steps(image: Image) -> list[Step]:
    """The chain IDs from the recorded diff_ids, up to the first layer without one."""
    steps: list[Step] = []
    previous: Digest | None = None
    for layer in image.layers:
        diff_id = layer.diff_id
        if diff_id is None:
            break
        if previous is None:
            chain = diff_id
            formula = "ChainID(L0) = DiffID(L0)"
            command = None
            detail = "the bottom layer's chain ID is its diff_id"
        else:
            text = f"{previous} {diff_id}"
            chain = Digest.of_bytes(text.encode())
            n = layer.index
            formula = f"ChainID(L{n}) = sha256(ChainID(L{n - 1}) + ' ' + DiffID(L{n}))"
            command = f"printf '%s' '{text}' | sha256sum"
            detail = f'hashed string: "{text[:30]}… {str(diff_id)[:19]}…" ({len(text)} bytes)'
        steps.append(
            Step(
                title=f"chain ID of layer {layer.index}",
                explanation=(
                    "A chain ID names a layer together with every layer below it: the same diff_id "
                    "on a different base gets a different chain ID. Engines key their layer "
                    "stores by it."
                ),
                formula=formula,
                value=str(chain),
                recorded=str(layer.chain_id) if layer.chain_id else None,
                command=command,
                details=(detail,),
            )
        )
        previous = chain
    return steps


def _manifest_step(source: Source, image: Image) -> Step:
    if image.manifest is None or image.manifest_blob is None:
        return Step(
            title="Manifest digest",
            explanation=(
                "A legacy `docker save` archive holds no registry manifest, so it has no "
                "manifest digest; an engine computes one when it pushes the image (and it then "
                "depends on how the layers are compressed)."
            ),
            formula="none in this format",
            value=None,
        )
    return Step(
        title="Manifest digest",
        explanation=(
            "The manifest digest is the sha256 of the manifest JSON as stored. The "
            "manifest names the config and each layer blob by digest, so this one digest "
            "pins every byte of the image: it is what `image@sha256:…` refers to and "
            "what an index lists."
        ),
        formula=(f"sha256(bytes of {image.manifest_blob.path}, {len(image.manifest.raw)} bytes)"),
        value=str(image.manifest.digest),
        recorded=str(image.manifest_blob.digest) if image.manifest_blob.digest else None,
        command=f"{_member_cmd(source, image.manifest_blob.path)} | sha256sum",
    )
