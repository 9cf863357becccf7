"""A file's content for the explorer's content pane: read by ``dockscope cat``'s code (any
layer, so versions a later layer overwrote or deleted too), at most ``LIMIT`` bytes, shown as
escaped text or as a hex dump."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import BinaryIO, cast

from inspect_tool.analyze.filesystem import read_file
from inspect_tool.model.image import Image
from inspect_tool.render.text import visible
from inspect_tool.sources.source import Source

LIMIT = 256 * 1024  # bytes shown; the rest is counted, not read into memory


class _Enough(Exception):
    pass


class _Bounded:
    """A sink that keeps the first ``limit`` bytes and stops the copy after them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def write(self, chunk: bytes | memoryview) -> int:
        room = self.limit - len(self.data)
        self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True
            raise _Enough
        return len(chunk)


@dataclass(frozen=True, slots=True)
class Content:
    """The first bytes of a file as the filesystem after a given layer holds it, for the content
    pane, and whether the rest was cut off."""

    path: str
    layer: int  # the filesystem after this layer was read
    data: bytes
    truncated: bool
    size: int  # the file's size as its entry records it

    @property
    def binary(self) -> bool:
        return is_binary(self.data)

    def lines(self, *, hex_dump: bool | None = None) -> list[str]:
        """The content as safe lines: escaped text, or a hex dump (binary content, or when
        asked)."""
        dump = self.binary if hex_dump is None else hex_dump
        lines = hexdump(self.data) if dump else text_lines(self.data)
        if self.truncated:
            lines.append(f"… (first {len(self.data)} of {self.size} bytes shown)")
        return lines


def read_content(
    source: Source, image: Image, path: str, layer: int, *, size: int = -1, limit: int = LIMIT
) -> Content:
    """The first ``limit`` bytes of ``path`` as the filesystem after ``layer`` holds it
    (``size``: its recorded size, shown when the content is cut). Raises what ``read_file``
    raises (a missing path, a directory)."""
    sink = _Bounded(limit)
    with contextlib.suppress(_Enough):
        size = read_file(source, image, path, cast(BinaryIO, sink), layer=layer).size
    return Content(path, layer, bytes(sink.data), sink.truncated, size)


def is_binary(data: bytes) -> bool:
    head = data[:8192]
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 4  # a character cut at the end is still text
    return False


def text_lines(data: bytes) -> list[str]:
    text = data.decode("utf-8", "surrogateescape")
    return [visible(line.expandtabs(8)) for line in text.split("\n")]


def hexdump(data: bytes, width: int = 16) -> list[str]:
    """``hexdump -C``'s layout: offset, bytes in hex, printable ASCII (others as ``.``)."""
    lines = []
    for offset in range(0, len(data), width):
        chunk = data[offset : offset + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        if len(chunk) > 8:
            hexes = hexes[:23] + " " + hexes[23:]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<49} |{text}|")
    return lines
