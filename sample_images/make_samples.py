#!/usr/bin/env python3
"""Generate dockscope's sample container images, byte for byte the same on every run.

Usage::

    python3 sample_images/make_samples.py [--out DIR]
    python3 sample_images/make_samples.py --busybox OUT.tar [--busybox-binary PATH]

The images are small but laid out exactly as real tools write them:

* ``docker-archive-legacy.tar`` / ``docker-archive-multi.tar``: ``docker save`` up to Docker 24
  (``manifest.json``, ``repositories``, ``<config-hex>.json``,
  ``<v1-id>/{VERSION,json,layer.tar}``) of images built by the classic builder.
* ``docker-archive-v25.tar``: ``docker save`` of Docker 25+ (an OCI layout plus ``manifest.json``
  pointing into ``blobs/``), of a BuildKit-built image.
* ``oci-layout/``, ``oci-archive-zstd.tar``, ``oci-multiplatform/``: what BuildKit's OCI exporter
  writes (``docker buildx build --output type=oci``), as a directory or a tar.
* ``tampered/``: copies with exactly one defect each, for ``dockscope verify``.
* ``expected.json``: the digests a correct reader must report, computed here from the bytes
  written.
* ``--busybox OUT.tar``, apart from those: a runnable image of the host's static busybox for
  ``dockscope run`` (about 2 MB, so built by ``make``, never committed).

Determinism: every timestamp is a constant, tar headers carry uid/gid 0 and empty user names,
entries are written in the order Go's ``filepath.Walk`` visits them (as Docker and BuildKit do),
gzip headers carry mtime 0 and no file name, and zstd frames use a fixed level with the content
size and checksum always written. Compressed bytes still depend on the compressor libraries
(zlib, and the libzstd bundled in the ``zstandard`` package); ``tests/image/test_samples.py``
compares a regeneration with the committed files.

Only the standard library and ``zstandard`` are used.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard

# --------------------------------------------------------------------------------------------
# Media types and well-known names
# --------------------------------------------------------------------------------------------

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

# Every top-level name this script writes into the output folder; everything else there
# (this script, README.md) is left alone when regenerating.
OUTPUT_NAMES = (
    "docker-archive-legacy.tar",
    "docker-archive-multi.tar",
    "docker-archive-v25.tar",
    "oci-layout",
    "oci-archive-zstd.tar",
    "oci-multiplatform",
    "tampered",
    "expected.json",
)

GZIP_LEVEL = 6  # Go's gzip.DefaultCompression; with it Python writes the same 10-byte header
ZSTD_LEVEL = 3  # zstd's default level, as containerd and BuildKit use

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


# --------------------------------------------------------------------------------------------
# Tar writing (Go archive/tar style)
# --------------------------------------------------------------------------------------------

FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hardlink"
_TAR_TYPES = {
    FILE: tarfile.REGTYPE,
    DIR: tarfile.DIRTYPE,
    SYMLINK: tarfile.SYMTYPE,
    HARDLINK: tarfile.LNKTYPE,
}


@dataclass(frozen=True)
class TarEntry:
    """One tar member. ``name`` has no leading ``/`` and no trailing ``/``."""

    name: str
    kind: str = FILE
    data: bytes = b""
    mode: int = 0o644
    mtime: int = 0
    uid: int = 0
    gid: int = 0
    linkname: str = ""


def walk_key(name: str) -> tuple[str, ...]:
    """Order in which Go's filepath.Walk visits paths: a directory, then its sorted children.

    Comparing component tuples (not whole strings) keeps ``a/`` and ``a/b`` before ``a-b``.
    """
    return tuple(name.split("/"))


def build_tar(entries: Iterable[TarEntry]) -> bytes:
    """Serialise entries as Go's archive/tar writer does.

    Headers are ustar (PAX records only if a field needs them, which ours never do), data is
    padded to 512 bytes, and the archive ends with two zero blocks and no further record
    padding (Python's tarfile would pad to 10240 bytes; Docker and BuildKit do not).
    """
    ordered = sorted(entries, key=lambda entry: walk_key(entry.name))
    names = [entry.name for entry in ordered]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate tar member names in {names}")
    out = bytearray()
    for entry in ordered:
        info = tarfile.TarInfo(entry.name)
        info.type = _TAR_TYPES[entry.kind]
        info.mode = entry.mode
        info.mtime = entry.mtime
        info.uid, info.gid = entry.uid, entry.gid
        info.uname = info.gname = ""
        info.linkname = entry.linkname
        info.size = len(entry.data) if entry.kind == FILE else 0
        out += info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if info.size:
            out += entry.data
            out += b"\0" * (-len(entry.data) % tarfile.BLOCKSIZE)
    out += b"\0" * (2 * tarfile.BLOCKSIZE)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Compression
# --------------------------------------------------------------------------------------------


def gzip_compress(data: bytes) -> bytes:
    """gzip with mtime 0 and no file name: header 1f8b 08 00 00000000 00 ff, as Go writes it."""
    buffer = io.BytesIO()
    with gzip.GzipFile(
        fileobj=buffer, mode="wb", mtime=0, filename="", compresslevel=GZIP_LEVEL
    ) as stream:
        stream.write(data)
    return buffer.getvalue()


def zstd_compress(data: bytes) -> bytes:
    """One zstd frame with content size and checksum, like BuildKit's zstd layers."""
    compressor = zstandard.ZstdCompressor(
        level=ZSTD_LEVEL, write_checksum=True, write_content_size=True
    )
    return compressor.compress(data)


def compression_of(media_type: str) -> str:
    """Compression a layer media type declares: ``none``, ``gzip`` or ``zstd``."""
    if media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    if media_type.endswith(("+zstd", ".zstd")):
        return "zstd"
    return "none"


def sniff_compression(blob: bytes) -> str:
    """Compression the first bytes show, independently of any media type."""
    if blob.startswith(b"\x1f\x8b"):
        return "gzip"
    if blob.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return "none"


# --------------------------------------------------------------------------------------------
# The filesystem: four layers of a tiny distribution, plus variants
# --------------------------------------------------------------------------------------------

# Build timeline. The base image was built on New Year's Day; the application image (classic
# builder and BuildKit alike) on 1 March; the "other" image ten minutes later.
T_BASE_ADD = Instant.at("2024-01-01T00:00:00", 391442803)
T_BASE_CMD = Instant.at("2024-01-01T00:00:00", 617259006)
T_MAINTAINER = Instant.at("2024-03-01T12:00:00", 104837219)
T_LABEL = Instant.at("2024-03-01T12:00:00", 227518034)
T_ENV = Instant.at("2024-03-01T12:00:00", 351904276)
T_RUN_SETUP = Instant.at("2024-03-01T12:00:02", 815027743)
T_RUN_CLEAN = Instant.at("2024-03-01T12:00:04", 190266481)
T_COPY = Instant.at("2024-03-01T12:00:05", 28741592)
T_WORKDIR = Instant.at("2024-03-01T12:00:05", 160357114)
T_USER = Instant.at("2024-03-01T12:00:05", 288112540)
T_EXPOSE = Instant.at("2024-03-01T12:00:05", 410946827)
T_VOLUME = Instant.at("2024-03-01T12:00:05", 537320161)
T_HEALTH = Instant.at("2024-03-01T12:00:05", 664091375)
T_STOP = Instant.at("2024-03-01T12:00:05", 789520246)
T_ENTRY = Instant.at("2024-03-01T12:00:05", 912004853)
T_CMD = Instant.at("2024-03-01T12:00:06", 40217368)
T_OTHER_COPY = Instant.at("2024-03-01T12:10:11", 502876001)
T_OTHER_ENTRY = Instant.at("2024-03-01T12:10:11", 631559247)
T_OTHER_CMD = Instant.at("2024-03-01T12:10:11", 760942118)
T_MULTI_RUN = Instant.at("2024-03-04T08:15:00", 250610447)
T_MULTI_CMD = Instant.at("2024-03-04T08:15:00", 498315202)
T_SOURCE_FILES = Instant.at("2024-02-28T17:45:12").seconds  # mtime of files in the build context
T_SAVE = Instant.at("2024-03-02T09:30:00").seconds  # when `docker save` ran (Docker 25)

BASE_MTIME = T_BASE_ADD.seconds

HELLO_SCRIPT = b"""#!/bin/sh
# hello: the sample image's only "program".
echo "hello from dockscope${1:+, $1}"
"""

OS_RELEASE_1_0 = b"""NAME="Dockscope Sample Linux"
ID=dockscope
VERSION_ID=1.0
PRETTY_NAME="Dockscope Sample Linux 1.0"
"""

OS_RELEASE_1_1 = OS_RELEASE_1_0.replace(b"VERSION_ID=1.0", b"VERSION_ID=1.1")

PASSWD = b"""root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
"""

GROUP = b"""root:x:0:
app:x:1000:
"""

README = b"""Dockscope Sample Linux
======================

A handful of files that stand in for a distribution, so that dockscope's sample images
have something to show: directories, an executable, a symlink, a hard link, a user with
uid 1000. A later layer deletes this README (a whiteout) and rebuilds /var/cache/app (an
opaque directory).
"""

COPYRIGHT = b"""Files: *
Copyright: dockscope authors
License: Apache-2.0
"""

CACHE_INDEX = b"".join(f"entry-{n:03d} {fake_hex(str(n))[:16]}\n".encode() for n in range(16))
CACHE_OLD_LOG = b"".join(
    f"2023-12-31T23:{n:02d}:00Z cache warmed ({n * 37} entries)\n".encode() for n in range(10)
)
# Something binary and incompressible, so that compressed and uncompressed sizes differ
# the way they do for real shared libraries.
LIBRARY = b"\x7fELF\x02\x01\x01\x00" + b"\0" * 8 + pseudo_random("libdockscope.so.1", 1000)

MOTD = b"Welcome to the dockscope sample image\n"
SERVER_SCRIPT = b'#!/bin/sh\nexec hello "$@"\n'
CACHE_STAMP = b"cache rebuilt\n"

ENTRYPOINT_SCRIPT = b"""#!/bin/sh
# docker-entrypoint.sh: run "serve" by default, anything else as given.
set -e
if [ "$1" = serve ]; then
    shift
    exec /opt/app/bin/server "$@"
fi
exec "$@"
"""

WORKER_SCRIPT = b"""#!/bin/sh
# worker.sh: the "other" image's entrypoint.
set -e
echo "worker started with: $*"
exec hello worker
"""


def directory(name: str, mtime: int, mode: int = 0o755, owner: int = 0) -> TarEntry:
    return TarEntry(name, DIR, mode=mode, mtime=mtime, uid=owner, gid=owner)


def regular(name: str, data: bytes, mtime: int, mode: int = 0o644) -> TarEntry:
    return TarEntry(name, FILE, data=data, mode=mode, mtime=mtime)


def base_layer() -> list[TarEntry]:
    """L0, ``ADD rootfs.tar /``: a few directories and files, a symlink and a hard link."""
    t = BASE_MTIME
    return [
        directory("bin", t),
        regular("bin/hello", HELLO_SCRIPT, t, 0o755),
        TarEntry("bin/hi", HARDLINK, mode=0o755, mtime=t, linkname="bin/hello"),
        TarEntry("bin/sh-link", SYMLINK, mode=0o777, mtime=t, linkname="hello"),
        directory("etc", t),
        regular("etc/group", GROUP, t),
        regular("etc/os-release", OS_RELEASE_1_0, t),
        regular("etc/passwd", PASSWD, t),
        directory("home", t),
        directory("home/app", t, 0o750, owner=1000),
        directory("root", t, 0o700),
        directory("tmp", t, 0o1777),
        directory("usr", t),
        directory("usr/lib", t),
        regular("usr/lib/libdockscope.so.1", LIBRARY, t, 0o755),
        directory("usr/share", t),
        directory("usr/share/doc", t),
        directory("usr/share/doc/dockscope", t),
        regular("usr/share/doc/dockscope/README", README, t),
        regular("usr/share/doc/dockscope/copyright", COPYRIGHT, t),
        directory("var", t),
        directory("var/cache", t),
        directory("var/cache/app", t),
        regular("var/cache/app/index.db", CACHE_INDEX, t),
        regular("var/cache/app/old.log", CACHE_OLD_LOG, t),
    ]


def setup_layer() -> list[TarEntry]:
    """L1, a RUN that adds files and modifies /etc/os-release (the whole file is stored again).

    As in an overlay2 diff, changed directories come with their new mtime and new files with
    their parents.
    """
    t = T_RUN_SETUP.seconds
    return [
        directory("data", t, owner=1000),
        directory("etc", t),
        regular("etc/motd", MOTD, t),
        regular("etc/os-release", OS_RELEASE_1_1, t),
        directory("opt", t),
        directory("opt/app", t),
        directory("opt/app/bin", t),
        regular("opt/app/bin/server", SERVER_SCRIPT, t, 0o755),
    ]


def cleanup_layer() -> list[TarEntry]:
    """L2, a RUN that deletes a file (whiteout) and recreates a directory (opaque marker).

    Docker turns overlayfs' whiteout device into ``.wh.<name>`` with mode 0600, and the opaque
    xattr into ``<dir>/.wh..wh..opq`` with the directory's permissions and a zero mtime.
    Unchanged parents (``usr``, ``usr/share``...) keep the base layer's mtime, as copy-up does.
    """
    t = T_RUN_CLEAN.seconds
    return [
        directory("usr", BASE_MTIME),
        directory("usr/share", BASE_MTIME),
        directory("usr/share/doc", BASE_MTIME),
        directory("usr/share/doc/dockscope", t),
        regular("usr/share/doc/dockscope/.wh.README", b"", t, 0o600),
        directory("var", BASE_MTIME),
        directory("var/cache", t),
        directory("var/cache/app", t),
        regular("var/cache/app/.wh..wh..opq", b"", 0, 0o755),
        regular("var/cache/app/stamp", CACHE_STAMP, t),
    ]


def copy_layer(name: str, content: bytes, copied_at: int) -> list[TarEntry]:
    """L3, a COPY of one script into /usr/local/bin (new directories, the file keeps its mtime)."""
    return [
        directory("usr", BASE_MTIME),
        directory("usr/local", copied_at),
        directory("usr/local/bin", copied_at),
        regular(f"usr/local/bin/{name}", content, T_SOURCE_FILES, 0o755),
    ]


ARCH_NAMES = {"amd64": b"x86_64\n", "arm64": b"aarch64\n", "arm": b"armv7l\n"}


def arch_layer(architecture: str) -> list[TarEntry]:
    """The per-platform layer of the multi-platform image: ``uname -m > /etc/dockscope-arch``."""
    t = T_MULTI_RUN.seconds
    return [directory("etc", t), regular("etc/dockscope-arch", ARCH_NAMES[architecture], t)]


@dataclass(frozen=True)
class Layer:
    """An uncompressed layer tar and its DiffID."""

    tar: bytes

    @property
    def diff_id(self) -> str:
        return sha256_digest(self.tar)


def make_layer(entries: Iterable[TarEntry]) -> Layer:
    return Layer(build_tar(entries))


def content_hash(entries: Iterable[TarEntry]) -> str:
    """A stand-in for the classic builder's ``file:<hash>`` of ADD/COPY sources."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: walk_key(e.name)):
        digest.update(entry.name.encode() + b"\0" + entry.data + b"\0")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Build recipes: the steps of a Dockerfile, and the history they leave
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One build step. ``layer`` is None for metadata-only steps (``empty_layer``).

    ``classic`` is the history text the classic builder writes, ``buildkit`` BuildKit's; steps
    inherited from a base image keep the base's text and carry no BuildKit comment.
    """

    when: Instant
    classic: str
    buildkit: str
    layer: Layer | None = None
    from_base: bool = False


@dataclass(frozen=True)
class Recipe:
    """Everything needed to write one image's config: steps, runtime config, platform."""

    steps: tuple[Step, ...]
    runtime: dict[str, Any]
    architecture: str = "amd64"
    variant: str | None = None
    author: str | None = None

    @property
    def layers(self) -> list[Layer]:
        return [step.layer for step in self.steps if step.layer is not None]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    @property
    def created(self) -> Instant:
        return self.steps[-1].when

    @property
    def platform(self) -> dict[str, str]:
        """OCI platform object (Go field order: architecture, os, variant)."""
        platform = {"architecture": self.architecture, "os": "linux"}
        if self.variant:
            platform["variant"] = self.variant
        return platform


MAINTAINER = "dockscope maintainers <maintainers@dockscope.invalid>"
HEALTH_CMD = "wget -q -O- http://localhost:8080/health || exit 1"
LABELS = {
    "org.opencontainers.image.description": "A tiny image for dockscope's tests and lessons",
    "org.opencontainers.image.title": "dockscope-sample",
    "org.opencontainers.image.version": "1.0",
}
SETUP_COMMAND = (
    "set -eux; mkdir -p /opt/app/bin /data; chown app:app /data;"
    " sed -i 's/^VERSION_ID=.*/VERSION_ID=1.1/' /etc/os-release;"
    " echo 'Welcome to the dockscope sample image' > /etc/motd;"
    " printf '#!/bin/sh\\nexec hello \"$@\"\\n' > /opt/app/bin/server;"
    " chmod 0755 /opt/app/bin/server"
)
CLEAN_COMMAND = (
    "rm -f /usr/share/doc/dockscope/README && rm -rf /var/cache/app"
    " && mkdir -p /var/cache/app && echo 'cache rebuilt' > /var/cache/app/stamp"
)


def nop(instruction: str) -> str:
    """Classic-builder history text of a metadata step (note the two spaces)."""
    return f"/bin/sh -c #(nop)  {instruction}"


def base_steps(base: Layer, base_entries: list[TarEntry]) -> list[Step]:
    """The two steps every sample inherits from its base image (built by the classic builder)."""
    add = f"/bin/sh -c #(nop) ADD file:{content_hash(base_entries)} in / "
    cmd = nop('CMD ["/bin/sh"]')
    return [
        Step(T_BASE_ADD, add, add, base, from_base=True),
        Step(T_BASE_CMD, cmd, cmd, from_base=True),
    ]


def app_steps(base: Layer, base_entries: list[TarEntry]) -> list[Step]:
    """Steps up to and including the cleanup RUN; the application and "other" images share them."""
    # Both builders log labels unquoted, in instruction order: title, version, description.
    label_text = " ".join(
        f"{key}={LABELS[key]}"
        for key in (
            "org.opencontainers.image.title",
            "org.opencontainers.image.version",
            "org.opencontainers.image.description",
        )
    )
    return [
        *base_steps(base, base_entries),
        Step(T_MAINTAINER, nop(f"MAINTAINER {MAINTAINER}"), f"MAINTAINER {MAINTAINER}"),
        Step(T_LABEL, nop(f"LABEL {label_text}"), f"LABEL {label_text}"),
        Step(T_ENV, nop("ENV APP_HOME=/opt/app"), "ENV APP_HOME=/opt/app"),
        Step(
            T_RUN_SETUP,
            f"/bin/sh -c {SETUP_COMMAND}",
            f"RUN /bin/sh -c {SETUP_COMMAND} # buildkit",
            make_layer(setup_layer()),
        ),
        Step(
            T_RUN_CLEAN,
            f"/bin/sh -c {CLEAN_COMMAND}",
            f"RUN /bin/sh -c {CLEAN_COMMAND} # buildkit",
            make_layer(cleanup_layer()),
        ),
    ]


def sample_recipe() -> Recipe:
    """The main sample image: 4 layers, 16 history entries, a full runtime config."""
    base_entries = base_layer()
    base = make_layer(base_entries)
    copied = copy_layer("docker-entrypoint.sh", ENTRYPOINT_SCRIPT, T_COPY.seconds)
    health_classic = f'HEALTHCHECK &{{["CMD-SHELL" "{HEALTH_CMD}"] "30s" "5s" "0s" \'\\x03\'}}'
    health_buildkit = (
        f'HEALTHCHECK &{{["CMD-SHELL" "{HEALTH_CMD}"] "30s" "5s" "0s" "0s" \'\\x03\'}}'
    )
    steps = [
        *app_steps(base, base_entries),
        Step(
            T_COPY,
            f"/bin/sh -c #(nop) COPY file:{content_hash(copied)} in /usr/local/bin/ ",
            "COPY docker-entrypoint.sh /usr/local/bin/ # buildkit",
            make_layer(copied),
        ),
        Step(T_WORKDIR, "/bin/sh -c #(nop) WORKDIR /opt/app", "WORKDIR /opt/app"),
        Step(T_USER, nop("USER app"), "USER app"),
        Step(T_EXPOSE, nop("EXPOSE 8080"), "EXPOSE map[8080/tcp:{}]"),
        Step(T_VOLUME, nop("VOLUME [/data]"), "VOLUME [/data]"),
        Step(T_HEALTH, nop(health_classic), health_buildkit),
        Step(T_STOP, nop("STOPSIGNAL SIGTERM"), "STOPSIGNAL SIGTERM"),
        Step(
            T_ENTRY,
            nop('ENTRYPOINT ["docker-entrypoint.sh"]'),
            'ENTRYPOINT ["docker-entrypoint.sh"]',
        ),
        Step(T_CMD, nop('CMD ["serve" "--port" "8080"]'), 'CMD ["serve" "--port" "8080"]'),
    ]
    runtime = {
        "User": "app",
        "ExposedPorts": {"8080/tcp": {}},
        "Env": [DEFAULT_PATH_ENV, "APP_HOME=/opt/app"],
        "Entrypoint": ["docker-entrypoint.sh"],
        "Cmd": ["serve", "--port", "8080"],
        "Volumes": {"/data": {}},
        "WorkingDir": "/opt/app",
        "Labels": sorted_map(LABELS),
        "StopSignal": "SIGTERM",
        "Healthcheck": {
            "Test": ["CMD-SHELL", HEALTH_CMD],
            "Interval": 30_000_000_000,
            "Timeout": 5_000_000_000,
            "Retries": 3,
        },
    }
    return Recipe(tuple(steps), runtime, author=MAINTAINER)


def other_recipe() -> Recipe:
    """A second image on the same first three layers with its own top layer."""
    base_entries = base_layer()
    base = make_layer(base_entries)
    copied = copy_layer("worker.sh", WORKER_SCRIPT, T_OTHER_COPY.seconds)
    steps = [
        *app_steps(base, base_entries),
        Step(
            T_OTHER_COPY,
            f"/bin/sh -c #(nop) COPY file:{content_hash(copied)} in /usr/local/bin/ ",
            "COPY worker.sh /usr/local/bin/ # buildkit",
            make_layer(copied),
        ),
        Step(T_OTHER_ENTRY, nop('ENTRYPOINT ["worker.sh"]'), 'ENTRYPOINT ["worker.sh"]'),
        Step(T_OTHER_CMD, nop('CMD ["--queue" "default"]'), 'CMD ["--queue" "default"]'),
    ]
    labels = dict(LABELS, **{"org.opencontainers.image.title": "dockscope-sample-worker"})
    runtime = {
        "Env": [DEFAULT_PATH_ENV, "APP_HOME=/opt/app"],
        "Entrypoint": ["worker.sh"],
        "Cmd": ["--queue", "default"],
        "Labels": sorted_map(labels),
    }
    return Recipe(tuple(steps), runtime, author=MAINTAINER)


MULTI_PLATFORMS = (("amd64", None), ("arm64", "v8"), ("arm", "v7"))


def multiplatform_recipe(architecture: str, variant: str | None) -> Recipe:
    """One platform of the multi-platform image: the shared base plus a per-platform layer."""
    base_entries = base_layer()
    command = "uname -m > /etc/dockscope-arch"
    steps = [
        *base_steps(make_layer(base_entries), base_entries),
        Step(
            T_MULTI_RUN,
            f"/bin/sh -c {command}",
            f"RUN /bin/sh -c {command} # buildkit",
            make_layer(arch_layer(architecture)),
        ),
        Step(T_MULTI_CMD, nop('CMD ["hello"]'), 'CMD ["hello"]'),
    ]
    runtime = {"Env": [DEFAULT_PATH_ENV], "Cmd": ["hello"]}
    return Recipe(tuple(steps), runtime, architecture=architecture, variant=variant)


# --------------------------------------------------------------------------------------------
# Image configs
# --------------------------------------------------------------------------------------------

# Docker's container.Config, in struct order, with each field's zero value when not omitempty
# (None: the field has `omitempty` and is left out when unset).
_CONTAINER_CONFIG_FIELDS: tuple[tuple[str, Any], ...] = (
    ("Hostname", ""),
    ("Domainname", ""),
    ("User", ""),
    ("AttachStdin", False),
    ("AttachStdout", False),
    ("AttachStderr", False),
    ("ExposedPorts", None),
    ("Tty", False),
    ("OpenStdin", False),
    ("StdinOnce", False),
    ("Env", "null"),
    ("Cmd", "null"),
    ("Healthcheck", None),
    ("ArgsEscaped", None),
    ("Image", ""),
    ("Volumes", "null"),
    ("WorkingDir", ""),
    ("Entrypoint", "null"),
    ("NetworkDisabled", None),
    ("OnBuild", "null"),
    ("Labels", "null"),
    ("StopSignal", None),
    ("StopTimeout", None),
    ("Shell", None),
)

# BuildKit's image config: OCI's ImageConfig fields, then Docker's extensions.
_BUILDKIT_CONFIG_ORDER = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
)

