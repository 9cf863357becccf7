"""``dockscope packages`` on images whose layers real tools wrote: dpkg installing, upgrading
and removing .debs built by dpkg-deb, pip installing wheels; counts and versions compared
with dpkg-query on the same root at every step."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import invoke
from tests.support.images import layer_tar, write_image
from tests.support.paths import CORPUS
from tests.support.rootfs import LayeredRoot, build_deb, dpkg, make_wheel, pip_install

FIXTURES = CORPUS / "packages"
SITE = "usr/lib/python3/dist-packages"


def dpkg_query(root: Path) -> dict[str, str]:
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W", "-f=${Package} ${Version}\n"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


@pytest.fixture(scope="module")
def dpkg_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """Layer 0: alpha 1.0-1 and beta; 1: alpha upgraded; 2: a file of beta changed, another
    deleted; 3: alpha removed, gamma installed; 4: a wheel installed by pip. Returns the image
    and dpkg-query's view after each layer."""
    work = tmp_path_factory.mktemp("dpkg-image")
    root = LayeredRoot(work / "root")
    alpha1 = build_deb(work, "alpha", "1.0-1", {"/usr/bin/alpha": b"a1"})
    alpha2 = build_deb(work, "alpha", "1.2-1", {"/usr/bin/alpha": b"a2"}, arch="all")
    beta = build_deb(
        work,
        "beta",
        "2.0",
        {"/usr/share/beta/data": b"b", "/etc/beta.conf": b"x"},
        extra="Source: beta-src (2.0)\nInstalled-Size: 12\n",
    )
    gamma = build_deb(work, "gamma", "0.1", {"/usr/bin/gamma": b"g"})
    seen = []
    dpkg(root.root, "-i", str(alpha1), str(beta))
    root.snapshot()
    seen.append(dpkg_query(root.root))
    dpkg(root.root, "-i", str(alpha2))
    root.snapshot()
    seen.append(dpkg_query(root.root))
    (root.root / "usr/share/beta/data").write_bytes(b"changed")
    (root.root / "etc/beta.conf").unlink()
    root.snapshot()
    seen.append(dpkg_query(root.root))
    dpkg(root.root, "-r", "alpha")
    dpkg(root.root, "-i", str(gamma))
    root.snapshot()
    seen.append(dpkg_query(root.root))
    pip_install(root.root / SITE, make_wheel(work, "tiny-ds", "1.0", {"tinyds/__init__.py": b""}))
    root.snapshot()
    seen.append(dpkg_query(root.root))
    return write_image(work / "image.tar", root.layers), seen


def packages_json(image: Path, *args: str) -> dict[str, Any]:
    result = invoke("packages", "--json", *args, image)
    assert result.code == 0, result.err
    return result.json()  # type: ignore[no-any-return]


def by_name(document: dict[str, Any], key: str = "packages") -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in document[key]}


def test_every_layer_agrees_with_dpkg_query(dpkg_image: tuple[Path, list[dict[str, str]]]) -> None:
    image, seen = dpkg_image
    for layer, expected in enumerate(seen):
        document = packages_json(image, "--at", str(layer))
        found = {p["name"]: p["version"] for p in document["packages"] if p["ecosystem"] == "deb"}
        assert found == expected, layer
    assert seen[3] == {"beta": "2.0", "gamma": "0.1"}


def test_attribution_upgrade_removal_and_altered_files(
    dpkg_image: tuple[Path, list[dict[str, str]]],
) -> None:
    image, _ = dpkg_image
    document = packages_json(image)
    assert document["layer"] == 4
    packages = by_name(document)
    beta = packages["beta"]
    assert (beta["layer"], beta["source"], beta["installed_size"]) == (0, "beta-src", 12 * 1024)
    assert {(a["path"], a["change"], a["layer"]) for a in beta["altered_files"]} == {
        ("/usr/share/beta/data", "modified", 2),
        ("/etc/beta.conf", "deleted", 2),
    }
    assert packages["gamma"]["layer"] == 3
    assert packages["gamma"]["altered_files"] == []
    alpha = by_name(document, "removed")["alpha"]
    assert [(e["layer"], e["action"], e["version"], e["previous"]) for e in alpha["events"]] == [
        (0, "installed", "1.0-1", None),
        (1, "upgraded", "1.2-1", "1.0-1"),
        (3, "removed", "1.2-1", None),
    ]
    tiny = packages["tiny-ds"]
    assert (tiny["ecosystem"], tiny["version"], tiny["layer"], tiny["license"]) == (
        "python",
        "1.0",
        4,
        "MIT",
    )
    assert tiny["location"] == "/" + SITE
    assert tiny["file_count"] >= 3  # RECORD as pip wrote it
    assert document["problems"] == []


