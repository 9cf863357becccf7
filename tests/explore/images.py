"""Crafted images for the explorer's tests: whiteouts, an opaque directory, hostile names."""

from __future__ import annotations

from pathlib import Path

from tests.support.images import write_image
from tests.support.tar_entries import build_layer, dir_entry, file_entry, symlink_entry

# a name with an OSC title, a clear screen, the 8-bit CSI, a bidi override, a line feed, a
# tab, rich markup (no "/": that would be a directory) and a backslash
HOSTILE = "n\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eame\n\t[bold red]x\\"
HOSTILE_TARGET = "\x1b]0;t\x07/[link=https://evil]target"
HOSTILE_COMMAND = "/bin/sh -c echo \x1b[2J[bold]boom[/bold]"


def layered(path: Path) -> Path:
    """Four layers: 0 adds /a/{one,two,sub/deep} and /b/keep; 1 modifies /a/one, whites out
    /a/two and adds /c; 2 makes /a opaque (adds /a/new) and removes /b; 3 adds a binary."""
    layers = [
        build_layer(
            [
                dir_entry("a"),
                file_entry("a/one", b"one v0\n"),
                file_entry("a/two", b"two\n"),
                dir_entry("a/sub"),
                file_entry("a/sub/deep", b"deep\n"),
                dir_entry("b"),
                file_entry("b/keep", b"keep\n"),
            ]
        ),
        build_layer(
            [
                file_entry("a/one", b"one v1, longer\n", mode=0o600, uid=1000, gid=1000),
                file_entry("a/.wh.two"),
                file_entry("c", 3000),
            ]
        ),
        build_layer(
            [file_entry("a/.wh..wh..opq"), file_entry("a/new", b"new\n"), file_entry(".wh.b")]
        ),
        build_layer([file_entry("bin.dat", bytes(range(256)) * 2)]),
    ]
    history = [{"created_by": f"step {i}"} for i in range(len(layers))]
    return write_image(path, layers, tag="layered:1", history=history)


def hostile(path: Path) -> Path:
    layer = build_layer(
        [
            dir_entry("d"),
            file_entry(f"d/{HOSTILE}", b"\x1b]0;content title\x07\x1b[2Jline\n"),
            symlink_entry("d/link", HOSTILE_TARGET),
            file_entry("d/[red]markup", b"x"),
        ]
    )
    return write_image(path, [layer], tag="hostile:1", history=[{"created_by": HOSTILE_COMMAND}])
