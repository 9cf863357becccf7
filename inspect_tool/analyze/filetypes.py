"""What kinds of files each layer stores, and the entries a forensic look starts from.

Every regular file's first bytes (``HEAD_BYTES``, never more) are classified as the layer
streams past; nothing is extracted and the rest of each file is skipped. ELF files are
classified from their own header (``ET_EXEC`` or a program header ``PT_INTERP``: an
executable; ``ET_DYN`` without an interpreter: a shared library; when the program headers lie
beyond the bytes read, the execute bit decides, as file(1) does), files starting with ``#!``
are scripts, and everything else goes through libmagic (python-magic, imported only when
needed) by MIME type. libmagic would call every position-independent executable a "shared
object" from a buffer, which is why ELF is not left to it.

Findings, for every layer analysed (an entry is reported in the layer that stores it):

- ``setuid`` / ``setgid``: a non-directory entry with the bit set (setgid *directories* only
  make new files inherit the group, and are common: not reported);
- ``world-writable``: a file or directory (symlinks excluded: their mode means nothing) that
  anyone may write; a sticky directory such as ``/tmp`` is reported with ``sticky``;
- ``device``: character and block device nodes (and FIFOs, as ``fifo``);
- ``union-xattr``: an entry carrying overlayfs's own attributes (``trusted.overlay.*``,
  ``user.overlay.*``: opaque, redirect, metacopy). They are a union filesystem's marks, not
  image content: docker, containerd and dockscope never apply them, but a layer that ships
  one was made to make a runtime that did show another tree than the one inspected;
- ``late-executable``: an executable (a regular file with an execute bit, or an ELF
  executable) added or replaced in a layer above the base layers. The base is the number of
  bottom layers that ``history.guess_base_layers`` attributes to the base image (at least
  layer 0), unless the caller says how many.

``visible`` says whether the entry is still what the top of the image shows at that path.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from inspect_tool.errors import DockscopeError, UsageError
from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember, TarReader
from inspect_tool.layers.union import UnionFS
from inspect_tool.layers.whiteout import OVERLAY_XATTR_PREFIXES
from inspect_tool.model.image import Image
from inspect_tool.sources.source import Source

HEAD_BYTES = 2048


class Category(StrEnum):
    ELF_EXECUTABLE = "elf-executable"
    SHARED_LIBRARY = "shared-library"
    ELF_OTHER = "elf-other"  # relocatable objects (.o, kernel modules), core dumps
    SCRIPT = "script"
    TEXT = "text"
    ARCHIVE = "archive"  # archives and compressed files
    BYTECODE = "bytecode"  # Python .pyc, Java classes, WebAssembly
    MEDIA = "media"  # images, audio, video, fonts
    EMPTY = "empty"
    DATA = "data"  # anything else


class FindingKind(StrEnum):
    SETUID = "setuid"
    SETGID = "setgid"
    WORLD_WRITABLE = "world-writable"
    DEVICE = "device"
    FIFO = "fifo"
    LATE_EXECUTABLE = "late-executable"
    UNION_XATTR = "union-xattr"


_ARCHIVE_TYPES = frozenset(
    {
        "application/gzip",
        "application/x-gzip",
        "application/x-xz",
        "application/zstd",
        "application/x-zstd",
        "application/x-bzip2",
        "application/x-tar",
        "application/x-gtar",
        "application/zip",
        "application/java-archive",
        "application/x-7z-compressed",
        "application/vnd.rar",
        "application/x-rar",
        "application/x-debian-package",
        "application/vnd.debian.binary-package",
        "application/x-rpm",
        "application/x-archive",
        "application/x-lzma",
        "application/x-lz4",
        "application/x-lzip",
        "application/x-cpio",
        "application/x-compress",
        "application/x-iso9660-image",
        "application/vnd.android.package-archive",
        "application/x-squashfs",
    }
)
_BYTECODE_TYPES = frozenset(
    {"application/x-bytecode.python", "application/x-java-applet", "application/wasm"}
)
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/javascript",
        "application/x-pem-file",
        "application/pgp-keys",
        "application/x-ndjson",
        "application/x-wine-extension-ini",
        "message/rfc822",
    }
)
_SCRIPT_PREFIXES = ("text/x-shellscript", "text/x-script", "text/x-perl", "text/x-python")
_SCRIPT_TYPES = frozenset(
    {"text/x-ruby", "text/x-php", "text/x-tcl", "text/x-lua", "text/x-awk", "text/x-m4"}
)


def category_of_mime(mime: str) -> Category:
    """The category of a libmagic MIME type (for files that are not ELF and have no ``#!``)."""
    mime = mime.split(";", 1)[0].strip().lower()
    if mime == "inode/x-empty":
        return Category.EMPTY
    if mime.startswith(_SCRIPT_PREFIXES) or mime in _SCRIPT_TYPES:
        return Category.SCRIPT
    if mime in _ARCHIVE_TYPES:
        return Category.ARCHIVE
    if mime in _BYTECODE_TYPES:
        return Category.BYTECODE
    if mime.startswith("text/") or mime in _TEXT_TYPES:
        return Category.TEXT
    if mime.startswith(("image/", "audio/", "video/", "font/")) or mime in (
        "application/vnd.ms-opentype",
        "application/x-font-ttf",
        "application/font-woff",
    ):
        return Category.MEDIA
    return Category.DATA


_PT_INTERP = 3
_ET_EXEC, _ET_DYN = 2, 3


def elf_category(head: bytes, mode: int) -> tuple[Category, str] | None:
    """(category, MIME type) of an ELF file from its first bytes; None if not ELF."""
    if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    wide = head[4] == 2
    endian = "<" if head[5] == 1 else ">"
    e_type = struct.unpack_from(endian + "H", head, 16)[0]
    if e_type == _ET_EXEC:
        return Category.ELF_EXECUTABLE, "application/x-executable"
    if e_type != _ET_DYN:
        mime = "application/x-object" if e_type == 1 else "application/x-coredump"
        return Category.ELF_OTHER, mime
    if len(head) < (64 if wide else 52):
        return None
    if wide:
        phoff = struct.unpack_from(endian + "Q", head, 32)[0]
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 54)
    else:
        phoff = struct.unpack_from(endian + "I", head, 28)[0]
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 42)
    interp: bool | None = False
    for i in range(phnum):
        offset = phoff + i * phentsize
        if phentsize < 4 or offset + 4 > len(head):
            interp = None  # program headers lie beyond what was read
            break
        if struct.unpack_from(endian + "I", head, offset)[0] == _PT_INTERP:
            interp = True
            break
    if interp or (interp is None and mode & 0o111):
        return Category.ELF_EXECUTABLE, "application/x-pie-executable"
    return Category.SHARED_LIBRARY, "application/x-sharedlib"