_HEALTHCHECK_ORDER = ("Test", "Interval", "Timeout", "StartPeriod", "StartInterval", "Retries")


def _healthcheck(value: dict[str, Any]) -> dict[str, Any]:
    return {key: value[key] for key in _HEALTHCHECK_ORDER if value.get(key)}


def docker_container_config(values: dict[str, Any] | None) -> dict[str, Any]:
    """Marshal ``values`` the way Go marshals Docker's ``container.Config`` struct."""
    values = values or {}
    result: dict[str, Any] = {}
    for key, zero in _CONTAINER_CONFIG_FIELDS:
        value = values.get(key)
        if value is None:
            if zero is None:  # omitempty
                continue
            value = None if zero == "null" else zero
        if key == "Healthcheck" and value is not None:
            value = _healthcheck(value)
        result[key] = value
    return result


def buildkit_image_config(values: dict[str, Any]) -> dict[str, Any]:
    """Marshal ``values`` as BuildKit's DockerOCIImageConfig (``OnBuild`` is always present)."""
    result: dict[str, Any] = {}
    for key in _BUILDKIT_CONFIG_ORDER:
        if key == "OnBuild":
            result[key] = values.get(key)
        elif values.get(key) is not None:
            value = values[key]
            result[key] = _healthcheck(value) if key == "Healthcheck" else value
    return result


