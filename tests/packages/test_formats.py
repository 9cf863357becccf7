"""rpm's three database formats read without rpm (compared with Debian's rpm where it reads
the format), Go build information and Java archives; hostile variants of each."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from inspect_tool.analyze.packages import golang, java, rpm
from inspect_tool.analyze.packages.model import PackageDataError
from tests.packages.test_scan import by_name, packages_json
from tests.support.images import layer_tar, write_image
from tests.support.paths import CORPUS
from tests.support.rootfs import LayeredRoot, build_rpm
from tests.support.rootfs import rpm as run_rpm

FIXTURES = CORPUS / "packages"
QUERY = "%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE} %{ARCH}\\n"


def rpm_reference(tmp_path: Path, fixture: str, name: str) -> tuple[set[str], int]:
    """Debian's rpm listing a copy of the fixture: NAME EVR ARCH lines, and its file count."""
    directory = tmp_path / fixture
    directory.mkdir()
    (directory / name).write_bytes((FIXTURES / fixture).read_bytes())
    base = ["rpm", "--dbpath", str(directory)]
    listed = subprocess.run(
        [*base, "-qa", "--qf", QUERY], check=True, capture_output=True, text=True
    ).stdout
    files = subprocess.run([*base, "-qal"], check=True, capture_output=True, text=True).stdout
    count = sum(1 for line in files.splitlines() if line.startswith("/"))
    return set(listed.splitlines()), count


@pytest.mark.parametrize(
    ("fixture", "name", "parser", "count"),
    [
        ("rpm-bdb-Packages-libuuid", "Packages", rpm.parse_bdb, 1),
        ("rpm-bdb-Packages-syft", "Packages", rpm.parse_bdb, 1),
        ("rpmdb-sqlite-cbl-mariner-2.0", "rpmdb.sqlite", rpm.parse_sqlite, 129),
    ],
)
def test_rpm_databases_agree_with_rpm(tmp_path: Path, fixture, name, parser, count) -> None:  # type: ignore[no-untyped-def]
    packages = parser((FIXTURES / fixture).read_bytes(), database=name, location="/var/lib/rpm")
    expected, files = rpm_reference(tmp_path, fixture, name)
    assert len(packages) == count == len(expected)
    assert {f"{p.name} {p.version} {p.arch}" for p in packages} == expected
    assert sum(len(p.files) for p in packages) == files


def test_rpm_ndb_matches_go_rpmdb() -> None:
    """Debian's rpm is built without NDB: the count is go-rpmdb's own test's."""
    data = (FIXTURES / "rpm-ndb-Packages.db-sle15-bci").read_bytes()
    packages = rpm.parse_ndb(data, database="Packages.db", location="/usr/lib/sysimage/rpm")
    assert len(packages) == 35
    names = {p.name: p for p in packages}
    assert names["system-user-root"].version == "20190513-3.3.1"
    assert names["system-user-root"].files == ("/usr/lib/sysusers.d/system-user-root.conf",)
    assert all(p.arch for p in packages)


def test_rpm_header_fields() -> None:
    data = (FIXTURES / "rpm-bdb-Packages-libuuid").read_bytes()
    (package,) = rpm.parse_bdb(data, database="Packages", location="/var/lib/rpm")
    assert (package.name, package.version, package.source, package.license) == (
        "libuuid",
        "2.32.1-42.el8_8",
        "util-linux",
        "BSD",
    )
    assert package.installed_size == 35104


def header(entries: list[tuple[int, int, int, int]], data: bytes) -> bytes:
    index = b"".join(struct.pack(">iIiI", *e) for e in entries)
    return struct.pack(">II", len(entries), len(data)) + index + data


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\0\0", "shorter than 8"),
        (struct.pack(">II", 0x10000, 0), "entries"),
        (struct.pack(">II", 3, 10), "shorter than its index"),
        (header([(1000, 6, 50, 1)], b"abc\0"), "outside the data"),
        (header([(1000, 6, 0, 1)], b"abc"), "without its end"),
        (header([(1000, 8, 0, 5_000_000)], b"a\0"), "strings"),
        (header([(1116, 4, 0, 100)], b"\0" * 8), "past the data"),
        (header([(1001, 6, 0, 1)], b"1.0\0"), "without a name"),
        (
            header(
                [(1000, 6, 0, 1), (1116, 4, 4, 1), (1117, 8, 8, 1), (1118, 8, 10, 1)],
                b"abc\0\0\0\0\x05b\0/\0",
            ),
            "out of range",
        ),
    ],
)
def test_hostile_rpm_headers(blob: bytes, message: str) -> None:
    with pytest.raises(PackageDataError, match=message):
        rpm.parse_header(blob, database="db", location="/")


