"""Where an image lives, written as skopeo writes it: ``TRANSPORT:DETAILS`` or a plain path.

- ``oci:DIR[:REF]`` — an OCI layout directory, REF its ``org.opencontainers.image.ref.name``;
- ``oci-archive:FILE[:REF]`` — the same in a tar;
- ``docker-archive:FILE[:NAME:TAG|@N]`` — a ``docker save`` tar, an image chosen by tag or by
  skopeo's 0-based position in ``manifest.json``;
- ``dir:DIR`` — skopeo's directory transport (``version``, ``manifest.json``, blobs by hex);
- ``containers-storage:[STORE]NAME`` — a local Podman/Buildah store read offline, STORE as
  skopeo writes it: ``[driver@graphroot+runroot:options]`` (graph root by default
  ``/var/lib/containers/storage``);
- ``docker://HOST[:PORT]/NAME[:TAG|@DIGEST]`` — a registry.

The rule for plain paths: text that starts with a known transport name and a colon is that
transport (skopeo's syntax wins); anything else is a path, colons and all. A file really
named ``oci:x`` is written ``./oci:x`` (or by its absolute path). Text that starts like a
transport name (``oci-archiv:x``, ``dokcer://host/app``) and names nothing that exists is a
mistyped transport, a usage error naming the closest known one; when it exists, it is the
path. As in skopeo, DIR and FILE end at the first colon. A ``Path`` handed in by library
code is always a path; the command line keeps the text as typed (``WrittenPath``), so
``./oci:x`` stays a path there too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PosixPath

from inspect_tool.errors import UsageError

DEFAULT_GRAPH_ROOT = Path("/var/lib/containers/storage")


class Transport(StrEnum):
    PATH = "path"
    OCI = "oci"
    OCI_ARCHIVE = "oci-archive"
    DOCKER_ARCHIVE = "docker-archive"
    DIR = "dir"
    CONTAINERS_STORAGE = "containers-storage"
    DOCKER = "docker"


TRANSPORTS = tuple(t for t in Transport if t is not Transport.PATH)
# How each is written, in the order messages list them
WRITTEN_TRANSPORTS = {
    Transport.DOCKER: "docker://",
    Transport.OCI: "oci:",
    Transport.OCI_ARCHIVE: "oci-archive:",
    Transport.DOCKER_ARCHIVE: "docker-archive:",
    Transport.DIR: "dir:",
    Transport.CONTAINERS_STORAGE: "containers-storage:",
}
# What a transport name looks like (skopeo's are lower-case words joined by dashes); one
# letter is a drive (C:), never a transport
_TRANSPORT_NAME = re.compile(r"[a-z][a-z0-9-]+")


class WrittenPath(PosixPath):
    """A path argument that remembers how it was typed (``written``): ``pathlib`` folds
    ``./oci:x`` into ``oci:x`` and ``docker://`` into ``docker:/``, which mean other things."""

    written: str


def written_path(text: str) -> WrittenPath:
    """The command line's parser for IMAGE arguments."""
    path = WrittenPath(text)
    path.written = text
    return path


def location_text(where: str | Path) -> str:
    """What the user wrote: a ``WrittenPath``'s text, else the path or string as it is."""
    return where.written if isinstance(where, WrittenPath) else str(where)


def written_as_path(text: str) -> bool:
    """Text that can only be a path: absolute, or starting ``./``, ``../`` or ``~``."""
    return text in (".", "..") or text.startswith(("/", "./", "../", "~"))


def local_image(text: str) -> bool:
    """Whether ``text``, given where a registry reference is expected (``pull``), names an
    image on this machine: a local transport (``oci:``, ``dir:``, …), text written as a
    path, or a path that exists. ``docker://…`` never is."""
    prefix, colon, _ = text.partition(":")
    if colon and prefix in TRANSPORTS:
        return prefix != Transport.DOCKER
    return written_as_path(text) or os.path.lexists(text)


@dataclass(frozen=True, slots=True)
class Store:
    """containers-storage's ``[driver@graphroot+runroot:options]``."""

    graph_root: Path = DEFAULT_GRAPH_ROOT
    driver: str | None = None
    run_root: Path | None = None
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Location:
    """One parsed location. ``text`` is what the user wrote (errors name it)."""

    text: str
    transport: Transport
    path: Path | None = None  # the file or directory of the local transports
    ref: str | None = None  # oci/oci-archive REF: chooses by ref name
    image: str | None = None  # docker-archive NAME:TAG, or a 1-based position (from @N)
    store: Store | None = None  # containers-storage
    name: str | None = None  # containers-storage NAME, docker:// reference (after //)

    @property
    def is_path(self) -> bool:
        return self.transport is Transport.PATH