def history_entries(recipe: Recipe, *, buildkit: bool) -> list[dict[str, Any]]:
    """History in Go field order: created, author, created_by, comment, empty_layer."""
    entries: list[dict[str, Any]] = []
    for step in recipe.steps:
        entry: dict[str, Any] = {"created": step.when.rfc3339()}
        if buildkit and not step.from_base:
            entry["created_by"] = step.buildkit
            entry["comment"] = "buildkit.dockerfile.v0"
        else:
            entry["created_by"] = step.classic
        if step.layer is None:
            entry["empty_layer"] = True
        entries.append(entry)
    return entries


def classic_config(recipe: Recipe, diff_ids: Sequence[str] | None = None) -> bytes:
    """The config the classic builder (Docker <= 24, DOCKER_BUILDKIT=0) writes.

    Docker's Image.MarshalJSON round-trips through a map, so top-level keys come out sorted
    while nested objects keep struct order. ``container_config`` is the last build container's
    config, whose Cmd shows the last instruction.
    """
    last = recipe.steps[-1]
    parent_image = "sha256:" + fake_hex(f"intermediate-image:{last.classic}")
    runtime = dict(recipe.runtime, Image=parent_image)
    build_container = dict(
        runtime, Cmd=["/bin/sh", "-c", "#(nop) ", last.classic.removeprefix(nop(""))]
    )
    top: dict[str, Any] = {
        "architecture": recipe.architecture,
        "config": docker_container_config(runtime),
        "container": fake_hex(f"build-container:{last.classic}"),
        "container_config": docker_container_config(build_container),
        "created": recipe.created.rfc3339(),
        "docker_version": "24.0.7",
        "history": history_entries(recipe, buildkit=False),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids or recipe.diff_ids)},
    }
    if recipe.author:
        top["author"] = recipe.author
    if recipe.variant:
        top["variant"] = recipe.variant
    return go_json(sorted_map(top))