def test_hostile_rpm_stores() -> None:
    good = (FIXTURES / "rpm-bdb-Packages-libuuid").read_bytes()
    with pytest.raises(PackageDataError, match="hash magic"):
        rpm.parse_bdb(b"\0" * 4096, database="db", location="/")
    # every overflow page pointing back at itself: a loop, refused
    looped = bytearray(good)
    page_size = struct.unpack_from("<I", good, 20)[0]
    for number in range(1, len(good) // page_size):
        at = number * page_size
        if looped[at + 25] == 7:
            struct.pack_into("<I", looped, at + 16, number)
            struct.pack_into("<H", looped, at + 22, 1)  # one byte per page: never the length
    with pytest.raises(PackageDataError, match="overflow chain"):
        rpm.parse_bdb(bytes(looped), database="db", location="/")
    with pytest.raises(PackageDataError, match="RpmP"):
        rpm.parse_ndb(b"x" * 64, database="db", location="/")
    ndb = bytearray((FIXTURES / "rpm-ndb-Packages.db-sle15-bci").read_bytes())
    ndb[32:36] = b"Tolz"
    with pytest.raises(PackageDataError, match="bad magic"):
        rpm.parse_ndb(bytes(ndb), database="db", location="/")
    with pytest.raises(PackageDataError, match="not an SQLite"):
        rpm.parse_sqlite(b"junk" * 100, database="db", location="/")


def test_a_hostile_sqlite_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "rpmdb.sqlite"
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE VIEW Packages AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n) "
        "SELECT i AS hnum, x'00' AS blob FROM n"
    )
    connection.commit()
    connection.close()
    with pytest.raises(PackageDataError, match="no Packages table"):
        rpm.parse_sqlite(path.read_bytes(), database="db", location="/")


def test_rpm_justdb_layers_agree_with_rpm(tmp_path: Path) -> None:
    """rpm --justdb writes an sqlite rpmdb layer by layer: install, upgrade, second package."""
    root = LayeredRoot(tmp_path / "root")
    one = build_rpm(tmp_path, "tinyrpm", "1.0", {"/usr/bin/tinyrpm": b"1"})
    two = build_rpm(tmp_path, "tinyrpm", "1.10", {"/usr/bin/tinyrpm": b"2"})
    other = build_rpm(tmp_path, "otherrpm", "0.5", {"/usr/share/other/x": b"x"})
    seen = []
    run_rpm(root.root, "--initdb")
    for step in (["-i", str(one)], ["-U", str(two)], ["-i", str(other)]):
        run_rpm(root.root, "--justdb", "--nodeps", *step)
        root.snapshot()
        seen.append(
            set(run_rpm(root.root, "-qa", "--qf", "%{NAME} %{VERSION}-%{RELEASE}\\n").split("\n"))
            - {""}
        )
    image = write_image(tmp_path / "i.tar", root.layers)
    for layer, expected in enumerate(seen):
        document = packages_json(image, "--at", str(layer))
        assert {f"{p['name']} {p['version']}" for p in document["packages"]} == expected
    document = packages_json(image)
    tiny = by_name(document)["tinyrpm"]
    assert [(e["layer"], e["action"]) for e in tiny["events"]] == [
        (0, "installed"),
        (1, "upgraded"),
    ]
    assert tiny["location"] == "/var/lib/rpm"
    assert tiny["altered_files"] == [
        {"path": "/usr/bin/tinyrpm", "change": "deleted", "layer": None}
    ]
    assert document["databases"][0]["kind"] == "rpm-sqlite"


