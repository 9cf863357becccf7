"""Packages per layer: every layer streamed once (verified against its diff_id), only the
files that package databases live in read (each up to its bound, from the tar stream: nothing
is unpacked), the databases parsed after each layer that changed one, and the package sets
compared layer by layer.

A database is read as the layer stores it; a later layer that rewrites it replaces it, and
one that deletes it (a whiteout, an opaque directory, another entry at its path) removes its
packages. A package is identified by ecosystem, where it is installed (the dpkg admin dir, the
site directory, …), name and architecture: the same key at another version is an upgrade or
a downgrade (ordered by ``versions.compare``), a key that disappears a removal. Malformed or
oversized files become ``PackageProblem``s naming the layer and path; the rest is still read.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from inspect_tool.analyze.packages import apk, dpkg, golang, java, npm, python, rpm
from inspect_tool.analyze.packages.model import Package, PackageDataError
from inspect_tool.analyze.packages.versions import compare
from inspect_tool.errors import UsageError
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember, TarReader
from inspect_tool.layers.union import FileInfo, UnionFS
from inspect_tool.model.image import Image
from inspect_tool.sources.source import Source

MIB = 1024 * 1024
MAX_REMOVALS = 1_000_000  # deletions remembered for "which layer deleted an owned file"


class Kind(StrEnum):
    DPKG_STATUS = "dpkg-status"
    DPKG_STATUS_D = "dpkg-status.d"
    DPKG_LIST = "dpkg-list"
    DPKG_MD5SUMS = "dpkg-md5sums"
    APK = "apk-installed"
    PY_METADATA = "python-metadata"
    PY_RECORD = "python-record"
    PY_EGG_FILES = "python-installed-files"
    NPM = "npm-package.json"
    RPM_SQLITE = "rpm-sqlite"
    RPM_NDB = "rpm-ndb"
    RPM_BDB = "rpm-bdb"
    RPM_WAL = "rpm-sqlite-wal"
    JAVA = "java-archive"
    GO = "go-binary"
    OS_RELEASE = "os-release"


# the most each kind of file may hold before it is skipped (with a problem)
LIMITS: dict[Kind, int] = {
    Kind.DPKG_STATUS: 64 * MIB,  # a full desktop install: ~4 MiB
    Kind.DPKG_STATUS_D: 16 * MIB,
    Kind.DPKG_LIST: 64 * MIB,
    Kind.DPKG_MD5SUMS: 64 * MIB,
    Kind.APK: 256 * MIB,
    Kind.PY_METADATA: 16 * MIB,
    Kind.PY_RECORD: 64 * MIB,
    Kind.PY_EGG_FILES: 64 * MIB,
    Kind.NPM: npm.MAX_BYTES,
    Kind.RPM_SQLITE: 512 * MIB,
    Kind.RPM_NDB: 512 * MIB,
    Kind.RPM_BDB: 512 * MIB,
    Kind.RPM_WAL: 512 * MIB,
    Kind.JAVA: java.MAX_ARCHIVE,
    Kind.GO: 2048 * MIB,  # streamed: only the build information is kept
    Kind.OS_RELEASE: MIB,
}

# the kinds whose records are packages (the others list files of those)
DATABASE_KINDS = {
    Kind.DPKG_STATUS,
    Kind.DPKG_STATUS_D,
    Kind.APK,
    Kind.PY_METADATA,
    Kind.NPM,
    Kind.RPM_SQLITE,
    Kind.RPM_NDB,
    Kind.RPM_BDB,
    Kind.JAVA,
    Kind.GO,
}
# where rpm keeps its database (rpm ≥ 4.16 moved it below /usr; /var/lib/rpm often a link)
RPM_DIRS = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
RPM_FILES = {
    "rpmdb.sqlite": Kind.RPM_SQLITE,
    "rpmdb.sqlite-wal": Kind.RPM_WAL,
    "Packages.db": Kind.RPM_NDB,
    "Packages": Kind.RPM_BDB,
}

DPKG_ADMIN = "/var/lib/dpkg"
OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")  # the first one present wins


def classify(path: str) -> Kind | None:
    """What package file, if any, stands at this absolute path."""
    parent, _, name = path.rpartition("/")
    if parent == DPKG_ADMIN and name == "status":
        return Kind.DPKG_STATUS
    if parent == DPKG_ADMIN + "/status.d":
        return Kind.DPKG_MD5SUMS if name.endswith(".md5sums") else Kind.DPKG_STATUS_D
    if parent == DPKG_ADMIN + "/info" and name.endswith(".list"):
        return Kind.DPKG_LIST
    if path == "/lib/apk/db/installed":
        return Kind.APK
    if path in OS_RELEASE_PATHS:
        return Kind.OS_RELEASE
    if parent in RPM_DIRS and name in RPM_FILES:
        return RPM_FILES[name]
    if parent.endswith(".dist-info"):
        if name == "METADATA":
            return Kind.PY_METADATA
        if name == "RECORD":
            return Kind.PY_RECORD
        return None
    if parent.endswith(".egg-info"):
        if name == "PKG-INFO":
            return Kind.PY_METADATA
        if name == "installed-files.txt":
            return Kind.PY_EGG_FILES
        return None
    if name.endswith(".egg-info") and "/" in parent + "/":
        return Kind.PY_METADATA  # distutils' single-file metadata
    if name.endswith((".jar", ".war", ".ear")):
        return Kind.JAVA
    if name == "package.json":
        parts = parent.split("/")
        if len(parts) >= 2 and parts[-2] == "node_modules" and not parts[-1].startswith("@"):
            return Kind.NPM
        if len(parts) >= 3 and parts[-3] == "node_modules" and parts[-2].startswith("@"):
            return Kind.NPM
    return None


@dataclass(slots=True)
class _Stored:
    """One package-related file as the layers applied so far leave it, parsed: the packages, file
    list or os-release fields it records, and the layer that stores it."""

    kind: Kind
    layer: int
    packages: list[Package] = field(default_factory=list)
    files: tuple[str, ...] = ()
    fields: dict[str, str] = field(default_factory=dict)  # os-release
    raw: bytes = b""  # an rpm sqlite database and its write-ahead log, as stored


def parse(kind: Kind, path: str, data: bytes) -> _Stored:
    """One file's records; raises PackageDataError when it is malformed."""
    parent = posixpath.dirname(path)
    stored = _Stored(kind, -1)
    if kind is Kind.DPKG_STATUS or kind is Kind.DPKG_STATUS_D:
        stored.packages = dpkg.parse_status(data, database=path, location=DPKG_ADMIN)
    elif kind is Kind.DPKG_LIST:
        stored.files = dpkg.parse_list(data, database=path)
    elif kind is Kind.DPKG_MD5SUMS:
        stored.files = dpkg.parse_md5sums(data, database=path)
    elif kind is Kind.APK:
        stored.packages = apk.parse_installed(data, database=path, location=path)
    elif kind is Kind.PY_METADATA:
        site = parent if path.endswith(".egg-info") else posixpath.dirname(parent)
        stored.packages = [python.parse_metadata(data, database=path, location=site)]
    elif kind is Kind.PY_RECORD:
        stored.files = python.parse_record(data, database=path, site=posixpath.dirname(parent))
    elif kind is Kind.PY_EGG_FILES:
        stored.files = python.parse_installed_files(data, database=path, egg_info=parent)
    elif kind is Kind.RPM_SQLITE:
        stored.packages = rpm.parse_sqlite(data, database=path, location=parent)
        stored.raw = data  # read again with its -wal file, if one holds transactions
    elif kind is Kind.RPM_NDB:
        stored.packages = rpm.parse_ndb(data, database=path, location=parent)
    elif kind is Kind.RPM_BDB:
        stored.packages = rpm.parse_bdb(data, database=path, location=parent)
    elif kind is Kind.RPM_WAL:
        stored.raw = data
    elif kind is Kind.JAVA:
        stored.packages = java.parse_archive(data, database=path)
    elif kind is Kind.GO:
        stored.packages = golang.parse_buildinfo(data, database=path)
    elif kind is Kind.OS_RELEASE:
        stored.fields = parse_os_release(data)
    elif kind is Kind.NPM:
        package = npm.parse_package_json(data, database=path, location=parent)
        stored.packages = [package] if package is not None else []
    return stored