def buildkit_config(recipe: Recipe, diff_ids: Sequence[str] | None = None) -> bytes:
    """The config BuildKit writes (top-level keys sorted, ImageConfig in struct order)."""
    top: dict[str, Any] = {
        "architecture": recipe.architecture,
        "config": buildkit_image_config(recipe.runtime),
        "created": recipe.created.rfc3339(),
        "history": history_entries(recipe, buildkit=True),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids or recipe.diff_ids)},
    }
    if recipe.author:
        top["author"] = recipe.author
    if recipe.variant:
        top["variant"] = recipe.variant
    return go_json(sorted_map(top))


# --------------------------------------------------------------------------------------------
# Docker's legacy v1 layer JSON and IDs (image/v1 CreateID and tarexport/save.go)
# --------------------------------------------------------------------------------------------


def v1_image(config: dict[str, Any] | None) -> dict[str, Any]:
    """Docker's V1Image for a layer, in struct order, without id/parent.

    ``config`` is the image config for the top layer, None for the others (Docker gives those
    an empty V1Image created at the Unix epoch).
    """
    if config is None:
        return {"created": EPOCH_TEXT, "container_config": docker_container_config(None)}
    v1: dict[str, Any] = {}
    if config.get("comment"):
        v1["comment"] = config["comment"]
    v1["created"] = config["created"]
    if config.get("container"):
        v1["container"] = config["container"]
    v1["container_config"] = docker_container_config(config.get("container_config"))
    for key in ("docker_version", "author"):
        if config.get(key):
            v1[key] = config[key]
    if config.get("config") is not None:
        v1["config"] = docker_container_config(config["config"])
    for key in ("architecture", "variant", "os"):
        if config.get(key):
            v1[key] = config[key]
    return v1


def v1_create_id(v1: dict[str, Any], chain_id: str, parent: str | None) -> str:
    """image/v1.CreateID: sha256 of the V1Image JSON with layer_id and parent added, keys sorted."""
    with_ids = dict(v1, layer_id=chain_id)
    if parent:
        with_ids["parent"] = parent
    return sha256_digest(go_json(sorted_map(with_ids)))


@dataclass(frozen=True)
class V1Layer:
    """One layer as ``docker save`` names it: v1 ID and its ``json`` file."""

    v1_id: str  # hex
    json: bytes