def test_at_reports_the_packages_after_that_layer(
    dpkg_image: tuple[Path, list[dict[str, str]]],
) -> None:
    image, _ = dpkg_image
    document = packages_json(image, "--at", "1")
    alpha = by_name(document)["alpha"]
    assert (alpha["version"], alpha["layer"]) == ("1.2-1", 1)
    assert by_name(document)["beta"]["altered_files"] == []
    result = invoke("packages", "--at", "9", image)
    assert result.code == 2
    assert "layers 0 to 4" in result.err
    result = invoke("packages", "--at", "1", "--layer", "1", image)
    assert result.code == 2


def test_layer_reports_only_what_that_layer_did(
    dpkg_image: tuple[Path, list[dict[str, str]]],
) -> None:
    image, _ = dpkg_image
    document = packages_json(image, "--layer", "3")
    assert sorted(by_name(document)) == ["gamma"]
    assert sorted(by_name(document, "removed")) == ["alpha"]
    assert packages_json(image, "--layer", "2")["packages"] == []
    lines = [line.rstrip() for line in invoke("packages", "--layer", "2", image).out.splitlines()]
    assert lines[0].endswith(": layer 2 installed or upgraded 0 packages")
    assert lines[1] == "Layer 2 installed, upgraded or removed no packages."
    lines = [line.rstrip() for line in invoke("packages", "--layer", "3", image).out.splitlines()]
    assert lines[0].endswith(": layer 3 installed or upgraded 1 package")


def test_files_lists_what_dpkg_recorded(dpkg_image: tuple[Path, list[dict[str, str]]]) -> None:
    image, _ = dpkg_image
    gamma = by_name(packages_json(image, "--files"))["gamma"]
    assert "/usr/bin/gamma" in gamma["files"]


def test_human_output_names_layers_and_changes(
    dpkg_image: tuple[Path, list[dict[str, str]]],
) -> None:
    image, _ = dpkg_image
    result = invoke("packages", image)
    assert result.code == 0, result.err
    assert "Removed by a later layer: 1" in result.out
    assert "0: installed; 1: upgraded from 1.0-1; 3: removed" in result.out
    assert "/etc/beta.conf" in result.out


def test_a_whiteout_of_the_database_removes_its_packages(tmp_path: Path) -> None:
    status = b"Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n"
    layers = [
        layer_tar({"var/lib/dpkg/status": status}),
        layer_tar({"var/lib/.wh.dpkg": b""}),
    ]
    document = packages_json(write_image(tmp_path / "i.tar", layers))
    assert document["packages"] == []
    (removed,) = document["removed"]
    assert [e["action"] for e in removed["events"]] == ["installed", "removed"]


def test_distroless_apk_and_npm_fixtures(tmp_path: Path) -> None:
    distroless = (FIXTURES / "distroless-status.d-libsqlite3-0").read_bytes()
    layers = [
        layer_tar(
            {
                "var/lib/dpkg/status.d/libsqlite3-0": distroless,
                "var/lib/dpkg/status.d/libsqlite3-0.md5sums": (
                    b"0123  usr/lib/aarch64-linux-gnu/libsqlite3.so.0.8.6\n"
                ),
                "lib/apk/db/installed": (FIXTURES / "apk-installed-multiple").read_bytes(),
            }
        ),
        layer_tar(
            {
                "app/node_modules/left-pad/package.json": json.dumps(
                    {"name": "left-pad", "version": "1.3.0", "license": "WTFPL"}
                ).encode(),
                "app/node_modules/@types/node/package.json": (
                    b'{"name": "@types/node", "version": "20.1.0"}'
                ),
                "app/node_modules/left-pad/node_modules/x/package.json": (
                    b'{"name": "x", "version": "0.0.1"}'
                ),
                "app/node_modules/left-pad/lib/package.json": b'{"name": "no", "version": "9"}',
                "app/package.json": b'{"name": "app", "version": "1.0.0"}',
            }
        ),
    ]
    document = packages_json(write_image(tmp_path / "i.tar", layers), "--files")
    ecosystems: dict[str, list[str]] = {}
    for package in document["packages"]:
        ecosystems.setdefault(package["ecosystem"], []).append(package["name"])
    assert ecosystems["deb"] == ["libsqlite3-0"]
    assert len(ecosystems["apk"]) == 14
    assert sorted(ecosystems["npm"]) == ["@types/node", "left-pad", "x"]
    sqlite = by_name(document)["libsqlite3-0"]
    assert sqlite["files"] == ["/usr/lib/aarch64-linux-gnu/libsqlite3.so.0.8.6"]
    assert by_name(document)["left-pad"]["layer"] == 1


