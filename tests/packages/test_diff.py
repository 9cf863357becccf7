"""``dockscope diff --packages``: added, removed, up- and downgraded in each ecosystem's order."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import invoke
from tests.support.images import layer_tar, write_image


def status(*packages: tuple[str, str]) -> bytes:
    return b"\n".join(
        f"Package: {name}\nStatus: install ok installed\nVersion: {version}\n"
        f"Architecture: amd64\n".encode()
        for name, version in packages
    )


def apk(*packages: tuple[str, str]) -> bytes:
    return b"".join(f"P:{name}\nV:{version}\nA:x86_64\n\n".encode() for name, version in packages)


def metadata(name: str, version: str) -> bytes:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()


SITE = "usr/lib/python3/dist-packages"


def test_diff_packages(tmp_path: Path) -> None:
    a = write_image(
        tmp_path / "a.tar",
        [
            layer_tar(
                {
                    "var/lib/dpkg/status": status(("libc6", "2.36-9"), ("gone", "1.0")),
                    "lib/apk/db/installed": apk(("musl", "1.2.10-r0")),
                    f"{SITE}/tool-1.0.dist-info/METADATA": metadata("tool", "1.0"),
                    f"{SITE}/odd-x.dist-info/METADATA": metadata("odd", "not-a-version"),
                }
            )
        ],
    )
    b = write_image(
        tmp_path / "b.tar",
        [
            layer_tar({"var/lib/dpkg/status": status(("libc6", "2.36-9+deb12u1"))}),
            layer_tar(
                {
                    "lib/apk/db/installed": apk(("musl", "1.2.9-r0")),
                    f"{SITE}/tool-1.0.post1.dist-info/METADATA": metadata("tool", "1.0.post1"),
                    f"{SITE}/odd-y.dist-info/METADATA": metadata("odd", "also-not"),
                    "app/node_modules/left-pad/package.json": (
                        b'{"name": "left-pad", "version": "1.3.0"}'
                    ),
                }
            ),
        ],
    )
    result = invoke("diff", "--packages", "--json", a, b)
    assert result.code == 1, result.err
    document = result.json()
    assert document["kind"] == "package-diff" and document["equal"] is False
    changes = {
        (p["ecosystem"], p["name"]): (
            p["change"],
            p["a"] and p["a"]["version"],
            p["b"] and p["b"]["version"],
        )
        for p in document["packages"]
    }
    assert changes == {
        ("deb", "libc6"): ("upgraded", "2.36-9", "2.36-9+deb12u1"),
        ("deb", "gone"): ("removed", "1.0", None),
        ("apk", "musl"): ("downgraded", "1.2.10-r0", "1.2.9-r0"),
        ("python", "tool"): ("upgraded", "1.0", "1.0.post1"),
        ("python", "odd"): ("changed", "not-a-version", "also-not"),
        ("npm", "left-pad"): ("added", None, "1.3.0"),
    }
    left_pad = next(p for p in document["packages"] if p["name"] == "left-pad")
    assert left_pad["b"]["layer"] == 1
    text = invoke("diff", "--packages", a, b)
    assert text.code == 1
    assert "↓" in text.out and "2.36-9+deb12u1" in text.out
    same = invoke("diff", "--packages", a, a)
    assert same.code == 0
    assert "same packages" in same.out
    assert invoke("diff", "--packages", a).code == 2