def v1_layers(config_bytes: bytes) -> list[V1Layer]:
    """Compute each layer's v1 ID and legacy JSON from the config, as tarexport/save.go does.

    The v1 JSON gets ``id`` and ``parent`` (hex) in front and ``os`` from the image; only the
    top layer carries the image's V1Image fields.
    """
    config = json.loads(config_bytes)
    diff_ids: list[str] = config["rootfs"]["diff_ids"]
    chains = chain_ids(diff_ids)
    parent: str | None = None
    result: list[V1Layer] = []
    for index, chain in enumerate(chains):
        is_top = index == len(chains) - 1
        v1 = v1_image(config if is_top else None)
        v1_id = v1_create_id(v1, chain, parent)
        ordered: dict[str, Any] = {"id": hex_of(v1_id)}
        if parent:
            ordered["parent"] = hex_of(parent)
        ordered.update(v1)
        # Docker sets OS after CreateID; it is the struct's last field, so it goes at the end
        # (for the top layer it is already there and keeps its place).
        ordered["os"] = config["os"]
        result.append(V1Layer(hex_of(v1_id), go_json(ordered)))
        parent = v1_id
    return result


# --------------------------------------------------------------------------------------------
# Blobs, descriptors, manifests, indexes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """Bytes stored under ``blobs/sha256/<hex>`` and the descriptor that names them."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def path(self) -> str:
        return f"blobs/sha256/{hex_of(self.digest)}"

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        """OCI descriptor in Go field order: mediaType, digest, size, annotations, platform."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


def compress_layer(layer: Layer, compression: str) -> Blob:
    if compression == "gzip":
        return Blob(OCI_LAYER_GZIP, gzip_compress(layer.tar))
    if compression == "zstd":
        return Blob(OCI_LAYER_ZSTD, zstd_compress(layer.tar))
    return Blob(OCI_LAYER, layer.tar)


def oci_manifest(
    config: Blob,
    layers: Sequence[Blob],
    *,
    indent: bool,
    config_platform: dict[str, str] | None = None,
    declared: dict[int, dict[str, Any]] | None = None,
) -> Blob:
    """An OCI image manifest.

    ``config_platform`` imitates Docker 25, which puts the platform on the config descriptor.
    ``declared`` overrides fields of chosen layer descriptors (used to plant defects).
    """
    config_descriptor = config.descriptor()
    if config_platform:
        config_descriptor["platform"] = config_platform
    layer_descriptors = []
    for index, layer in enumerate(layers):
        descriptor = layer.descriptor()
        descriptor.update((declared or {}).get(index, {}))
        layer_descriptors.append(descriptor)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_descriptor,
        "layers": layer_descriptors,
    }
    return Blob(OCI_MANIFEST, go_json(manifest, indent=indent))


def oci_index(manifests: Sequence[dict[str, Any]], *, indent: bool = False) -> bytes:
    return go_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(manifests)}, indent=indent
    )


# --------------------------------------------------------------------------------------------
# Expected values (expected.json)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# docker save, Docker <= 24 (legacy layout)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedImage:
    """One image as ``docker save`` stores it.

    ``config_bytes`` is stored as ``<config_name>.json``; normally the name is the config's own
    sha256, ``config_name`` overrides it. ``layer_tars`` are stored as given (bottom to top).
    """

    config_bytes: bytes
    layer_tars: tuple[bytes, ...]
    repo_tags: tuple[str, ...]
    config_name: str | None = None
    v1_source: bytes | None = None  # config the v1 JSON is derived from, if not config_bytes

    @property
    def stored_name(self) -> str:
        return self.config_name or hex_of(sha256_digest(self.config_bytes))

    @property
    def created_seconds(self) -> int:
        moment = json.loads(self.config_bytes)["created"]
        return int(datetime.fromisoformat(moment[:19] + "+00:00").timestamp())


def docker_save_legacy(images: Sequence[SavedImage], path: str) -> tuple[bytes, list[Expected]]:
    """``docker save`` as Docker 1.10 to 24 wrote it.

    Per layer a directory named by its v1 ID with ``VERSION`` ("1.0"), ``json`` and
    ``layer.tar``; layers shared between images are stored once. ``manifest.json`` and
    ``repositories`` are written with json.Encoder (so end in a line feed) at mtime 0; the rest
    carries the image's creation time.
    """
    entries: list[TarEntry] = []
    saved: set[str] = set()
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    expected: list[Expected] = []
    for number, image in enumerate(images, start=1):
        created = image.created_seconds
        v1 = v1_layers(image.v1_source or image.config_bytes)
        if len(v1) != len(image.layer_tars):
            raise ValueError("config diff_ids and layer count differ")
        entries.append(
            TarEntry(f"{image.stored_name}.json", data=image.config_bytes, mtime=created)
        )
        for layer, tar in zip(v1, image.layer_tars, strict=True):
            if layer.v1_id in saved:
                continue
            saved.add(layer.v1_id)
            entries += [
                directory(layer.v1_id, created),
                TarEntry(f"{layer.v1_id}/VERSION", data=b"1.0", mtime=created),
                TarEntry(f"{layer.v1_id}/json", data=layer.json, mtime=created),
                TarEntry(f"{layer.v1_id}/layer.tar", data=tar, mtime=created),
            ]
        layer_paths = [f"{layer.v1_id}/layer.tar" for layer in v1]
        manifest.append(
            {
                "Config": f"{image.stored_name}.json",
                "RepoTags": list(image.repo_tags),
                "Layers": layer_paths,
            }
        )
        for tag in image.repo_tags:
            repository, _, name = tag.rpartition(":")
            repositories.setdefault(repository, {})[name] = v1[-1].v1_id
        diff_ids = config_diff_ids(image.config_bytes)
        expected.append(
            Expected(
                path=path,
                format="docker-archive",
                selector=str(number),
                repo_tags=list(image.repo_tags),
                ref_name=None,
                platform=platform_of_config(image.config_bytes),
                config_path=f"{image.stored_name}.json",
                config_bytes=image.config_bytes,
                config_media_type=DOCKER_CONFIG,
                manifest_digest=None,
                manifest_path=None,
                manifest_media_type=None,
                layers=[
                    layer_record(
                        index,
                        layer_path,
                        DOCKER_LAYER,
                        tar,
                        digest=diff_id,
                        size=len(tar),
                        diff_id=diff_id,
                    )
                    for index, (layer_path, tar, diff_id) in enumerate(
                        zip(layer_paths, image.layer_tars, diff_ids, strict=True)
                    )
                ],
            )
        )
    repositories = {repo: sorted_map(tags) for repo, tags in sorted(repositories.items())}
    entries.append(TarEntry("manifest.json", data=go_json(manifest, newline=True)))
    entries.append(TarEntry("repositories", data=go_json(repositories, newline=True)))
    return build_tar(entries), expected


def platform_of_config(config_bytes: bytes) -> str:
    config = json.loads(config_bytes)
    text = f"{config['os']}/{config['architecture']}"
    return f"{text}/{config['variant']}" if config.get("variant") else text


# --------------------------------------------------------------------------------------------
# docker save, Docker 25+ (OCI layout + manifest.json)
# --------------------------------------------------------------------------------------------


def docker_save_v25(recipe: Recipe, tag: str, path: str) -> tuple[bytes, list[Expected]]:
    """``docker save`` as Docker 25 writes it.

    Uncompressed layers stored as OCI blobs under their DiffID, the config blob, the OCI
    manifest (compact JSON, platform on the config descriptor), each layer's legacy v1 JSON as
    an otherwise unreferenced blob, ``index.json`` with one descriptor per tag, and the
    Docker views: ``manifest.json`` (with ``LayerSources``) and ``repositories``, which since
    Docker 25 maps the tag to the top layer's DiffID hex, no longer a v1 ID.
    """
    config = Blob(OCI_CONFIG, buildkit_config(recipe))
    layers = [compress_layer(layer, "none") for layer in recipe.layers]
    manifest = oci_manifest(config, layers, indent=False, config_platform=recipe.platform)
    repository, _, name = tag.rpartition(":")
    created = recipe.created.seconds

    entries = [
        directory("blobs", created),
        directory("blobs/sha256", T_SAVE),
        TarEntry(config.path, data=config.data, mtime=created),
        TarEntry(manifest.path, data=manifest.data, mtime=0),
    ]
    for layer in layers:
        entries.append(TarEntry(layer.path, data=layer.data, mtime=created))
    for v1 in v1_layers(config.data):
        v1_path = f"blobs/sha256/{hex_of(sha256_digest(v1.json))}"
        entries.append(TarEntry(v1_path, data=v1.json, mtime=created))

    index = oci_index(
        [
            manifest.descriptor(
                annotations=sorted_map(
                    {ANNOTATION_IMAGE_NAME: f"docker.io/{tag}", ANNOTATION_REF_NAME: name}
                )
            )
        ]
    )
    layer_sources = sorted_map(
        {
            layer.digest: {
                "mediaType": layer.media_type,
                "size": layer.size,
                "digest": layer.digest,
            }
            for layer in layers
        }
    )
    docker_manifest = [
        {
            "Config": config.path,
            "RepoTags": [tag],
            "Layers": [layer.path for layer in layers],
            "LayerSources": layer_sources,
        }
    ]
    repositories = {repository: {name: hex_of(recipe.diff_ids[-1])}}
    entries += [
        TarEntry("index.json", data=index, mtime=T_SAVE),
        TarEntry("manifest.json", data=go_json(docker_manifest, newline=True)),
        TarEntry("oci-layout", data=b'{"imageLayoutVersion": "1.0.0"}'),
        TarEntry("repositories", data=go_json(repositories, newline=True)),
    ]
    expected = Expected(
        path=path,
        format="docker-archive-oci",
        selector="1",
        repo_tags=[tag],
        ref_name=name,
        platform=platform_text(recipe),
        config_path=config.path,
        config_bytes=config.data,
        config_media_type=OCI_CONFIG,
        manifest_digest=manifest.digest,
        manifest_path=manifest.path,
        manifest_media_type=OCI_MANIFEST,
        layers=oci_layer_records(layers, recipe.diff_ids),
    )
    return build_tar(entries), [expected]


def oci_layer_records(layers: Sequence[Blob], diff_ids: Sequence[str]) -> list[dict[str, Any]]:
    return [
        layer_record(
            index,
            blob.path,
            blob.media_type,
            blob.data,
            digest=blob.digest,
            size=blob.size,
            diff_id=diff_id,
        )
        for index, (blob, diff_id) in enumerate(zip(layers, diff_ids, strict=True))
    ]


# --------------------------------------------------------------------------------------------
# OCI image layouts (BuildKit's OCI exporter)
# --------------------------------------------------------------------------------------------

BUILDKIT_OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


@dataclass
class OciLayout:
    """The files of an OCI image layout, relative to its root."""

    files: dict[str, bytes] = field(default_factory=dict)

    def add(self, blob: Blob) -> None:
        self.files[blob.path] = blob.data

    def finish(self, index: bytes) -> None:
        self.files["index.json"] = index
        self.files["oci-layout"] = BUILDKIT_OCI_LAYOUT

    def tar(self) -> bytes:
        """The layout as BuildKit's ``type=oci`` tar: mtime 0, blobs and oci-layout read-only."""
        entries = [directory("blobs", 0), directory("blobs/sha256", 0)]
        for name, data in self.files.items():
            mode = 0o644 if name == "index.json" else 0o444
            entries.append(TarEntry(name, data=data, mode=mode))
        return build_tar(entries)


