"""The package readers as pure parsers: public fixtures, malformed input, version order."""

from __future__ import annotations

import pytest

from inspect_tool.analyze.packages import apk, dpkg, npm, python
from inspect_tool.analyze.packages.model import Ecosystem, PackageDataError
from inspect_tool.analyze.packages.scan import Kind, classify
from inspect_tool.analyze.packages.versions import compare
from tests.support.paths import CORPUS

FIXTURES = CORPUS / "packages"


def test_distroless_status_d_entry() -> None:
    data = (FIXTURES / "distroless-status.d-libsqlite3-0").read_bytes()
    (package,) = dpkg.parse_status(data, database="/s", location="/var/lib/dpkg")
    assert (package.name, package.version, package.arch, package.source) == (
        "libsqlite3-0",
        "3.34.1-3",
        "arm64",
        "sqlite3",
    )
    assert package.installed_size == 1490 * 1024


def test_apk_installed_matches_the_source_projects_count() -> None:
    data = (FIXTURES / "apk-installed-multiple").read_bytes()
    packages = apk.parse_installed(data, database="/lib/apk/db/installed", location="/x")
    assert len(packages) == 14  # syft's own test of this file
    names = [line[2:] for line in data.decode().splitlines() if line.startswith("P:")]
    assert [p.name for p in packages] == names
    base = next(p for p in packages if p.name == "alpine-baselayout-data")
    assert (base.version, base.arch, base.license, base.source) == (
        "3.2.0-r22",
        "x86_64",
        "GPL-2.0-only",
        "alpine-baselayout",
    )
    assert base.installed_size == 73728
    assert "/etc/fstab" in base.files


def test_dpkg_status_keeps_only_installed_packages() -> None:
    status = (
        b"Package: kept\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n"
        b"Package: gone\nStatus: deinstall ok config-files\nVersion: 2\n\n"
        b"Package: half\nStatus: install reinstreq half-installed\nVersion: 3\n"
    )
    names = [p.name for p in dpkg.parse_status(status, database="s", location="/")]
    assert names == ["kept", "half"]


@pytest.mark.parametrize(
    ("parser", "data", "message"),
    [
        (lambda d: apk.parse_installed(d, database="db", location="/"), b"P:x\nbad\n", "line 2"),
        (
            lambda d: apk.parse_installed(d, database="db", location="/"),
            b"V:1\n\n",
            "without a name",
        ),
        (lambda d: dpkg.parse_status(d, database="db", location="/"), b"Version: 1\n", "Package"),
        (lambda d: npm.parse_package_json(d, database="db", location="/"), b"{", "JSON"),
        (lambda d: npm.parse_package_json(d, database="db", location="/"), b"[]", "object"),
        (
            lambda d: python.parse_metadata(d, database="db", location="/"),
            b"Metadata-Version: 2.1\nName: x\n",
            "Version",
        ),
        (
            lambda d: npm.parse_package_json(d, database="db", location="/"),
            b"[" * 100 + b"]" * 100,
            "deep",
        ),
    ],
)
def test_malformed_input_is_a_package_data_error(parser, data: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PackageDataError) as caught:
        parser(data)
    assert message.lower() in str(caught.value).lower()
    assert caught.value.subject == "db"


def test_npm_licence_forms() -> None:
    def licence(doc: bytes) -> str:
        package = npm.parse_package_json(doc, database="d", location="/")
        assert package is not None
        return package.license

    assert licence(b'{"name":"a","version":"1.0.0","license":"MIT"}') == "MIT"
    assert licence(b'{"name":"a","version":"1.0.0","license":{"type":"ISC"}}') == "ISC"
    assert licence(b'{"name":"a","version":"1.0.0","licenses":[{"type":"A"},"B"]}') == "A OR B"
    assert npm.parse_package_json(b'{"private":true}', database="d", location="/") is None


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/var/lib/dpkg/status", Kind.DPKG_STATUS),
        ("/var/lib/dpkg/status-old", None),
        ("/var/lib/dpkg/status.d/base", Kind.DPKG_STATUS_D),
        ("/var/lib/dpkg/status.d/base.md5sums", Kind.DPKG_MD5SUMS),
        ("/var/lib/dpkg/info/libc6:amd64.list", Kind.DPKG_LIST),
        ("/lib/apk/db/installed", Kind.APK),
        ("/usr/lib/python3/dist-packages/a-1.dist-info/METADATA", Kind.PY_METADATA),
        ("/usr/lib/python3/dist-packages/a-1.dist-info/RECORD", Kind.PY_RECORD),
        ("/usr/lib/python3/dist-packages/a-1.egg-info/PKG-INFO", Kind.PY_METADATA),
        ("/usr/lib/python2.7/dist-packages/a-1.egg-info", Kind.PY_METADATA),
        ("/app/node_modules/a/package.json", Kind.NPM),
        ("/app/node_modules/@scope/a/package.json", Kind.NPM),
        ("/app/node_modules/a/node_modules/b/package.json", Kind.NPM),
        ("/app/node_modules/a/lib/package.json", None),
        ("/app/node_modules/@scope/package.json", None),
        ("/app/package.json", None),
    ],
)
def test_classify(path: str, kind: Kind | None) -> None:
    assert classify(path) is kind