def parse_os_release(data: bytes) -> dict[str, str]:
    """os-release(5): KEY=value lines, values maybe quoted (shell quoting, simplified)."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines()[:1000]:
        key, equals, value = line.strip().partition("=")
        if equals and key.isidentifier():
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            fields[key] = value[:256]
    return fields


@dataclass(frozen=True, slots=True)
class OsRelease:
    """The operating system the image's os-release file names, with where that file is and the layer
    that stores it."""

    id: str  # "debian", "alpine", "rhel", …: the purl namespace of OS packages
    version_id: str
    pretty_name: str
    path: str
    layer: int


class Action(StrEnum):
    INSTALLED = "installed"
    UPGRADED = "upgraded"
    DOWNGRADED = "downgraded"
    CHANGED = "changed"  # another version, the order unknown (a version its ecosystem rejects)
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class PackageEvent:
    """One thing a layer did to a package (installed, upgraded, downgraded, changed or removed it),
    and the versions involved."""

    layer: int
    action: Action
    version: str  # the version after the event (before it, for a removal)
    previous: str | None = None


@dataclass(frozen=True, slots=True)
class AlteredFile:
    """A file the package owns that a layer above the one that installed it changed."""

    path: str
    change: str  # "modified" or "deleted"
    layer: int | None  # None: deleted, the layer not known (past MAX_REMOVALS)


@dataclass(frozen=True, slots=True)
class LayerPackage:
    """One package the image installs, with the layer that installed this version, what each layer
    did to it, and its files that later layers changed."""

    package: Package
    layer: int  # the layer that installed it at this version
    events: tuple[PackageEvent, ...]
    altered: tuple[AlteredFile, ...] = ()


@dataclass(frozen=True, slots=True)
class Database:
    """One package database the image stores (dpkg, apk or rpm), with the layer that stores this
    version of it and how many packages it records."""

    path: str
    kind: str
    layer: int  # the layer that stores this version of it
    packages: int


@dataclass(frozen=True, slots=True)
class PackageProblem:
    """Something wrong with a package file (malformed, too large, not a regular file, a package
    recorded twice), named by its layer and path."""

    layer: int
    path: str
    message: str


@dataclass(frozen=True, slots=True)
class PackagesReport:
    """The packages installed after a given layer and those a layer installed and a later one
    removed, with the databases they come from and the problems met reading them."""

    upto: int  # the last layer applied
    packages: tuple[LayerPackage, ...]  # installed after layer ``upto``
    removed: tuple[LayerPackage, ...]  # installed by some layer, gone by ``upto``
    databases: tuple[Database, ...]
    problems: tuple[PackageProblem, ...]
    os: OsRelease | None = None


class _Scanner:
    def __init__(self) -> None:
        self.stored: dict[str, _Stored] = {}
        self.problems: list[PackageProblem] = []
        self.removed_at: dict[str, int] = {}
        self.duplicates: list[PackageProblem] = []  # of the last snapshot
        self.wal_cache: dict[str, tuple[tuple[int, int], list[Package]]] = {}
        self.wal_problems: list[PackageProblem] = []
        self.dirty = False

    def on_entry(self, reader: TarReader, layer: int) -> Callable[[TarMember, str], None]:
        def hook(member: TarMember, path: str) -> None:
            kind = classify(path)
            if kind is None:
                if path in self.stored:  # a Go binary replaced by another file
                    del self.stored[path]
                    self.dirty = True
                if member.type is EntryType.FILE and member.mode & 0o111 and member.size > 64:
                    self._go_binary(reader, member, path, layer)
                return
            self.dirty = True
            self.stored.pop(path, None)
            if member.type is not EntryType.FILE:
                if member.type is not EntryType.DIR and kind is not Kind.OS_RELEASE:
                    self.problems.append(
                        PackageProblem(layer, path, f"a {member.type.value}, not a file: not read")
                    )
                return
            limit = LIMITS[kind]
            if member.size > limit:
                self.problems.append(
                    PackageProblem(
                        layer, path, f"{member.size} bytes, over the {limit}-byte bound: not read"
                    )
                )
                return
            data = reader.read(member.size)
            try:
                stored = parse(kind, path, data)
            except PackageDataError as exc:
                self.problems.append(PackageProblem(layer, path, exc.message))
                return
            stored.layer = layer
            self.stored[path] = stored

        return hook

    def _go_binary(self, reader: TarReader, member: TarMember, path: str, layer: int) -> None:
        """An executable: if it is ELF, look for Go's build information while it streams."""
        head = reader.read(4096)
        if not head.startswith(b"\x7fELF"):
            return
        finder = golang.BuildInfoFinder()
        finder.feed(head)
        while not finder.done and (chunk := reader.read(MIB)):
            finder.feed(chunk)
        finder.end()
        if finder.found is None:
            return
        stored = _Stored(Kind.GO, layer)
        try:
            stored.packages = golang.parse_buildinfo(finder.found, database=path)
        except PackageDataError as exc:
            self.problems.append(PackageProblem(layer, path, exc.message))
            return
        self.stored[path] = stored
        self.dirty = True

    def on_remove(self, info: FileInfo, layer: int, reason: str) -> None:
        stored = self.stored.get(info.path)
        if stored is not None and stored.layer == info.layer:
            del self.stored[info.path]
            self.dirty = True
        if info.type is not EntryType.DIR and len(self.removed_at) < MAX_REMOVALS:
            self.removed_at[info.path] = layer

    def snapshot(self) -> dict[tuple[str, str, str, str], Package]:
        """Every package the stored databases record, with the files listed beside them."""
        found: dict[tuple[str, str, str, str], Package] = {}
        layers: dict[tuple[str, str, str, str], int] = {}
        self.duplicates = []
        for path, stored in self.stored.items():
            if stored.kind not in DATABASE_KINDS:
                continue
            for package in self._with_wal(path, stored):
                files = package.files or self._files_of(path, stored.kind, package)
                if files is not package.files:
                    package = _with_files(package, files)
                other = found.get(package.key)
                if other is not None:
                    # two records of one package in one place (pip --target leaves the old
                    # dist-info): the one written last counts
                    self.duplicates.append(
                        PackageProblem(
                            max(stored.layer, layers[package.key]),
                            package.database,
                            f"{package.name} is recorded twice in {package.location}: "
                            f"{other.version} ({other.database}) and {package.version}",
                        )
                    )
                    if stored.layer <= layers[package.key]:
                        continue
                found[package.key] = package
                layers[package.key] = stored.layer
        return found

    def _with_wal(self, path: str, stored: _Stored) -> list[Package]:
        """An rpm sqlite database's packages with its -wal file's transactions applied."""
        wal = self.stored.get(path + "-wal")
        if stored.kind is not Kind.RPM_SQLITE or wal is None or not wal.raw:
            return stored.packages
        key = (stored.layer, wal.layer)
        cached = self.wal_cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            packages = rpm.parse_sqlite(
                stored.raw, database=path, location=posixpath.dirname(path), wal=wal.raw
            )
        except PackageDataError as exc:
            self.wal_problems.append(
                PackageProblem(max(key), path + "-wal", f"not applied: {exc.message}")
            )
            packages = stored.packages
        self.wal_cache[path] = (key, packages)
        return packages

    def _files_of(self, path: str, kind: Kind, package: Package) -> tuple[str, ...]:
        candidates: list[str] = []
        if kind is Kind.DPKG_STATUS:
            info = DPKG_ADMIN + "/info/"
            candidates = [f"{info}{package.name}:{package.arch}.list", f"{info}{package.name}.list"]
        elif kind is Kind.DPKG_STATUS_D:
            candidates = [path + ".md5sums"]
        elif kind is Kind.PY_METADATA:
            parent = posixpath.dirname(path)
            candidates = [parent + "/RECORD", parent + "/installed-files.txt"]
        for candidate in candidates:
            listed = self.stored.get(candidate)
            if listed is not None:
                return listed.files
        return ()

    def os_release(self) -> OsRelease | None:
        for path in OS_RELEASE_PATHS:
            stored = self.stored.get(path)
            if stored is not None and stored.fields.get("ID"):
                fields = stored.fields
                return OsRelease(
                    fields["ID"],
                    fields.get("VERSION_ID", ""),
                    fields.get("PRETTY_NAME", ""),
                    path,
                    stored.layer,
                )
        return None

    def databases(self) -> list[Database]:
        return [
            Database(path, stored.kind.value, stored.layer, len(stored.packages))
            for path, stored in sorted(self.stored.items())
            if stored.kind
            in (Kind.DPKG_STATUS, Kind.APK, Kind.RPM_SQLITE, Kind.RPM_NDB, Kind.RPM_BDB)
            or (stored.kind is Kind.DPKG_STATUS_D and stored.packages)
        ]