def buildkit_index_descriptor(manifest: Blob, tag: str, created: Instant) -> dict[str, Any]:
    """index.json's descriptor for an image exported with ``name=<tag>``."""
    _, _, name = tag.rpartition(":")
    annotations = sorted_map(
        {
            ANNOTATION_IMAGE_NAME: f"docker.io/{tag}",
            ANNOTATION_CREATED: Instant(created.seconds).rfc3339(),
            ANNOTATION_REF_NAME: name,
        }
    )
    return manifest.descriptor(annotations=annotations)


@dataclass
class OciImage:
    """Blobs of one single-platform OCI image."""

    recipe: Recipe
    config: Blob
    layers: list[Blob]
    manifest: Blob


def oci_image(
    recipe: Recipe,
    compressions: Sequence[str],
    *,
    diff_ids: Sequence[str] | None = None,
    declared: dict[int, dict[str, Any]] | None = None,
    stored_layers: Sequence[Blob] | None = None,
) -> OciImage:
    """Config, layer blobs and a BuildKit-style (indented) manifest for ``recipe``."""
    config = Blob(OCI_CONFIG, buildkit_config(recipe, diff_ids))
    layers = (
        list(stored_layers)
        if stored_layers
        else [
            compress_layer(layer, compression)
            for layer, compression in zip(recipe.layers, compressions, strict=True)
        ]
    )
    manifest = oci_manifest(config, layers, indent=True, declared=declared)
    return OciImage(recipe, config, layers, manifest)


def single_image_layout(image: OciImage, tag: str) -> OciLayout:
    layout = OciLayout()
    for blob in (image.manifest, image.config, *image.layers):
        layout.add(blob)
    descriptor = buildkit_index_descriptor(image.manifest, tag, image.recipe.created)
    descriptor["platform"] = image.recipe.platform
    layout.finish(oci_index([descriptor]))
    return layout


def oci_expected(
    image: OciImage,
    path: str,
    fmt: str,
    ref_name: str,
    *,
    selector: str = "1",
) -> Expected:
    """Expected values of one image of an OCI layout, from its manifest's declarations."""
    manifest = json.loads(image.manifest.data)
    diff_ids = config_diff_ids(image.config.data)
    layers = []
    for index, (descriptor, blob) in enumerate(zip(manifest["layers"], image.layers, strict=True)):
        path_in = f"blobs/sha256/{hex_of(descriptor['digest'])}"
        layers.append(
            layer_record(
                index,
                path_in,
                descriptor["mediaType"],
                blob.data,
                digest=descriptor["digest"],
                size=descriptor["size"],
                diff_id=diff_ids[index],
            )
        )
    return Expected(
        path=path,
        format=fmt,
        selector=selector,
        repo_tags=[],
        ref_name=ref_name,
        platform=platform_text(image.recipe),
        config_path=image.config.path,
        config_bytes=image.config.data,
        config_media_type=OCI_CONFIG,
        manifest_digest=image.manifest.digest,
        manifest_path=image.manifest.path,
        manifest_media_type=OCI_MANIFEST,
        layers=layers,
    )


def multiplatform_layout(path: str) -> tuple[OciLayout, list[Expected]]:
    """index.json -> one image index -> three platform manifests sharing the base layer blob."""
    layout = OciLayout()
    images = []
    for architecture, variant in MULTI_PLATFORMS:
        image = oci_image(multiplatform_recipe(architecture, variant), ["gzip", "gzip"])
        images.append(image)
        for blob in (image.manifest, image.config, *image.layers):
            layout.add(blob)
    nested = Blob(
        OCI_INDEX,
        oci_index(
            [image.manifest.descriptor(platform=image.recipe.platform) for image in images],
            indent=True,
        ),
    )
    layout.add(nested)
    tag = f"{REPOSITORY}:multi"
    layout.finish(oci_index([buildkit_index_descriptor(nested, tag, images[0].recipe.created)]))
    expected = [
        oci_expected(image, path, "oci-layout", "multi", selector=str(number))
        for number, image in enumerate(images, start=1)
    ]
    return layout, expected


# --------------------------------------------------------------------------------------------
# Tampered copies: one defect each
# --------------------------------------------------------------------------------------------


def flip_byte(data: bytes, marker: bytes) -> bytes:
    """Change one byte of ``data`` (the first byte of the only occurrence of ``marker``)."""
    if data.count(marker) != 1:
        raise ValueError(f"marker {marker!r} must occur exactly once")
    offset = data.index(marker)
    return data[:offset] + bytes([data[offset] ^ 0x20]) + data[offset + 1 :]


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    if data.count(old) != 1:
        raise ValueError(f"{old!r} must occur exactly once")
    return data.replace(old, new)