@pytest.mark.parametrize(
    ("ecosystem", "lower", "higher"),
    [
        (Ecosystem.DEB, "1.0-1", "1.0-1+b1"),
        (Ecosystem.DEB, "1.0~rc1-1", "1.0-1"),
        (Ecosystem.DEB, "2.0-1", "1:1.0-1"),
        (Ecosystem.RPM, "1.0-1.el8", "1.0-2.el8"),
        (Ecosystem.RPM, "1.0~rc1-1", "1.0-1"),
        (Ecosystem.RPM, "1.0-1", "1.0^git1-1"),
        (Ecosystem.RPM, "9.0-1", "1:1.0-1"),
        (Ecosystem.RPM, "1.9-1", "1.10-1"),
        (Ecosystem.RPM, "1.0a-1", "1.0.1-1"),
        (Ecosystem.APK, "1.2.3-r0", "1.2.3-r1"),
        (Ecosystem.APK, "1.2.3_rc1-r0", "1.2.3-r0"),
        (Ecosystem.APK, "1.2.3-r9", "1.2.3_p1-r0"),
        (Ecosystem.APK, "1.2-r0", "1.2a-r0"),
        (Ecosystem.APK, "1.9-r0", "1.10-r0"),
        (Ecosystem.PYTHON, "1.0rc1", "1.0"),
        (Ecosystem.PYTHON, "1.9", "1.10"),
        (Ecosystem.PYTHON, "1.0", "1.0.post1"),
        (Ecosystem.NPM, "1.0.0-alpha", "1.0.0-alpha.1"),
        (Ecosystem.NPM, "1.0.0-alpha.beta", "1.0.0-beta"),
        (Ecosystem.NPM, "1.0.0-rc.1", "1.0.0"),
        (Ecosystem.NPM, "1.9.0", "1.10.0"),
        (Ecosystem.GO, "v1.2.3", "v1.10.0"),
        (Ecosystem.JAVA, "1.2", "1.10"),
    ],
)
def test_version_order(ecosystem: Ecosystem, lower: str, higher: str) -> None:
    assert compare(ecosystem, lower, higher) == -1
    assert compare(ecosystem, higher, lower) == 1
    assert compare(ecosystem, lower, lower) == 0


def test_invalid_versions_have_no_order() -> None:
    assert compare(Ecosystem.PYTHON, "not a version", "1.0") is None
    assert compare(Ecosystem.NPM, "latest", "1.0.0") is None
    assert compare(Ecosystem.APK, "1.0-r0", "x") is None
    assert compare(Ecosystem.RPM, "x" * 300, "1") is None


def test_dpkg_status_with_latin1_bytes_is_still_read() -> None:
    status = b"Package: old\nStatus: install ok installed\nVersion: 1\nMaintainer: Jos\xe9 <j@x>\n"
    (package,) = dpkg.parse_status(status, database="s", location="/")
    assert (package.name, package.version) == ("old", "1")


def test_dpkg_paragraph_field_count_is_bounded() -> None:
    status = b"Package: a\n" + b"".join(b"F%d: v\n" % i for i in range(dpkg.MAX_FIELDS + 1))
    with pytest.raises(PackageDataError, match="more than 1000 fields"):
        dpkg.parse_status(status, database="s", location="/")