def parse_location(where: str | Path) -> Location:
    """Parse what the user wrote; raise ``UsageError`` (exit 2) for a malformed location."""
    if isinstance(where, Path) and not isinstance(where, WrittenPath):
        return Location(str(where), Transport.PATH, path=where)
    text = where.written if isinstance(where, WrittenPath) else str(where)
    prefix, colon, rest = text.partition(":")
    if not colon or prefix not in TRANSPORTS:
        if colon and _TRANSPORT_NAME.fullmatch(prefix) and not os.path.lexists(text):
            raise _unknown_transport(prefix, rest, text)
        return Location(text, Transport.PATH, path=Path(text))
    transport = Transport(prefix)
    if transport is Transport.DOCKER:
        if not rest.startswith("//") or len(rest) == 2:
            raise UsageError(
                "a registry reference is written docker://HOST/NAME[:TAG|@DIGEST]", subject=text
            )
        return Location(text, transport, name=rest[2:])
    if transport is Transport.CONTAINERS_STORAGE:
        store, name = _parse_store(rest, text)
        return Location(text, transport, store=store, name=name)
    if transport is Transport.DIR:
        return Location(text, transport, path=_path(rest, text))
    path_text, _, detail = rest.partition(":")
    path = _path(path_text, text)
    if transport is Transport.DOCKER_ARCHIVE:
        return Location(text, transport, path=path, image=_archive_image(detail, text))
    if detail and any(c.isspace() or c in "\x00" for c in detail):
        raise UsageError(f"{detail!r} is not a reference name", subject=text)
    return Location(text, transport, path=path, ref=detail or None)


def _unknown_transport(prefix: str, rest: str, whole: str) -> UsageError:
    """``oci-archiv:app.tar``, which is no file: a transport mistyped, or one dockscope
    does not read. The closest known one is suggested; failing that, a name:tag meant for a
    registry is shown as docker:// writes it."""
    import difflib

    known = ", ".join(WRITTEN_TRANSPORTS.values())
    message = f'unknown transport "{prefix}" (known: {known})'
    close = difflib.get_close_matches(prefix, [str(t) for t in WRITTEN_TRANSPORTS], n=1)
    if close:
        message += f"; did you mean {WRITTEN_TRANSPORTS[Transport(close[0])]}?"
    elif not rest.startswith("/"):
        message += f"; an image in a registry is docker://{whole}"
    return UsageError(message, subject=whole)


def _path(text: str, whole: str) -> Path:
    if not text:
        raise UsageError("names no file or directory", subject=whole)
    return Path(text)


def _archive_image(detail: str, whole: str) -> str | None:
    """``NAME:TAG`` as given, or ``@N`` (skopeo's 0-based index) as a 1-based position."""
    if not detail:
        return None
    if detail.startswith("@"):
        number = detail[1:]
        if not number.isdigit() or not number.isascii():
            raise UsageError(f"@{number}: the image index must be a number", subject=whole)
        return str(int(number) + 1)
    if "@" in detail:
        raise UsageError("docker-archive takes NAME:TAG, not a digest", subject=whole)
    if detail.isdigit():
        raise UsageError(
            f"{detail!r} is not NAME:TAG (choose an image by position with @N)", subject=whole
        )
    return detail


def _parse_store(rest: str, whole: str) -> tuple[Store, str]:
    """``[driver@graphroot+runroot:options]NAME`` as containers/image's storage transport
    reads it: every part optional, paths absolute."""
    if not rest.startswith("["):
        store = Store()
    else:
        close = rest.find("]")
        if close < 0:
            raise UsageError("the store specification has no closing ']'", subject=whole)
        spec, rest = rest[1:close], rest[close + 1 :]
        driver: str | None = None
        if "@" in spec:
            driver, _, spec = spec.partition("@")
            if not driver or not spec:
                raise UsageError("the store is written [driver@graphroot...]", subject=whole)
        elif not spec:
            raise UsageError("an empty store specification []", subject=whole)
        spec, _, options = spec.partition(":")
        graph, _, run = spec.partition("+")
        for part in (graph, run):
            if part and not part.startswith("/"):
                raise UsageError(f"the store path {part!r} is not absolute", subject=whole)
        store = Store(
            Path(graph) if graph else DEFAULT_GRAPH_ROOT,
            driver,
            Path(run) if run else None,
            tuple(o for o in options.split(",") if o) if options else (),
        )
    if not rest:
        raise UsageError("names no image (containers-storage:[STORE]NAME)", subject=whole)
    return store, rest