def tampered_legacy(recipe: Recipe, config: bytes) -> list[tuple[str, bytes, list[Expected]]]:
    """The two docker-archive variants: a flipped byte in a layer, an edited config."""
    tag = (f"{REPOSITORY}:legacy",)
    layers = tuple(layer.tar for layer in recipe.layers)
    results = []

    # 1. One byte of L1's /etc/motd changes ("Welcome" -> "welcome"): same size, the tar
    #    stays valid, only the layer's sha256 no longer matches its DiffID.
    flipped = list(layers)
    flipped[1] = flip_byte(flipped[1], MOTD)
    path = "tampered/layer-byte-flipped.tar"
    data, expected = docker_save_legacy([SavedImage(config, tuple(flipped), tag)], path)
    expected[0].defects = [
        defect("diff-id", 1, recipe.diff_ids[1], sha256_digest(flipped[1])),
    ]
    expected[0].description = "one byte of layer 1's /etc/motd flipped; size unchanged"
    results.append((path, data, expected))

    # 2. The config is edited after the fact (a history line rewritten), but keeps the file
    #    name, so its sha256 no longer matches the image ID the archive names it by. History
    #    is not copied into the v1 JSON, so nothing else disagrees.
    edited = replace_once(config, b"rm -f /usr/share/doc/dockscope/README", b"true")
    path = "tampered/config-edited.tar"
    original_name = hex_of(sha256_digest(config))
    image = SavedImage(edited, layers, tag, config_name=original_name, v1_source=config)
    data, expected = docker_save_legacy([image], path)
    expected[0].defects = [
        defect("image-id", None, f"sha256:{original_name}", sha256_digest(edited)),
    ]
    expected[
        0
    ].description = (
        "config edited (a history entry rewritten) but still stored as <original-id>.json"
    )
    results.append((path, data, expected))
    return results


def defect(
    check: str, layer: int | None, expected: str | None, actual: str | None
) -> dict[str, Any]:
    """A defect as dockscope verify reports it: check name, layer index, expected, actual."""
    return {"check": check, "layer": layer, "expected": expected, "actual": actual}


def tampered_oci(recipe: Recipe) -> list[tuple[str, OciLayout | bytes, list[Expected]]]:
    """OCI variants of the gzip ``oci-layout`` image, each with one planted defect."""
    tag = f"{REPOSITORY}:latest"
    gzip_all = ["gzip"] * len(recipe.layers)
    results: list[tuple[str, OciLayout | bytes, list[Expected]]] = []

    def add(
        path: str,
        image: OciImage,
        defects: list[dict[str, Any]],
        description: str,
        *,
        as_tar: bool = False,
        mutate: Callable[[OciLayout], object] | None = None,
    ) -> None:
        layout = single_image_layout(image, tag)
        if mutate is not None:
            mutate(layout)
        expected = oci_expected(image, path, "oci-archive" if as_tar else "oci-layout", "latest")
        expected.defects = defects
        expected.description = description
        expected.based_on = "oci-layout"
        results.append((path, layout.tar() if as_tar else layout, [expected]))

    # diff-id-mismatch.tar: rootfs.diff_ids[1] holds the *compressed* digest of layer 1 (a
    # classic tool bug). The config digest, manifest and index are recomputed around it, so
    # every blob checks out and only the DiffID comparison fails.
    intact = oci_image(recipe, gzip_all)
    wrong = list(recipe.diff_ids)
    wrong[1] = intact.layers[1].digest
    image = oci_image(recipe, gzip_all, diff_ids=wrong)
    add(
        "tampered/diff-id-mismatch.tar",
        image,
        [defect("diff-id", 1, wrong[1], recipe.diff_ids[1])],
        "config's rootfs.diff_ids[1] is the gzip blob's digest instead of the tar's",
        as_tar=True,
    )

    # missing-blob/: layer 2's blob file deleted; everything that names it is intact.
    image = oci_image(recipe, gzip_all)
    missing = image.layers[2]
    add(
        "tampered/missing-blob",
        image,
        [defect("blob-exists", 2, missing.digest, None)],
        "layer 2's blob is missing from blobs/sha256",
        mutate=lambda layout: layout.files.pop(missing.path),
    )

    # wrong-size/: the manifest declares layer 1 one byte shorter than it is. The manifest's
    # digest (and index.json) are recomputed, so only the size check fails.
    intact_size = intact.layers[1].size
    image = oci_image(recipe, gzip_all, declared={1: {"size": intact_size - 1}})
    add(
        "tampered/wrong-size",
        image,
        [defect("blob-size", 1, str(intact_size - 1), str(intact_size))],
        "manifest declares layer 1's size one byte short",
    )

    # mediatype-mismatch/: layer 3 is stored uncompressed but declared +gzip. Its digest and
    # size describe the stored (uncompressed) bytes, so only the media type disagrees.
    stored = [*intact.layers[:3], Blob(OCI_LAYER_GZIP, recipe.layers[3].tar)]
    image = oci_image(recipe, gzip_all, stored_layers=stored)
    add(
        "tampered/mediatype-mismatch",
        image,
        [defect("media-type", 3, "gzip", "none")],
        "layer 3 is an uncompressed tar declared as tar+gzip",
    )

    # trailing-bytes/: 512 zero bytes appended after layer 1's gzip stream. Decompression still
    # yields the right tar (so the DiffID matches), but the blob is no longer what its
    # descriptor names: size and digest checks both fail, and only a reader that hashes the
    # blob to EOF notices.
    image = oci_image(recipe, gzip_all)
    padded = image.layers[1].data + b"\0" * 512

    def append_padding(layout: OciLayout) -> None:
        layout.files[image.layers[1].path] = padded

    add(
        "tampered/trailing-bytes",
        image,
        [
            defect("blob-size", 1, str(image.layers[1].size), str(len(padded))),
            defect("blob-digest", 1, image.layers[1].digest, sha256_digest(padded)),
        ],
        "512 zero bytes appended to layer 1's gzip blob after the end of the gzip stream",
        mutate=append_padding,
    )
    return results


# --------------------------------------------------------------------------------------------
# A runnable image: the host's static busybox (``--busybox OUT.tar``)
# --------------------------------------------------------------------------------------------

# Not one of the committed samples: the binary alone is about 2 MB and belongs to the host's
# Debian package (busybox-static), so ``make`` builds ``sample_images/busybox.tar`` when it is
# missing. Same binary in, same bytes out: every timestamp is fixed, the applet list comes
# from the binary itself, and the layer is stored uncompressed (as ``docker save`` stores it),
# so not even zlib's version can change the result.

BUSYBOX_BINARY = Path("/bin/busybox")
BUSYBOX_TAG = "dockscope/busybox:latest"
T_BUSYBOX_ADD = Instant.at("2024-01-02T00:00:00", 120000000)
T_BUSYBOX_CMD = Instant.at("2024-01-02T00:00:00", 240000000)
UNPRIVILEGED_USER = "user"

BUSYBOX_PASSWD = b"""root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
user:x:1000:1000:Unprivileged user:/home/user:/bin/sh
"""

BUSYBOX_GROUP = b"""root:x:0:
nobody:x:65534:
user:x:1000:
"""

# e_machine of the ELF header → GOARCH, the names image configs use
_ELF_ARCHITECTURES = {3: "386", 40: "arm", 62: "amd64", 183: "arm64", 243: "riscv64", 22: "s390x"}


def elf_architecture(binary: bytes) -> str:
    """The image architecture a static ELF executable runs on, from its header."""
    if binary[:4] != b"\x7fELF":
        raise ValueError("not an ELF executable")
    byteorder = "little" if binary[5] == 1 else "big"
    machine = int.from_bytes(binary[18:20], byteorder)
    if machine == 21 and binary[4] == 2:  # EM_PPC64
        return "ppc64le" if byteorder == "little" else "ppc64"
    if machine not in _ELF_ARCHITECTURES:
        raise ValueError(f"unknown ELF machine {machine}")
    return _ELF_ARCHITECTURES[machine]


