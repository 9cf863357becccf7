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


# a planted token and password (random-looking, not placeholders) for the secrets screen
TOKEN = "ghp_" + "Zq7Rk2Lm9Xv4Tn8Wp3Hs6Jd1Fb5Gc0Ya2Eu7Ki"
PASSWORD = "Tr0ub4dor-3xq"
APK_FIXTURE = "apk-installed-multiple"


def packaged(work: Path, apk_database: Path | None = None) -> Path:
    """Packages installed by real tools, and secrets planted and deleted. Layer 0: dpkg
    installs alpha 1.0-1 and beta (and, given ``apk_database``, an apk database); 1: alpha
    upgraded, a .env with a token and a config with a password written; 2: the .env deleted,
    the config overwritten without the password, a file of beta changed; 3: pip installs a
    wheel."""
    from tests.support.rootfs import LayeredRoot, build_deb, dpkg, make_wheel, pip_install

    root = LayeredRoot(work / "root")
    alpha1 = build_deb(work, "alpha", "1.0-1", {"/usr/bin/alpha": b"a1"})
    alpha2 = build_deb(work, "alpha", "1.2-1", {"/usr/bin/alpha": b"a2"})
    beta = build_deb(work, "beta", "2.0", {"/usr/share/beta/data": b"b", "/etc/beta.conf": b"x"})
    dpkg(root.root, "-i", str(alpha1), str(beta))
    if apk_database is not None:
        target = root.root / "lib/apk/db/installed"
        target.parent.mkdir(parents=True)
        target.write_bytes(apk_database.read_bytes())
    root.snapshot()
    dpkg(root.root, "-i", str(alpha2))
    (root.root / "app").mkdir()
    (root.root / "app/.env").write_text(f"DEBUG=1\nGITHUB_TOKEN={TOKEN}\n")
    (root.root / "app/app.conf").write_text(f"[db]\nhost = db\npassword = {PASSWORD}\n")
    root.snapshot()
    (root.root / "app/.env").unlink()
    (root.root / "app/app.conf").write_text("[db]\nhost = db\n")
    (root.root / "usr/share/beta/data").write_bytes(b"changed")
    root.snapshot()
    site = root.root / "usr/lib/python3/dist-packages"
    pip_install(site, make_wheel(work, "tiny-ds", "1.0", {"tinyds/__init__.py": b""}))
    root.snapshot()
    history = [
        {"created_by": "RUN dpkg -i alpha beta"},
        {"created_by": "RUN dpkg -i alpha 1.2 && write /app"},
        {"created_by": "RUN rm /app/.env"},
        {"created_by": "RUN pip install tiny-ds"},
    ]
    return write_image(work / "packaged.tar", root.layers, tag="packaged:1", history=history)


DPKG_STATUS = b"""\
Package: hello
Status: install ok installed
Priority: optional
Section: devel
Installed-Size: 120
Maintainer: Test <test@example.org>
Architecture: amd64
Version: 2.10-3
Description: a friendly greeting

Package: libtiny1
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 40
Maintainer: Test <test@example.org>
Architecture: amd64
Source: tiny
Version: 1.4-1
Description: a tiny library

"""


def inventory(path: Path) -> Path:
    """Written entry by entry (byte-stable, for the snapshots): layer 0 a dpkg status of two
    packages with hello's file list; 1 libtiny1 upgraded and a .env with a token; 2 the
    .env deleted."""
    upgraded = DPKG_STATUS.replace(b"Version: 1.4-1", b"Version: 1.5-1")
    layers = [
        build_layer(
            [
                dir_entry("usr"),
                dir_entry("usr/bin"),
                file_entry("usr/bin/hello", b"#!/bin/sh\necho hello\n", mode=0o755),
                dir_entry("var"),
                dir_entry("var/lib"),
                dir_entry("var/lib/dpkg"),
                dir_entry("var/lib/dpkg/info"),
                file_entry("var/lib/dpkg/status", DPKG_STATUS),
                file_entry("var/lib/dpkg/info/hello.list", b"/usr\n/usr/bin\n/usr/bin/hello\n"),
            ]
        ),
        build_layer(
            [
                file_entry("var/lib/dpkg/status", upgraded),
                dir_entry("srv"),
                file_entry("srv/.env", f"MODE=prod\nGITHUB_TOKEN={TOKEN}\n".encode()),
            ]
        ),
        build_layer([file_entry("srv/.wh..env")]),
    ]
    history = [
        {"created_by": "RUN dpkg -i hello libtiny1"},
        {"created_by": "RUN apt-get upgrade && write /srv/.env"},
        {"created_by": "RUN rm /srv/.env"},
    ]
    return write_image(path, layers, tag="inventory:1", history=history)
