"""estargz layers (containerd's stargz snapshotter, nerdctl): recognised and checked.

An estargz blob is a gzip layer of one member per file chunk, then its table of contents, the
JSON file ``stargz.index.json``, as a tar entry in a member of its own, then a 51-byte footer:
an empty gzip member whose extra field (``SG``, 22 bytes) holds ``%016xSTARGZ``, the TOC
member's offset in the blob. Recent writers close the layer's tar before the TOC, so the TOC
is a second tar after the first end-of-archive marker, which every engine (Go's reader) stops
at; older ones leave it as the tar's last entry. The layer's descriptor carries the TOC's
digest in the annotation ``containerd.io/snapshot/stargz/toc.digest`` (docs/estargz.md of
containerd/stargz-snapshotter). dockscope finds the footer in the blob's last bytes, the TOC
where it points, and checks that the TOC is JSON within the bounds, of version 1, and lists
the tar's entries with their sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from inspect_tool.errors import DockscopeError
from inspect_tool.layers.decompress import LayerStream
from inspect_tool.layers.tarformat import normalize_member
from inspect_tool.layers.tarstream import MAX_TOC_BYTES, TOC_NAME, TarScan, TocCapture
from inspect_tool.model.jsondoc import parse_json
from inspect_tool.model.mediatypes import Compression

TOC_DIGEST_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest"
FOOTER_SIZE = 51
# A TOC lists every entry and chunk of its layer: an array far longer than a config's.
MAX_TOC_ENTRIES = 1 << 20
_TYPES = frozenset({"dir", "reg", "symlink", "hardlink", "char", "block", "fifo", "chunk"})
# gzip magic, deflate, flags, mtime, xfl, os; XLEN 26; subfield SG of 22 bytes
_FOOTER = re.compile(rb"\x1f\x8b\x08(.).{6}\x1a\x00SG\x16\x00([0-9a-f]{16})STARGZ", re.DOTALL)


@dataclass(frozen=True, slots=True)
class EStargz:
    """What the footer named and what was found there."""

    toc_offset: int  # in the blob, as the footer says
    toc_digest: str | None  # sha256 of the TOC's JSON bytes; None when no TOC was found there
    toc_size: int | None
    after_end: bool  # the TOC is a second tar after the end-of-archive marker
    entries: int  # TOC entries (files, directories, links, chunks)
    problems: tuple[str, ...]  # empty when the TOC is where the footer says and agrees


def footer_offset(tail: bytes) -> int | None:
    """The TOC offset an estargz footer holds, or None when ``tail`` is no such footer."""
    if len(tail) != FOOTER_SIZE:
        return None
    match = _FOOTER.match(tail)
    if match is None or match[1][0] & 0x1C != 0x04:  # FEXTRA alone: no name, comment
        return None
    return int(match[2], 16)


def recognise(stream: LayerStream, scan: TarScan) -> EStargz | None:
    """The layer as estargz, when its last bytes are an estargz footer."""
    if stream.compression is not Compression.GZIP or stream.error is not None:
        return None
    offset = footer_offset(stream.tail)
    if offset is None:
        return None
    problems: list[str] = []
    starts = dict(stream.members)
    footer_start = stream.raw_size - stream.trailing - FOOTER_SIZE
    if footer_start not in starts:
        problems.append("the footer is not a gzip member of its own")
    uncompressed = starts.get(offset)
    toc: TocCapture | None = None
    if uncompressed is None or offset >= footer_start:
        problems.append(
            f"the footer names byte {offset} of the blob for the TOC, where the member before "
            "the footer does not start"
        )
    else:
        toc = next((t for t in scan.tocs if t.offset == uncompressed), None)
        if toc is None:
            problems.append(
                f"no {TOC_NAME} entry starts the gzip member at byte {offset} the footer names"
            )
    if toc is None:
        return EStargz(offset, None, None, False, 0, tuple(problems))
    if toc.read != toc.size:
        problems.append(f"the TOC entry is cut short ({toc.read} of {toc.size} bytes)")
    if toc.after_end:
        if not scan.trailing_tar_ok or scan.trailing_names != [TOC_NAME]:
            names = ", ".join(repr(n) for n in scan.trailing_names[:5]) or "no tar"
            problems.append(f"after the end-of-archive marker: {names}, not the TOC alone")
        else:
            # the TOC's tar is the estargz layout, not garbage: what follows it still is
            scan.trailing_nonzero = scan.trailing_after_tar
    entries = _check_toc(toc, scan, problems)
    return EStargz(offset, toc.digest, toc.size, toc.after_end, entries, tuple(problems))


def _check_toc(toc: TocCapture, scan: TarScan, problems: list[str]) -> int:
    if toc.data is None:
        problems.append(f"the TOC of {toc.size} bytes exceeds the bound of {MAX_TOC_BYTES} bytes")
        return 0
    return check_toc_json(bytes(toc.data), scan.files, problems)


def check_toc_json(data: bytes, files: dict[str, int] | None, problems: list[str]) -> int:
    """A CRFS-style TOC (estargz's, zstd:chunked's manifest): well-formed, bounded, version 1,
    and, when ``files`` (the tar's regular-file sizes by name) is given, listing the tar's
    entries. Returns how many entries it lists; ``problems`` gets what is wrong."""
    try:
        value = parse_json(data, subject=TOC_NAME, max_members=MAX_TOC_ENTRIES)
    except DockscopeError as exc:
        problems.append(f"the TOC is not valid: {exc.message}")
        return 0
    if not isinstance(value, dict) or value.get("version") != 1:
        problems.append("the TOC is not a JSON object of version 1")
        return 0
    entries = value.get("entries")
    if not isinstance(entries, list):
        problems.append("the TOC has no entries array")
        return 0
    listed: dict[str, int] = {}
    for i, entry in enumerate(entries):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or entry.get("type") not in _TYPES
        ):
            problems.append(f"TOC entry {i} has no name or no known type")
            return len(entries)
        if entry["type"] == "chunk":
            continue
        size = entry.get("size", 0)
        name = normalize_member(entry["name"])
        listed[name] = size if entry["type"] == "reg" and isinstance(size, int) else -1
    if files is None:
        return len(entries)
    in_tar = {name: size for name, size in files.items() if name != TOC_NAME}
    missing = sorted(set(in_tar) - set(listed))
    extra = sorted(set(listed) - set(in_tar))
    if missing:
        problems.append(f"the TOC omits {len(missing)} entries of the tar: {_some(missing)}")
    if extra:
        problems.append(f"the TOC lists {len(extra)} entries the tar lacks: {_some(extra)}")
    differ = sorted(
        name
        for name, size in listed.items()
        if size >= 0 and name in in_tar and in_tar[name] != size
    )
    if differ:
        problems.append(f"the TOC gives other sizes than the tar for {_some(differ)}")
    return len(entries)


def _some(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:3])
    return shown + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