def busybox_applets(binary: Path) -> list[str]:
    """Where each applet lives (``bin/sh``, ``usr/bin/awk``…), as the binary itself says."""
    import subprocess

    listed = subprocess.run(
        [str(binary), "--list-full"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    return sorted({line.strip().lstrip("/") for line in listed.splitlines() if line.strip()})


def busybox_layer(binary: bytes, applets: Sequence[str]) -> list[TarEntry]:
    """The whole root filesystem: busybox, a symlink per applet, users, mount points."""
    t = T_BUSYBOX_ADD.seconds
    entries = [
        regular("bin/busybox", binary, t, mode=0o755),
        directory("dev", t),
        directory("etc", t),
        regular("etc/group", BUSYBOX_GROUP, t),
        regular("etc/passwd", BUSYBOX_PASSWD, t),
        directory("home", t),
        directory(f"home/{UNPRIVILEGED_USER}", t, owner=1000),
        directory("proc", t, mode=0o555),
        directory("root", t, mode=0o700),
        directory("sys", t, mode=0o555),
        directory("tmp", t, mode=0o1777),
        directory("usr", t),
        directory("var", t),
        directory("var/spool", t),
        directory("var/www", t),
    ]
    names = {entry.name for entry in entries}
    for applet in applets:
        if applet in names or applet == "bin/busybox":
            continue
        parent = applet.rpartition("/")[0]
        while parent and parent not in names:
            entries.append(directory(parent, t))
            names.add(parent)
            parent = parent.rpartition("/")[0]
        entries.append(TarEntry(applet, SYMLINK, mode=0o777, mtime=t, linkname="/bin/busybox"))
        names.add(applet)
    return entries


def busybox_recipe(
    binary: bytes, applets: Sequence[str], runtime: dict[str, Any] | None = None
) -> Recipe:
    """Built like docker's official busybox image: ``ADD rootfs.tar /`` and ``CMD ["sh"]``.

    ``runtime`` replaces the config's Env/Cmd (tests derive images with an Entrypoint, a
    WorkingDir or a User from it)."""
    entries = busybox_layer(binary, applets)
    add = f"/bin/sh -c #(nop) ADD file:{content_hash(entries)} in / "
    cmd = nop('CMD ["sh"]')
    steps = (
        Step(T_BUSYBOX_ADD, add, add, make_layer(entries), from_base=True),
        Step(T_BUSYBOX_CMD, cmd, cmd, from_base=True),
    )
    runtime = runtime if runtime is not None else {"Env": [DEFAULT_PATH_ENV], "Cmd": ["sh"]}
    return Recipe(steps, runtime, architecture=elf_architecture(binary))


def make_busybox(
    out: Path,
    binary_path: Path = BUSYBOX_BINARY,
    *,
    runtime: dict[str, Any] | None = None,
    tag: str = BUSYBOX_TAG,
) -> int:
    """Write the busybox image to ``out`` as ``docker save`` (Docker 25+) would; its size."""
    binary = binary_path.read_bytes()
    recipe = busybox_recipe(binary, busybox_applets(binary_path), runtime)
    data, _ = docker_save_v25(recipe, tag, out.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_bytes(data)
    temporary.replace(out)  # never a half-written image where make looks for one
    return len(data)


# --------------------------------------------------------------------------------------------
# Writing everything
# --------------------------------------------------------------------------------------------


class Output:
    """Writes files under the output folder and keeps the list of expectations."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.expected: list[Expected] = []

    def clean(self) -> None:
        """Remove what a previous run generated (only the names this script owns)."""
        for name in OUTPUT_NAMES:
            target = self.root / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    def file(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def layout(self, path: str, layout: OciLayout) -> None:
        for name, data in sorted(layout.files.items()):
            self.file(f"{path}/{name}", data)

    def write_expected(self) -> None:
        document = {
            "comment": (
                "Generated by sample_images/make_samples.py; see sample_images/README.md. "
                "Values are what each image declares; image_id is sha256 of the stored config."
            ),
            "images": [expected.to_json() for expected in self.expected],
        }
        text = json.dumps(document, indent=2) + "\n"
        self.file("expected.json", text.encode())


def generate(root: Path) -> Output:
    """Write every sample image under ``root``; return the Output (for its expectations)."""
    out = Output(root)
    root.mkdir(parents=True, exist_ok=True)
    out.clean()

    sample = sample_recipe()
    other = other_recipe()
    legacy_config = classic_config(sample)
    other_config = classic_config(other)
    sample_tars = tuple(layer.tar for layer in sample.layers)

    # 1. docker save, legacy layout: one image, then two images sharing three layers.
    path = "docker-archive-legacy.tar"
    data, expected = docker_save_legacy(
        [SavedImage(legacy_config, sample_tars, (f"{REPOSITORY}:legacy",))], path
    )
    out.file(path, data)
    out.expected += expected

    path = "docker-archive-multi.tar"
    data, expected = docker_save_legacy(
        [
            SavedImage(
                legacy_config, sample_tars, (f"{REPOSITORY}:legacy", f"{REPOSITORY}:latest")
            ),
            SavedImage(
                other_config, tuple(layer.tar for layer in other.layers), (f"{REPOSITORY}:other",)
            ),
        ],
        path,
    )
    out.file(path, data)
    out.expected += expected

    # 2. docker save, Docker 25+.
    path = "docker-archive-v25.tar"
    data, expected = docker_save_v25(sample, f"{REPOSITORY}:v25", path)
    out.file(path, data)
    out.expected += expected

    # 3. OCI layout directory, gzip layers.
    gzip_image = oci_image(sample, ["gzip"] * 4)
    out.layout("oci-layout", single_image_layout(gzip_image, f"{REPOSITORY}:latest"))
    out.expected.append(oci_expected(gzip_image, "oci-layout", "oci-layout", "latest"))

    # 4. OCI archive: the base layer as pulled (gzip), the layers BuildKit built as zstd.
    zstd_image = oci_image(sample, ["gzip", "zstd", "zstd", "zstd"])
    path = "oci-archive-zstd.tar"
    out.file(path, single_image_layout(zstd_image, f"{REPOSITORY}:zstd").tar())
    out.expected.append(oci_expected(zstd_image, path, "oci-archive", "zstd"))

    # 5. Multi-platform OCI layout.
    layout, expected = multiplatform_layout("oci-multiplatform")
    out.layout("oci-multiplatform", layout)
    out.expected += expected

    # 6. Tampered copies.
    for path, data, expected in tampered_legacy(sample, legacy_config):
        for item in expected:
            item.based_on = "docker-archive-legacy.tar"
        out.file(path, data)
        out.expected += expected
    for path, content, expected in tampered_oci(sample):
        if isinstance(content, OciLayout):
            out.layout(path, content)
        else:
            out.file(path, content)
        out.expected += expected

    # 7. expected.json
    out.write_expected()
    return out


def total_size(root: Path) -> int:
    return sum(
        (root / name).stat().st_size if (root / name).is_file() else directory_size(root / name)
        for name in OUTPUT_NAMES
        if (root / name).exists()
    )


def directory_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output folder (default: the folder of this script, sample_images/)",
    )
    parser.add_argument(
        "--busybox",
        type=Path,
        metavar="OUT.tar",
        help="instead, write a runnable busybox image (not a committed sample) to OUT.tar",
    )
    parser.add_argument(
        "--busybox-binary",
        type=Path,
        default=BUSYBOX_BINARY,
        metavar="PATH",
        help="a static busybox executable (default: /bin/busybox, Debian's busybox-static)",
    )
    args = parser.parse_args(argv)
    if args.busybox is not None:
        if not args.busybox_binary.is_file():
            parser.error(f"{args.busybox_binary} is missing: apt-get install busybox-static")
        size = make_busybox(args.busybox, args.busybox_binary)
        print(f"wrote {args.busybox} ({size} bytes)", file=sys.stderr)
        return 0
    out = generate(args.out)
    print(
        f"wrote {len(out.expected)} images to {args.out} ({total_size(args.out)} bytes)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