@dataclass(slots=True)
class Tally:
    """A running count of regular files and their bytes, for one layer, category or MIME type."""

    count: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.count += 1
        self.bytes += size


@dataclass(slots=True)
class LayerTypes:
    """What kinds of files one layer stores (or all analysed layers together): its regular files by
    category and by MIME type, and its entries by type."""

    index: int
    created_by: str | None
    files: Tally = field(default_factory=Tally)  # regular files with content in this layer
    categories: dict[Category, Tally] = field(default_factory=dict)
    mime_types: dict[str, Tally] = field(default_factory=dict)
    entries: dict[str, int] = field(default_factory=dict)  # entries by type (file, dir, …)


@dataclass(frozen=True, slots=True)
class TypeFinding:
    """One entry a forensic look starts from (setuid, world-writable, a device, a late executable…),
    with the layer that stores it and whether the image's top still shows it."""

    kind: FindingKind
    layer: int
    path: str
    type: EntryType
    mode: int
    uid: int
    gid: int
    detail: str = ""
    category: Category | None = None  # late executables: what the content is
    change: str | None = None  # late executables: "added" or "modified"
    visible: bool = True


@dataclass(frozen=True, slots=True)
class TypesReport:
    """The kinds of files each analysed layer stores and all of them together, with the forensic
    findings among their entries."""

    layers: tuple[LayerTypes, ...]  # the layers analysed, bottom to top
    totals: LayerTypes  # index -1: all analysed layers together
    findings: tuple[TypeFinding, ...]
    base_layers: int
    head_bytes: int = HEAD_BYTES


class Classifier:
    """Category and MIME type of a file from its first bytes; libmagic loaded on first use."""

    def __init__(self) -> None:
        self._magic: Any = None

    def _mime(self, head: bytes) -> str:
        if self._magic is None:
            try:
                import magic
            except ImportError as exc:  # python-magic is there but libmagic is not
                raise DockscopeError(
                    f"file types need libmagic (Debian: apt-get install libmagic1): {exc}"
                ) from None
            self._magic = magic.Magic(mime=True)
        try:
            return str(self._magic.from_buffer(head))
        except Exception:  # libmagic gives up on some inputs: call them data
            return "application/octet-stream"

    def classify(self, head: bytes, mode: int) -> tuple[Category, str]:
        if not head:
            return Category.EMPTY, "inode/x-empty"
        elf = elf_category(head, mode)
        if elf is not None:
            return elf
        if head.startswith(b"#!"):
            return Category.SCRIPT, "text/x-shellscript" if b"sh" in head[:64] else "text/x-script"
        mime = self._mime(head)
        return category_of_mime(mime), mime.split(";", 1)[0].strip()


def _is_executable(member: TarMember, category: Category | None) -> bool:
    return bool(member.mode & 0o111) or category is Category.ELF_EXECUTABLE


