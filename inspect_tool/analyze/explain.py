"""How each identifier of an image is computed from bytes, with this image's real values."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from inspect_tool.errors import DockscopeError
from inspect_tool.layers.hashing import hash_layer
from inspect_tool.model.digest import Digest
from inspect_tool.model.image import Image
from inspect_tool.model.mediatypes import Compression
from inspect_tool.sources.source import Source


@dataclass(frozen=True, slots=True)
class Step:
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
    out = Explanation(image)
    config = image.config
    out.steps.append(
        Step(
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
    )
    computed: list[Digest | None] = []
    for layer in image.layers:
        if layer.blob is None:
            computed.append(None)
            continue
        try:
            with source.tree.open(layer.blob.path) as stream:
                result = hash_layer(stream)
        except DockscopeError:
            computed.append(None)
            continue
        diff_id = Digest("sha256", result.diff_id_hex or "") if not result.stream_error else None
        computed.append(diff_id)
        blob_digest = f"sha256:{result.digest_hex}"
        decompress = {
            Compression.GZIP: " | gzip -dc",
            Compression.ZSTD: " | zstd -dc",
        }.get(result.compression, "")
        if result.compression is Compression.NONE:
            why = (
                "This blob is an uncompressed tar, so its digest and its diff_id are the "
                "same number."
            )
        else:
            why = (
                f"This blob is {result.compression.value}-compressed: its digest "
                f"({blob_digest[:19]}…) hashes the {result.size} compressed bytes, its diff_id "
                f"the {result.uncompressed_size} bytes of tar inside."
            )
        out.steps.append(
            Step(
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
        )
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
        out.steps.append(
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
    if image.manifest is not None and image.manifest_blob is not None:
        out.steps.append(
            Step(
                title="Manifest digest",
                explanation=(
                    "The manifest digest is the sha256 of the manifest JSON as stored. The "
                    "manifest names the config and each layer blob by digest, so this one digest "
                    "pins every byte of the image: it is what `image@sha256:…` refers to and "
                    "what an index lists."
                ),
                formula=(
                    f"sha256(bytes of {image.manifest_blob.path}, {len(image.manifest.raw)} bytes)"
                ),
                value=str(image.manifest.digest),
                recorded=str(image.manifest_blob.digest) if image.manifest_blob.digest else None,
                command=f"{_member_cmd(source, image.manifest_blob.path)} | sha256sum",
            )
        )
    else:
        out.steps.append(
            Step(
                title="Manifest digest",
                explanation=(
                    "A legacy `docker save` archive holds no registry manifest, so it has no "
                    "manifest digest; an engine computes one when it pushes the image (and it then "
                    "depends on how the layers are compressed)."
                ),
                formula="none in this format",
                value=None,
            )
        )
    return out