def test_malformed_databases_are_problems_not_failures(tmp_path: Path) -> None:
    layers = [
        layer_tar(
            {
                "lib/apk/db/installed": b"P:ok\nV:1\n\nnot a line\n",
                "app/node_modules/a/package.json": b"{broken",
                "app/node_modules/b/package.json": b'{"name": "b\\u001b[2J", "version": "1"}',
            }
        )
    ]
    image = write_image(tmp_path / "i.tar", layers)
    document = packages_json(image)
    problems = {(p["layer"], p["path"]) for p in document["problems"]}
    assert problems == {(0, "/lib/apk/db/installed"), (0, "/app/node_modules/a/package.json")}
    assert by_name(document)["b\x1b[2J"]["version"] == "1"
    result = invoke("packages", image)
    assert result.code == 0
    assert "\x1b[2J" not in result.out
    assert "b\\x1b[2J" in result.out
    assert "/lib/apk/db/installed: line 4" in result.out


def test_a_database_that_is_not_a_file_is_a_problem(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        info = tarfile.TarInfo("var/lib/dpkg/status")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    document = packages_json(write_image(tmp_path / "i.tar", [buffer.getvalue()]))
    (problem,) = document["problems"]
    assert "symlink" in problem["message"]


def test_an_image_without_databases(tmp_path: Path) -> None:
    image = write_image(tmp_path / "i.tar", [layer_tar({"etc/hostname": b"x\n"})])
    result = invoke("packages", image)
    assert result.code == 0
    assert "No package database found." in result.out


def test_the_hosts_own_dpkg_database(tmp_path: Path) -> None:
    """A real, large database: this machine's dpkg status and file lists in a layer, read as
    dpkg-query reads them."""
    admin = Path("/var/lib/dpkg")
    files = {"var/lib/dpkg/status": (admin / "status").read_bytes()}
    for listed in sorted((admin / "info").glob("*.list")):
        files[f"var/lib/dpkg/info/{listed.name}"] = listed.read_bytes()
    out = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={admin}",
            "-W",
            "-f=${db:Status-Status} ${Package} ${Version} ${Architecture}\n",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    expected = {
        tuple(line.split(" ")[1:]) for line in out.splitlines() if line.startswith("installed ")
    }
    document = packages_json(write_image(tmp_path / "host.tar", [layer_tar(files)]), "--files")
    found = {(p["name"], p["version"], p["arch"]) for p in document["packages"]}
    assert found == expected
    assert len(found) > 100
    dpkg_itself = by_name(document)["dpkg"]
    assert "/usr/bin/dpkg" in dpkg_itself["files"]


def test_limit_bounds_the_altered_files_table(
    dpkg_image: tuple[Path, list[dict[str, str]]],
) -> None:
    image, _ = dpkg_image
    result = invoke("packages", "--limit", "1", image)
    assert result.code == 0
    assert "… 1 more (--limit 0 lists all)." in result.out
    assert "more (--limit" not in invoke("packages", "--limit", "0", image).out


def test_a_database_over_its_bound_is_a_problem_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inspect_tool.analyze.packages import scan

    monkeypatch.setitem(scan.LIMITS, scan.Kind.APK, 5)
    image = write_image(tmp_path / "i.tar", [layer_tar({"lib/apk/db/installed": b"P:a\nV:1\n\n"})])
    document = packages_json(image)
    assert document["packages"] == []
    (problem,) = document["problems"]
    assert problem == {
        "layer": 0,
        "path": "/lib/apk/db/installed",
        "message": "9 bytes, over the 5-byte bound: not read",
    }
