"""The values a correct reader must report for each image (``expected.json``), computed
from the bytes written."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from samples.basics import chain_ids, sha256_digest
from samples.recipes import Recipe
from samples.tarbuild import sniff_compression


@dataclass
class Expected:
    """What a correct reader reports for one image, plus the defects planted in it.

    Values are what the image's own metadata declares (descriptors, ``rootfs.diff_ids``), except
    ``image_id``, which docs/JSON.md defines as the sha256 of the config bytes as stored.
    """

    path: str
    format: str
    selector: str
    repo_tags: list[str]
    ref_name: str | None
    platform: str
    config_path: str
    config_bytes: bytes
    config_media_type: str
    manifest_digest: str | None
    manifest_path: str | None
    manifest_media_type: str | None
    layers: list[dict[str, Any]]
    defects: list[dict[str, Any]] = field(default_factory=list)
    based_on: str | None = None
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        diff_ids = [layer["diff_id"] for layer in self.layers]
        result: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "selector": self.selector,
            "repo_tags": self.repo_tags,
            "ref_name": self.ref_name,
            "platform": self.platform,
            "image_id": sha256_digest(self.config_bytes),
            "config_path": self.config_path,
            "config_media_type": self.config_media_type,
            "manifest_digest": self.manifest_digest,
            "manifest_path": self.manifest_path,
            "manifest_media_type": self.manifest_media_type,
            "diff_ids": diff_ids,
            "chain_ids": chain_ids(diff_ids),
            "layer_digests": [layer["digest"] for layer in self.layers],
            # Where each layer is stored and what it is; its digest, DiffID and ChainID are the
            # same-index items of the lists above.
            "layers": [
                {key: value for key, value in layer.items() if key not in ("digest", "diff_id")}
                for layer in self.layers
            ],
            "defects": self.defects,
        }
        if self.based_on:
            result["based_on"] = self.based_on
        if self.description:
            result["description"] = self.description
        return result


def platform_text(recipe: Recipe) -> str:
    text = f"linux/{recipe.architecture}"
    return f"{text}/{recipe.variant}" if recipe.variant else text


def config_diff_ids(config_bytes: bytes) -> list[str]:
    diff_ids: list[str] = json.loads(config_bytes)["rootfs"]["diff_ids"]
    return diff_ids


def layer_record(
    index: int, path: str, media_type: str, blob: bytes, **declared: Any
) -> dict[str, Any]:
    """One layer of an Expected: declared values, with the compression sniffed from ``blob``."""
    record: dict[str, Any] = {
        "index": index,
        "path": path,
        "media_type": media_type,
        "compression": sniff_compression(blob),
    }
    record.update(declared)
    return record