def _with_files(package: Package, files: tuple[str, ...]) -> Package:
    from dataclasses import replace

    return replace(package, files=files)


def scan_packages(
    source: Source,
    image: Image,
    *,
    layer: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PackagesReport:
    """The packages installed after layer ``layer`` (default: the top), each with the layer
    that installed its version, every layer that changed it and the files it owns that later
    layers changed."""
    from inspect_tool.layers.image_fs import open_layer

    count = len(image.layers)
    upto = count - 1 if layer is None else layer
    if not 0 <= upto < count:
        raise UsageError(
            f"--layer {layer}: the image has layers 0 to {count - 1}", subject=source.label
        )
    scanner = _Scanner()
    union = UnionFS(on_remove=scanner.on_remove)
    current: dict[tuple[str, str, str, str], Package] = {}
    events: dict[tuple[str, str, str, str], list[PackageEvent]] = {}
    installed_at: dict[tuple[str, str, str, str], int] = {}
    last_seen: dict[tuple[str, str, str, str], Package] = {}
    for item in image.layers[: upto + 1]:
        with open_layer(source, item, progress=progress) as opened:
            union.apply(
                item.index,
                opened.reader,
                record=False,
                on_entry=scanner.on_entry(opened.reader, item.index),
            )
            opened.finish(item, label=source.label)
        if not scanner.dirty:
            continue
        scanner.dirty = False
        now = scanner.snapshot()
        _transitions(item.index, current, now, events, installed_at)
        last_seen.update(now)
        current = now
    packages = tuple(
        LayerPackage(
            package,
            installed_at[key],
            tuple(events[key]),
            _altered(union, package, installed_at[key], scanner.removed_at),
        )
        for key, package in sorted(current.items())
    )
    removed = tuple(
        LayerPackage(last_seen[key], installed_at[key], tuple(history))
        for key, history in sorted(events.items())
        if key not in current
    )
    return PackagesReport(
        upto,
        packages,
        removed,
        tuple(scanner.databases()),
        tuple(scanner.problems + scanner.wal_problems + scanner.duplicates),
        scanner.os_release(),
    )


def _transitions(
    layer: int,
    before: dict[tuple[str, str, str, str], Package],
    after: dict[tuple[str, str, str, str], Package],
    events: dict[tuple[str, str, str, str], list[PackageEvent]],
    installed_at: dict[tuple[str, str, str, str], int],
) -> None:
    for key, package in after.items():
        old = before.get(key)
        if old is None:
            events.setdefault(key, []).append(
                PackageEvent(layer, Action.INSTALLED, package.version)
            )
            installed_at[key] = layer
        elif old.version != package.version:
            order = compare(package.ecosystem, package.version, old.version)
            action = {1: Action.UPGRADED, -1: Action.DOWNGRADED}.get(order or 0, Action.CHANGED)
            events[key].append(PackageEvent(layer, action, package.version, old.version))
            installed_at[key] = layer
    for key, package in before.items():
        if key not in after:
            events[key].append(PackageEvent(layer, Action.REMOVED, package.version))


def _altered(
    union: UnionFS, package: Package, installed: int, removed_at: dict[str, int]
) -> tuple[AlteredFile, ...]:
    if not package.files:
        return ()
    altered: list[AlteredFile] = []
    parents = {posixpath.dirname(f) for f in package.files}
    for path in package.files:
        info = union.get(path) or _resolved(union, path)
        if info is None:
            if path in parents:
                continue  # a directory (others are listed below it): its files say enough
            altered.append(AlteredFile(path, "deleted", removed_at.get(path)))
        elif info.type is not EntryType.DIR and info.layer > installed:
            altered.append(AlteredFile(path, "modified", info.layer))
    return tuple(altered)


def _resolved(union: UnionFS, path: str) -> FileInfo | None:
    """The entry at ``path`` with symlinks in its parents followed (merged /usr: dpkg lists
    /lib/x, the layer stores usr/lib/x under a /lib symlink)."""
    from inspect_tool.analyze.filesystem import PathNotFoundError, resolve

    try:
        return resolve(union, path, follow_last=False)
    except PathNotFoundError:
        return None


def changed_in(report: PackagesReport, layer: int) -> PackagesReport:
    """Only what layer ``layer`` did: the packages it installed, upgraded, downgraded or
    removed (the report must have been scanned up to that layer)."""
    from dataclasses import replace

    def touched(item: LayerPackage) -> bool:
        return any(event.layer == layer for event in item.events)

    return replace(
        report,
        packages=tuple(p for p in report.packages if touched(p)),
        removed=tuple(p for p in report.removed if touched(p)),
        problems=tuple(p for p in report.problems if p.layer == layer),
    )