def test_rpm_fixtures_in_image_layers(tmp_path: Path) -> None:
    layers = [
        layer_tar({"var/lib/rpm/Packages": (FIXTURES / "rpm-bdb-Packages-libuuid").read_bytes()}),
        layer_tar(
            {
                "usr/lib/sysimage/rpm/Packages.db": (
                    FIXTURES / "rpm-ndb-Packages.db-sle15-bci"
                ).read_bytes(),
            }
        ),
    ]
    document = packages_json(write_image(tmp_path / "i.tar", layers))
    locations = {p["location"] for p in document["packages"]}
    assert locations == {"/var/lib/rpm", "/usr/lib/sysimage/rpm"}
    assert len(document["packages"]) == 36
    assert document["problems"] == []


def wal_database(tmp_path: Path, committed: int, pending: int) -> tuple[bytes, bytes]:
    """An rpmdb.sqlite in WAL mode, as a running rpm leaves it: ``committed`` packages in
    the database file, ``pending`` more only in its -wal file (copied before any
    checkpoint); the header blobs are the CBL-Mariner fixture's."""
    import shutil
    import sqlite3

    # the corpus is read-only (CI mounts it so): opened immutable, nothing written beside it
    fixture = FIXTURES / "rpmdb-sqlite-cbl-mariner-2.0"
    source = sqlite3.connect(f"file:{fixture}?mode=ro&immutable=1", uri=True)
    blobs = [row[0] for row in source.execute("SELECT blob FROM Packages ORDER BY hnum")]
    source.close()
    path = tmp_path / "rpmdb.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB)")
    db.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in blobs[:committed]])
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA wal_autocheckpoint=0")
    for blob in blobs[committed : committed + pending]:
        db.execute("INSERT INTO Packages (blob) VALUES (?)", (blob,))
        db.commit()
    shutil.copyfile(path, tmp_path / "copy.sqlite")
    shutil.copyfile(tmp_path / "rpmdb.sqlite-wal", tmp_path / "copy.sqlite-wal")
    db.close()
    return (tmp_path / "copy.sqlite").read_bytes(), (tmp_path / "copy.sqlite-wal").read_bytes()