def analyze_types(
    source: Source,
    image: Image,
    *,
    layer: int | None = None,
    base_layers: int | None = None,
    progress: Callable[[int], None] | None = None,
    classifier: Classifier | None = None,
) -> TypesReport:
    """Stream every layer once (verified against its diff_id); classify the files of the
    chosen layer (default: all) and collect the findings there."""
    from inspect_tool.analyze.history import guess_base_layers
    from inspect_tool.layers.image_fs import open_layer

    count = len(image.layers)
    if layer is not None and not 0 <= layer < count:
        raise UsageError(
            f"--layer {layer}: the image has layers 0 to {count - 1}", subject=source.label
        )
    if base_layers is None:
        base_layers = guess_base_layers(image)
    if base_layers < 0:
        raise UsageError(f"--base-layers {base_layers}: must be 0 or more")
    classify = (classifier or Classifier()).classify
    union = UnionFS()
    analysed: list[LayerTypes] = []
    totals = LayerTypes(-1, None)
    found: list[TypeFinding] = []
    for current in image.layers:
        stats = LayerTypes(current.index, current.created_by)
        with open_layer(source, current, progress=progress) as opened:
            hook = None
            if layer is None or current.index == layer:
                hook = _entry_hook(
                    opened.reader, stats, totals, found, union, base_layers, classify
                )
                analysed.append(stats)
            union.apply(current.index, opened.reader, record=False, on_entry=hook)
            opened.finish(current, label=source.label)
    findings = tuple(_with_visibility(found, union))
    return TypesReport(tuple(analysed), totals, findings, base_layers)


def _entry_hook(
    reader: TarReader,
    stats: LayerTypes,
    totals: LayerTypes,
    found: list[TypeFinding],
    union: UnionFS,
    base_layers: int,
    classify: Callable[[bytes, int], tuple[Category, str]],
) -> Callable[[TarMember, str], None]:
    def on_entry(member: TarMember, path: str) -> None:
        kind = member.type.value
        stats.entries[kind] = stats.entries.get(kind, 0) + 1
        category: Category | None = None
        if member.type is EntryType.FILE:
            category, mime = classify(reader.read(HEAD_BYTES), member.mode)
            for target in (stats, totals):
                target.files.add(member.size)
                target.categories.setdefault(category, Tally()).add(member.size)
                target.mime_types.setdefault(mime, Tally()).add(member.size)
        found.extend(_findings(member, path, stats.index, category, union, base_layers))

    return on_entry


def _findings(
    member: TarMember,
    path: str,
    layer: int,
    category: Category | None,
    union: UnionFS,
    base_layers: int,
) -> list[TypeFinding]:
    out: list[TypeFinding] = []

    def add(kind: FindingKind, detail: str = "", **extra: Any) -> None:
        out.append(
            TypeFinding(
                kind, layer, path, member.type, member.mode, member.uid, member.gid, detail, **extra
            )
        )

    marks = sorted(k for k in member.xattrs if k.startswith(OVERLAY_XATTR_PREFIXES))
    if marks:
        add(FindingKind.UNION_XATTR, ", ".join(marks))
    is_dir = member.type is EntryType.DIR
    if is_dir:
        below = union.get(path)
        same = below is not None and below.type is EntryType.DIR and not below.implicit
        if (
            same
            and below is not None
            and (below.mode, below.uid, below.gid)
            == (
                member.mode,
                member.uid,
                member.gid,
            )
        ):
            return out  # a directory restated unchanged: reported where it was introduced
    if not is_dir and member.mode & 0o4000:
        add(FindingKind.SETUID, f"runs as uid {member.uid}")
    if not is_dir and member.mode & 0o2000:
        add(FindingKind.SETGID, f"runs as gid {member.gid}")
    if member.type not in (EntryType.SYMLINK, EntryType.HARDLINK) and member.mode & 0o002:
        sticky = is_dir and bool(member.mode & 0o1000)
        add(FindingKind.WORLD_WRITABLE, "sticky" if sticky else "")
    if member.type in (EntryType.CHAR, EntryType.BLOCK):
        add(FindingKind.DEVICE, f"{member.type.value} {member.devmajor}:{member.devminor}")
    elif member.type is EntryType.FIFO:
        add(FindingKind.FIFO)
    if layer >= base_layers and member.type is EntryType.FILE and _is_executable(member, category):
        # the union does not hold this entry yet: what it shows is the lower layers' entry
        before = union.get(path)
        if before is None or before.layer < layer:
            change = "added" if before is None else "modified"
            add(FindingKind.LATE_EXECUTABLE, "", category=category, change=change)
    return out


def _with_visibility(found: list[TypeFinding], union: UnionFS) -> list[TypeFinding]:
    """A finding is visible when the top of the image still shows that entry: the same
    directory mode, or for anything else the entry of that very layer."""
    out = []
    for finding in found:
        top = union.get(finding.path)
        if top is None or top.type is not finding.type:
            visible = False
        elif finding.type is EntryType.DIR:
            visible = top.mode == finding.mode
        else:
            visible = top.layer == finding.layer
        out.append(finding if visible else replace(finding, visible=False))
    return out
