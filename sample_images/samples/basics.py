"""Media types, well-known names, and the small helpers every sample uses: digests,
Go-compatible JSON, timestamps, deterministic filler bytes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"  # containerd's, written by Docker and BuildKit

REPOSITORY = "dockscope/sample"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# --------------------------------------------------------------------------------------------
# Small helpers: digests, Go-compatible JSON and timestamps
# --------------------------------------------------------------------------------------------


def sha256_digest(data: bytes) -> str:
    """Return the OCI digest string (``sha256:<hex>``) of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    """Return the encoded (hex) part of a ``sha256:<hex>`` digest."""
    algorithm, _, encoded = digest.partition(":")
    if algorithm != "sha256" or len(encoded) != 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return encoded


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """ChainIDs per the OCI image spec.

    ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)), computed on
    the ``sha256:<hex>`` strings.
    """
    result: list[str] = []
    for diff_id in diff_ids:
        if not result:
            result.append(diff_id)
        else:
            result.append(sha256_digest(f"{result[-1]} {diff_id}".encode()))
    return result


# Go's encoding/json escapes these for safe embedding in HTML; Docker's and BuildKit's JSON
# therefore shows "&&" as "\u0026\u0026", and we must write the same bytes.
_GO_ESCAPES = (
    ("&", "\\u0026"),
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def go_json(value: Any, *, indent: bool = False, newline: bool = False) -> bytes:
    """Serialise ``value`` the way Go's ``encoding/json`` does.

    ``indent`` imitates ``json.MarshalIndent(v, "", "  ")``; ``newline`` imitates
    ``json.NewEncoder(w).Encode(v)``, which appends a line feed. Dict order is kept, so callers
    build dicts in Go struct order (or sorted, for Go maps).
    """
    if indent:
        text = json.dumps(value, ensure_ascii=False, indent=2)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in _GO_ESCAPES:
        text = text.replace(raw, escaped)
    return (text + ("\n" if newline else "")).encode("utf-8")


def sorted_map(mapping: dict[str, Any]) -> dict[str, Any]:
    """Return ``mapping`` with keys sorted, as Go marshals a map."""
    return {key: mapping[key] for key in sorted(mapping)}


@dataclass(frozen=True)
class Instant:
    """A point in time with nanoseconds, formatted like Go's RFC3339Nano in UTC."""

    seconds: int
    nanos: int = 0

    @staticmethod
    def at(text: str, nanos: int = 0) -> Instant:
        """Build from ``YYYY-MM-DDTHH:MM:SS`` (UTC) plus nanoseconds."""
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        return Instant(int(moment.timestamp()), nanos)

    def rfc3339(self) -> str:
        base = datetime.fromtimestamp(self.seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        fraction = f".{self.nanos:09d}".rstrip("0") if self.nanos else ""
        return f"{base}{fraction}Z"


EPOCH = Instant(0)
EPOCH_TEXT = EPOCH.rfc3339()  # "1970-01-01T00:00:00Z", what Docker writes for time.Unix(0, 0)


def pseudo_random(seed: str, size: int) -> bytes:
    """Deterministic incompressible bytes (a sha256 counter stream)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def fake_hex(label: str) -> str:
    """A stable 64-hex string for IDs that only need to look real (container IDs and such)."""
    return hashlib.sha256(f"dockscope-sample:{label}".encode()).hexdigest()