def test_rpm_sqlite_write_ahead_log_is_applied(tmp_path: Path) -> None:
    data, wal = wal_database(tmp_path, 100, 29)
    assert len(wal) > 32
    alone = rpm.parse_sqlite(data, database="db", location="/")
    assert len(alone) == 100
    applied = rpm.parse_sqlite(data, database="db", location="/", wal=wal)
    assert len(applied) == 129
    # a frame whose checksum fails ends the log there, as SQLite reads it
    broken = bytearray(wal)
    broken[32 + 24 + 100] ^= 0xFF  # inside the first frame's page
    assert len(rpm.parse_sqlite(data, database="db", location="/", wal=bytes(broken))) == 100
    with pytest.raises(PackageDataError, match="write-ahead log"):
        rpm.parse_sqlite(data, database="db", location="/", wal=b"\0" * 64)
    # in an image: the database in one layer, its log written by the next
    layers = [
        layer_tar({"var/lib/rpm/rpmdb.sqlite": data}),
        layer_tar({"var/lib/rpm/rpmdb.sqlite-wal": wal}),
    ]
    document = packages_json(write_image(tmp_path / "i.tar", layers))
    assert len(document["packages"]) == 129
    installed = {p["layer"] for p in document["packages"]}
    assert installed == {0, 1}
    bad = [layers[0], layer_tar({"var/lib/rpm/rpmdb.sqlite-wal": b"\0" * 64})]
    document = packages_json(write_image(tmp_path / "bad.tar", bad))
    assert len(document["packages"]) == 100
    (problem,) = document["problems"]
    assert problem["path"] == "/var/lib/rpm/rpmdb.sqlite-wal"


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A Go program with a (locally replaced) dependency, built by the Go toolchain."""
    work = tmp_path_factory.mktemp("go")
    (work / "lib").mkdir()
    (work / "lib/go.mod").write_text("module example.com/lib\n\ngo 1.19\n")
    (work / "lib/lib.go").write_text('package lib\n\nfunc Hello() string { return "hi" }\n')
    (work / "app").mkdir()
    (work / "app/go.mod").write_text(
        "module example.com/app\n\ngo 1.19\n\nrequire example.com/lib v1.2.3\n\n"
        "replace example.com/lib => ../lib\n"
    )
    (work / "app/main.go").write_text(
        'package main\n\nimport "example.com/lib"\n\nfunc main() { println(lib.Hello()) }\n'
    )
    env = {
        **os.environ,
        "GOPROXY": "off",
        "GOFLAGS": "-mod=mod",
        "GOCACHE": str(work / "c"),
        "GOPATH": str(work / "p"),
    }
    subprocess.run(
        ["go", "build", "-o", str(work / "app.bin"), "."], cwd=work / "app", env=env, check=True
    )
    return (work / "app.bin").read_bytes()


def test_go_build_information_while_streaming(go_binary: bytes) -> None:
    for chunk in (7, 4093, 1 << 20):  # the magic split across chunks, too
        finder = golang.BuildInfoFinder()
        for start in range(0, len(go_binary), chunk):
            finder.feed(go_binary[start : start + chunk])
        assert finder.found is not None
        modules = {p.name: p.version for p in golang.parse_buildinfo(finder.found, database="/b")}
        assert modules == {"example.com/app": "(devel)", "example.com/lib": "(devel)"}


def test_go_misaligned_magic_is_ignored_and_modinfo_checked() -> None:
    finder = golang.BuildInfoFinder()
    finder.feed(b"x" + golang.MAGIC + b"\0" * 64)
    assert finder.found is None
    with pytest.raises(PackageDataError, match="sentinels"):
        golang.parse_buildinfo(b"go1.21\0path\tx\n", database="/b")


def test_go_binaries_in_an_image(tmp_path: Path, go_binary: bytes) -> None:
    buffer = io.BytesIO()
    import tarfile

    with tarfile.open(fileobj=buffer, mode="w") as tf:
        info = tarfile.TarInfo("usr/local/bin/app")
        info.size, info.mode = len(go_binary), 0o755
        tf.addfile(info, io.BytesIO(go_binary))
        info = tarfile.TarInfo("usr/local/bin/data.bin")  # not executable: never read
        info.size, info.mode = len(go_binary), 0o644
        tf.addfile(info, io.BytesIO(go_binary))
    document = packages_json(write_image(tmp_path / "i.tar", [buffer.getvalue()]))
    found = {(p["ecosystem"], p["name"], p["location"]) for p in document["packages"]}
    assert found == {
        ("go", "example.com/app", "/usr/local/bin/app"),
        ("go", "example.com/lib", "/usr/local/bin/app"),
    }


def jar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_java_archives(tmp_path: Path) -> None:
    fat = jar(
        {
            "META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\r\nImplementation-Title: app\r\n",
            "META-INF/maven/org.example/app/pom.properties": (
                b"#generated\ngroupId=org.example\nartifactId=app\nversion=2.1.0\n"
            ),
            "META-INF/maven/com.google/guava/pom.properties": (
                b"groupId=com.google\nartifactId=guava\nversion=32.0\n"
            ),
        }
    )
    plain = jar(
        {
            "META-INF/MANIFEST.MF": (
                b"Manifest-Version: 1.0\nBundle-SymbolicName: org.x.lib;singleton:=true\n"
                b"Bundle-Version: 1.0.0.v20\n 240101\n\nName: other\nImplementation-Version: 9\n"
            )
        }
    )
    found = {p.name: p.version for p in java.parse_archive(fat, database="/a.jar")}
    assert found == {"org.example:app": "2.1.0", "com.google:guava": "32.0"}
    (lib,) = java.parse_archive(plain, database="/opt/lib.jar")
    assert (lib.name, lib.version) == ("org.x.lib", "1.0.0.v20240101")
    with pytest.raises(PackageDataError, match="not a zip"):
        java.parse_archive(b"PK\3\4 broken", database="/x.jar")
    image = write_image(tmp_path / "i.tar", [layer_tar({"opt/app.jar": fat, "opt/bad.war": b"x"})])
    document = packages_json(image)
    assert {p["name"] for p in document["packages"]} == {"org.example:app", "com.google:guava"}
    assert [p["path"] for p in document["problems"]] == ["/opt/bad.war"]
