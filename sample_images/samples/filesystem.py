"""The samples' file system: four layers of a tiny distribution, plus variants, and the
build timeline their timestamps come from."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from samples.basics import Instant, fake_hex, pseudo_random, sha256_digest
from samples.tarbuild import DIR, FILE, HARDLINK, SYMLINK, TarEntry, build_tar, walk_key

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
