"""dockscope reads a layer tar exactly as Go's archive/tar does, the reader of Docker,
containerd, buildkit and umoci: a table of archives written byte by byte, each with the entries
Go returns (or its error), checked against both of dockscope's readers and, when Debian's
golang-go is installed, against a tiny Go program (tests/gotar) reading the same bytes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from inspect_tool.layers.tarformat import TarFormatError
from inspect_tool.layers.tarreader import TarReader
from inspect_tool.layers.tarstream import TarScanner
from tests.support.cli import invoke
from tests.support.images import docker_archive_members, write_tar
from tests.support.paths import GOTAR as GOTAR_DIR

GOTAR = GOTAR_DIR / "main.go"
END = bytes(1024)


# --- writing tar headers byte by byte -----------------------------------------------------------


def octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\x00"


def base256(value: int, width: int) -> bytes:
    """GNU base-256: two's complement with the top bit set."""
    raw = (value % (1 << (8 * width))).to_bytes(width, "big")
    return bytes([raw[0] | 0x80]) + raw[1:]


def header(
    name: bytes | str,
    typeflag: bytes = b"0",
    *,
    size: int | bytes = 0,
    mode: bytes = b"0000644\x00",
    linkname: bytes = b"",
    magic: bytes = b"ustar\x0000",
    uname: bytes = b"",
    devmajor: bytes = b"",
    devminor: bytes = b"",
    prefix: bytes = b"",
    mtime: bytes = octal(0, 12),
    raw: dict[int, bytes] | None = None,
    signed_checksum: bool = False,
) -> bytes:
    block = bytearray(512)
    name_bytes = name.encode() if isinstance(name, str) else name

    def put(at: int, value: bytes) -> None:
        block[at : at + len(value)] = value

    put(0, name_bytes)
    put(100, mode)
    put(108, octal(0, 8))
    put(116, octal(0, 8))
    put(124, size if isinstance(size, bytes) else octal(size, 12))
    put(136, mtime)
    put(156, typeflag)
    put(157, linkname)
    put(257, magic)
    put(265, uname)
    put(329, devmajor)
    put(337, devminor)
    put(345, prefix)
    for at, value in (raw or {}).items():
        put(at, value)
    block[148:156] = b" " * 8
    total = sum(block) if not signed_checksum else sum(b - 256 if b > 127 else b for b in block)
    block[148:156] = f"{total:06o}".encode() + b"\x00 "
    return bytes(block)


def data(payload: bytes) -> bytes:
    return payload + bytes(-len(payload) % 512)


def member(name: str, payload: bytes = b"", typeflag: bytes = b"0", **kw: object) -> bytes:
    return header(name, typeflag, size=len(payload), **kw) + data(payload)  # type: ignore[arg-type]


def record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax(records: bytes, typeflag: bytes = b"x", name: str = "PaxHeaders/x") -> bytes:
    return header(name, typeflag, size=len(records)) + data(records)


def gnu(typeflag: bytes, text: bytes) -> bytes:
    return header("././@LongLink", typeflag, size=len(text) + 1, magic=b"ustar  \x00") + data(
        text + b"\x00"
    )


ELF = b"\x7fELF\x02\x01\x01" + bytes(57)


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    archive: bytes
    # what Docker reads (Go's entries, global headers skipped): (name, typeflag, size)
    entries: tuple[tuple[str, str, int], ...]
    error: str | None = None  # a fragment of dockscope's message when Go refuses the archive
    ambiguous: str | None = None  # a fragment of the layer-tar-ambiguous finding


def pax_refused(case_id: str, key: bytes, value: bytes, error: str) -> Case:
    """A member ``x`` whose PAX record ``key=value`` Go refuses: no entry, ``error``."""
    return Case(case_id, pax(record(key, value)) + member("x") + END, (), error=error)


def sparse_refused(
    case_id: str, blocks: bytes, sparse_map: bytes, stored: bytes, error: str
) -> Case:
    """A PAX 0.1 sparse file of 20 bytes, its map of ``blocks`` fragments and ``stored`` as
    its data, that Go refuses: no entry, ``error``."""
    records = (
        record(b"GNU.sparse.numblocks", blocks)
        + record(b"GNU.sparse.map", sparse_map)
        + record(b"GNU.sparse.size", b"20")
    )
    return Case(case_id, pax(records) + member("s", stored) + END, (), error=error)


def _old_sparse() -> bytes:
    # an old GNU sparse file: 2 data fragments of a 10000-byte file, map in the header
    raw = {
        386: octal(0, 12) + octal(512, 12) + octal(8192, 12) + octal(512, 12),
        483: octal(10000, 12),
    }
    return (
        header("sparse", b"S", size=1024, magic=b"ustar  \x00", raw=raw) + b"A" * 512 + b"B" * 512
    )


def _old_sparse_extended() -> bytes:
    # five fragments: four in the header, one in an extension block that must not be read as
    # a header
    raw = {386: b"".join(octal(i * 1024, 12) + octal(512, 12) for i in range(4)), 482: b"\x01"}
    raw[483] = octal(8192, 12)
    ext = bytearray(512)
    ext[0:24] = octal(6144, 12) + octal(512, 12)
    head = header("sparse", b"S", size=2560, magic=b"ustar  \x00", raw=raw)
    return head + bytes(ext) + b"D" * 2560


def _pax_sparse_1_0() -> bytes:
    sparse_map = data(b"2\n0\n5\n100\n3\n")
    records = (
        record(b"GNU.sparse.major", b"1")
        + record(b"GNU.sparse.minor", b"0")
        + record(b"GNU.sparse.name", b"real-name")
        + record(b"GNU.sparse.realsize", b"200")
    )
    body = sparse_map + b"hello" + b"abc"
    return pax(records) + header("GNUSparseFile.0/real-name", size=len(body)) + data(body)


def _pax_sparse_0_1() -> bytes:
    records = (
        record(b"GNU.sparse.numblocks", b"1")
        + record(b"GNU.sparse.map", b"10,4")
        + record(b"GNU.sparse.name", b"sparse01")
        + record(b"GNU.sparse.size", b"20")
    )
    return pax(records) + member("GNUSparseFile.0/x", b"WXYZ")


CASES = [
    Case("plain", member("a", b"x") + END, (("a", "0", 1),)),
    Case(
        "nul-type-trailing-slash-is-a-directory",
        member("hide/", b"", typeflag=b"\x00")
        + header("hide/", b"\x00", size=1024)
        + member("evil", ELF, mode=b"0004755\x00")
        + END,
        (("hide/", "5", 0), ("hide/", "5", 0), ("evil", "0", len(ELF))),
    ),
    Case("nul-type-is-a-file", member("f", b"abc", typeflag=b"\x00") + END, (("f", "0", 3),)),
    Case(
        "gnu-long-name-beats-pax-path",
        pax(record(b"path", b"innocent"))
        + gnu(b"L", b"bin/malware")
        + member("short", b"evil")
        + END,
        (("bin/malware", "0", 4),),
        ambiguous="GNU long name 'bin/malware'",
    ),
    Case(
        "gnu-long-name-beats-pax-path-either-order",
        gnu(b"L", b"bin/malware") + pax(record(b"path", b"innocent")) + member("s", b"e") + END,
        (("bin/malware", "0", 1),),
        ambiguous="PAX path",
    ),
    Case(
        "gnu-long-link-beats-pax-linkpath",
        pax(record(b"linkpath", b"/etc/hosts"))
        + gnu(b"K", b"/etc/shadow")
        + header("l", b"2", linkname=b"x")
        + END,
        (("l", "2", 0),),
        ambiguous="GNU long link '/etc/shadow'",
    ),
    Case(
        "two-pax-headers-last-wins",
        pax(record(b"path", b"first") + record(b"size", b"512"))
        + pax(record(b"mtime", b"5"))
        + member("second", b"x" * 3)
        + END,
        (("second", "0", 3),),
        ambiguous="follows 2 PAX headers",
    ),
    Case(
        "global-header-skipped-and-not-applied",
        pax(record(b"size", b"1024") + record(b"path", b"everything"), b"g", "pax_global_header")
        + member("a", b"1")
        + member("b", b"2")
        + END,
        (("a", "0", 1), ("b", "0", 1)),
        ambiguous="umoci refuses",
    ),
    Case(
        "global-header-drops-pending-pax",
        pax(record(b"path", b"lost")) + pax(b"", b"g", "g") + member("kept", b"k") + END,
        (("kept", "0", 1),),
        ambiguous="PAX global header",
    ),
    Case(
        "empty-pax-value-keeps-header-field",
        pax(record(b"path", b"")) + member("field-name", b"v") + END,
        (("field-name", "0", 1),),
    ),
    Case(
        "pax-xattrs-and-times",
        pax(
            record(b"SCHILY.xattr.user.k", b"v\x00w")
            + record(b"mtime", b"-1.5")
            + record(b"atime", b"1.000000000999")
        )
        + member("x", b"")
        + END,
        (("x", "0", 0),),
    ),
    Case(
        "ustar-prefix",
        member("name", b"", prefix=b"dir/sub") + END,
        (("dir/sub/name", "0", 0),),
    ),
    Case(
        "star-prefix-is-131-bytes",
        member(
            "n", b"", prefix=b"p" * 131, raw={476: octal(1, 12), 488: octal(2, 12), 508: b"tar\x00"}
        )
        + END,
        (("p" * 131 + "/n", "0", 0),),
    ),
    Case(
        "gnu-header-has-no-prefix",
        member("n", b"", magic=b"ustar  \x00", raw={345: octal(1, 12), 369: b"ignored"}) + END,
        (("n", "0", 0),),
    ),
    Case(
        "pre-go1.8-gnu-prefix-fallback",
        member("n", b"", magic=b"ustar  \x00", prefix=b"old/prefix") + END,
        (("old/prefix/n", "0", 0),),
    ),
    Case(
        "v7-header-ignores-prefix-and-devices",
        member("n", b"", magic=b"ustar 00", prefix=b"p", devmajor=b"zz") + END,
        (("n", "0", 0),),
    ),
    Case(
        "signed-checksum",
        member("caf\xe9".encode("latin-1").decode("latin-1"), b"", signed_checksum=True) + END,
        (("caf\xe9", "0", 0),),
    ),
    Case(
        "header-only-types-carry-no-data",
        header("d", b"5", size=1024) + header("l", b"1", size=-1 % 8**11, linkname=b"d") + END,
        (("d", "5", 0), ("l", "1", 0)),
    ),
    Case(
        "base256-size",
        header("big", size=base256(3, 12)) + data(b"abc") + END,
        (("big", "0", 3),),
    ),
    Case(
        "base256-device-numbers",
        header("dev", b"3", devmajor=base256(1 << 40, 8), devminor=base256(-1, 8)) + END,
        (("dev", "3", 0),),
    ),
    Case(
        "old-gnu-sparse",
        _old_sparse() + member("after", b"z") + END,
        (("sparse", "S", 10000), ("after", "0", 1)),
    ),
    Case(
        "old-gnu-sparse-extension-block",
        _old_sparse_extended() + member("after", b"z") + END,
        (("sparse", "S", 8192), ("after", "0", 1)),
    ),
    Case(
        "pax-sparse-1.0",
        _pax_sparse_1_0() + member("after", b"z") + END,
        (("real-name", "0", 200), ("after", "0", 1)),
    ),
    Case("pax-sparse-0.1", _pax_sparse_0_1() + END, (("sparse01", "0", 20),)),
    Case("no-end-marker", member("a", b"x"), (("a", "0", 1),)),
    Case("one-zero-block-then-eof", member("a", b"x") + bytes(512), (("a", "0", 1),)),
    Case(
        "eof-in-padding-ends-the-archive",
        member("a", b"x")[:600],
        (("a", "0", 1),),
        ambiguous="padding",
    ),
    Case("trailing-garbage-after-end", member("a", b"x") + END + b"junk", (("a", "0", 1),)),
    # --- what Go refuses ---
    Case(
        "octal-size-minus-one",
        header("hidden", size=b"-1\x00") + member("evil", ELF) + END,
        (),
        error="'hidden'",
    ),
    Case(
        "octal-size-wraps-negative",
        header("wrap", size=b"1777777777777777777777"[:11] + b"\x00")  # fits: positive
        + END,
        (),
        error="ends inside a member's data",
    ),
    Case(
        "base256-negative-size",
        header("neg", size=base256(-1, 12)) + member("evil", ELF) + END,
        (),
        error="negative size",
    ),
    Case(
        "base256-size-over-63-bits",
        header("huge", size=b"\x80\x00\x00\x00\x80" + bytes(7)) + END,
        (),
        error="over 63 bits",
    ),
    pax_refused("pax-size-over-int64", b"size", b"9223372036854775808", "64 bits"),
    pax_refused("pax-negative-size", b"size", b"-5", "-5"),
    Case(
        "pax-negative-size-on-a-directory-is-fine",
        pax(record(b"size", b"-5")) + header("d/", b"5") + END,
        (("d/", "5", 0),),
    ),
    *(
        pax_refused(f"pax-mtime-{value.decode()}", b"mtime", value, "not a")
        for value in (b"nan", b"inf", b"1e20", b"1.5e3", b"0x10", b"1_000", b" 1")
    ),
    pax_refused("pax-mtime-over-int64", b"mtime", b"99999999999999999999", "64 bits"),
    pax_refused("pax-xattr-key-with-nul", b"SCHILY.xattr.user.\x00k", b"v", "NUL"),
    pax_refused("pax-path-with-nul", b"path", b"a\x00b", "NUL"),
    Case(
        "pax-record-bad-length",
        pax(b"99 path=x\n") + member("x") + END,
        (),
        error="PAX record length",
    ),
    Case(
        "pax-record-no-equals",
        pax(b"9 pathx\n\n"[:8] + b"\n") + member("x") + END,
        (),
        error="invalid PAX header",
    ),
    Case(
        "pax-global-header-bad-record",
        pax(b"garbage", b"g", "g") + member("x") + END,
        (),
        error="invalid PAX header",
    ),
    pax_refused("pax-uid-not-decimal", b"uid", b"12a", "not a decimal"),
    pax_refused("extended-header-over-1mib", b"comment", b"x" * (1 << 20), "1 MiB"),
    Case(
        "bad-checksum",
        member("a", b"x")[:148] + b"0000000\x00" + member("a", b"x")[156:],
        (),
        error="checksum",
    ),
    Case("mode-not-octal", member("m", mode=b"0009\x00") + END, (), error="mode"),
    Case(
        "devmajor-not-octal-in-ustar",
        header("c", b"3", devmajor=b"zz") + END,
        (),
        error="devmajor",
    ),
    Case(
        "zero-block-then-header",
        bytes(512) + member("hidden", ELF) + END,
        (),
        error="zero block",
    ),
    Case("truncated-data", header("t", size=100) + b"x" * 10, (), error="member's data"),
    Case("truncated-header", member("a", b"x") + b"\x01" * 100, (("a", "0", 1),), error="header"),
    sparse_refused("sparse-map-past-size", b"1", b"10,40", b"x" * 40, "outside its size"),
    sparse_refused("sparse-map-overlapping", b"2", b"0,4,2,4", b"x" * 8, "overlap"),
    sparse_refused(
        "sparse-map-references-missing-data", b"1", b"0,8", b"x" * 4, "references 8 bytes"
    ),
    Case(
        "sparse-on-a-symlink",
        pax(
            record(b"GNU.sparse.major", b"0")
            + record(b"GNU.sparse.minor", b"1")
            + record(b"GNU.sparse.numblocks", b"0")
        )
        + header("l", b"2", linkname=b"t")
        + END,
        (),
        error="sparse map on a symlink",
    ),
    Case(
        "old-sparse-not-gnu",
        header("s", b"S", size=0) + END,
        (),
        error="not GNU",
    ),
]


def _hex(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").hex()


def dockscope_reading(archive: bytes) -> tuple[list[dict[str, object]], str | None]:
    """Every entry the pull reader yields, its content read to the end, or the error."""
    entries: list[dict[str, object]] = []
    reader = TarReader(io.BytesIO(archive))
    try:
        for m in reader:
            content = b"".join(reader.iter_data())
            entries.append(
                {
                    "name": _hex(m.name),
                    "typeflag": ord(m.typeflag),
                    "linkname": _hex(m.linkname),
                    "mode": m.mode,
                    "uid": m.uid,
                    "gid": m.gid,
                    "uname": _hex(m.uname),
                    "gname": _hex(m.gname),
                    "mtime_ns": m.mtime_ns,
                    "devmajor": m.devmajor,
                    "devminor": m.devminor,
                    "xattrs": {_hex(k): v.hex() for k, v in m.xattrs.items()},
                    "sha256": hashlib.sha256(content).hexdigest(),
                    "length": len(content),
                    "size": m.size,
                }
            )
    except TarFormatError as exc:
        return entries, exc.message
    return entries, None


def scanner_reading(archive: bytes, chunk: int) -> tuple[list[str], str | None, list[str]]:
    scanner = TarScanner(keep_entries=True)
    for i in range(0, len(archive), chunk):
        scanner.feed(archive[i : i + chunk])
    scan = scanner.finish()
    return [h.name for h in scanner.entries], scan.error, scan.ambiguities


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_table_matches_go(case: Case) -> None:
    entries, error = dockscope_reading(case.archive)
    got = [
        (
            bytes.fromhex(str(e["name"])).decode("utf-8", "surrogateescape"),
            chr(int(str(e["typeflag"]))),
            e["size"],
        )
        for e in entries
    ]
    if case.error is None:
        assert error is None
        assert got == list(case.entries)
    else:
        assert error is not None and case.error in error, error
        assert got == list(case.entries)[: len(got)]
    # the push scanner (verify) reads the same entries and the same error, in any chunking
    for chunk in (1, 7, 512, 1 << 20):
        names, scan_error, ambiguities = scanner_reading(case.archive, chunk)
        assert names == [name for name, _, _ in got] or (
            error and names[: len(got)] == [n for n, _, _ in got]
        )
        assert (scan_error is None) == (error is None), (chunk, scan_error, error)
        if case.ambiguous:
            assert any(case.ambiguous in a for a in ambiguities), ambiguities
        else:
            assert not ambiguities


# --- the oracle: Go's own archive/tar -----------------------------------------------------------


@pytest.fixture(scope="session")
def gotar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed (Debian: golang-go, in the Makefile's DEBS_TEST)")
    work = tmp_path_factory.mktemp("gotar")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "GOCACHE": str(work / "cache"),
        "GOPATH": str(work / "gopath"),
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GO111MODULE": "off",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    binary = work / "gotar"
    subprocess.run(
        [go, "build", "-o", str(binary), str(GOTAR)], env=env, check=True, capture_output=True
    )
    return binary


def go_reading(binary: Path, archive: bytes) -> tuple[list[dict[str, object]], str | None]:
    out = subprocess.run([str(binary)], input=archive, capture_output=True, check=True).stdout
    entries: list[dict[str, object]] = []
    for line in out.decode().splitlines():
        item = json.loads(line)
        if "error" in item:
            return entries, item["error"]
        if "end" in item:
            return entries, None
        if item["typeflag"] == ord("g"):
            continue  # Docker and containerd skip global headers
        item["mtime_ns"] = item.pop("mtime") * 1_000_000_000 + item.pop("mtime_nsec")
        item["mode"] &= 0o7777
        item.pop("size")  # Go leaves a header-only type's size as stored; the length counts
        entries.append(item)
    raise AssertionError(f"gotar ended without a verdict: {out!r}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_table_against_go_oracle(gotar: Path, case: Case) -> None:
    go_entries, go_error = go_reading(gotar, case.archive)
    entries, error = dockscope_reading(case.archive)
    for e in entries:
        size = e.pop("size")
        assert size == e["length"]
    assert entries == go_entries[: len(entries)]
    assert (error is None) == (go_error is None), (error, go_error)
    if go_error is None:
        assert entries == go_entries
    else:  # Go may return the entries its error comes after; dockscope stops at the same one
        assert len(go_entries) - len(entries) in (0, 1)


# --- what the commands show -------------------------------------------------------------------


def image_with(tmp_path: Path, layer: bytes) -> Path:
    return write_tar(tmp_path / "image.tar", docker_archive_members([layer]))


def verify_findings(path: Path) -> dict[str, list[dict[str, object]]]:
    code, out, _ = invoke("verify", "--json", str(path))
    assert code in (0, 1)
    findings: dict[str, list[dict[str, object]]] = {}
    for finding in json.loads(out)["findings"]:
        findings.setdefault(str(finding["check"]), []).append(finding)
    return findings


def case(case_id: str) -> Case:
    return next(c for c in CASES if c.id == case_id)


def test_nul_type_directory_does_not_hide_the_next_entry(tmp_path: Path) -> None:
    image = image_with(tmp_path, case("nul-type-trailing-slash-is-a-directory").archive)
    code, out, _ = invoke("ls", "--json", str(image), "/")
    assert code == 0, out
    entries = {e["path"]: e for e in json.loads(out)["entries"]}
    assert entries["/hide"]["type"] == "dir"
    assert entries["/evil"]["type"] == "file"
    assert entries["/evil"]["mode"] == "4755"


def test_find_sees_the_gnu_long_name(tmp_path: Path) -> None:
    image = image_with(tmp_path, case("gnu-long-name-beats-pax-path").archive)
    code, out, _ = invoke("find", str(image), "*malware*")
    assert code == 0
    assert "/bin/malware" in out
    assert "innocent" not in invoke("find", str(image), "*")[1]
    findings = verify_findings(image)
    (ambiguous,) = findings["layer-tar-ambiguous"]
    assert ambiguous["ok"] is False
    assert "'bin/malware'" in str(ambiguous["actual"]) and "'innocent'" in str(ambiguous["actual"])


def test_global_header_is_skipped_and_reported(tmp_path: Path) -> None:
    image = image_with(tmp_path, case("global-header-skipped-and-not-applied").archive)
    code, out, _ = invoke("find", str(image), "*")
    assert code == 0
    assert "/a" in out and "/b" in out and "everything" not in out
    findings = verify_findings(image)
    assert findings["layer-tar"][0]["ok"] is True
    assert findings["layer-tar-ambiguous"][0]["ok"] is False
    assert "umoci refuses" in str(findings["layer-tar-ambiguous"][0]["actual"])


def test_clean_layer_is_not_ambiguous(tmp_path: Path) -> None:
    findings = verify_findings(image_with(tmp_path, case("plain").archive))
    assert [f["ok"] for f in findings["layer-tar-ambiguous"]] == [True]


@pytest.mark.parametrize(
    "case_id",
    ["octal-size-minus-one", "base256-negative-size", "pax-xattr-key-with-nul", "pax-mtime-nan"],
)
@pytest.mark.parametrize("command", ["ls", "find", "types", "unpack"])
def test_a_header_go_refuses_stops_every_command(
    tmp_path: Path, case_id: str, command: str
) -> None:
    image = image_with(tmp_path, case(case_id).archive)
    args = {
        "ls": ["ls", str(image), "/"],
        "find": ["find", str(image), "*"],
        "types": ["types", str(image)],
        "unpack": ["unpack", str(image), str(tmp_path / "root")],
    }[command]
    code, out, err = invoke(*args)
    assert code == 3, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dockscope: "), err
    assert "layer 0" in lines[0] and case(case_id).error in lines[0], lines[0]
    assert "No findings" not in out


def test_verify_names_the_refused_entry(tmp_path: Path) -> None:
    image = image_with(tmp_path, case("octal-size-minus-one").archive)
    (layer_tar,) = verify_findings(image)["layer-tar"]
    assert layer_tar["ok"] is False
    assert "entry 'hidden'" in str(layer_tar["actual"])
    assert "at byte 0" in str(layer_tar["actual"])


def test_sparse_file_reads_as_its_logical_content() -> None:
    reader = TarReader(io.BytesIO(case("pax-sparse-1.0").archive))
    members = []
    for m in reader:
        members.append((m.name, m.size, b"".join(reader.iter_data())))
    assert members[0] == ("real-name", 200, b"hello" + bytes(95) + b"abc" + bytes(97))
    assert members[1] == ("after", 1, b"z")


def test_report_shows_the_refused_header(tmp_path: Path) -> None:
    image = image_with(tmp_path, case("octal-size-minus-one").archive)
    code, _, _ = invoke("report", str(image), "-o", str(tmp_path / "report.html"))
    assert code == 1
    page = (tmp_path / "report.html").read_text()
    assert "problems found" in page and "No findings" not in page
    assert "invalid tar header at byte 0 (entry &#x27;hidden&#x27;)" in page


def test_extreme_values_go_accepts_do_not_crash(tmp_path: Path) -> None:
    """Any int64 mtime and base-256 device numbers: Go reads them; dockscope shows them."""
    layer = (
        member("old", b"x", mtime=base256(-(1 << 62), 12))
        + member("future", b"y", mtime=base256((1 << 63) - 1, 12))
        + pax(record(b"mtime", b"-9223372036854775808.999999999"))
        + member("pax", b"z")
        + header("dev", b"3", devmajor=base256(1 << 40, 8), devminor=base256(-1, 8))
        + END
    )
    image = image_with(tmp_path, layer)
    code, out, err = invoke("find", "--json", str(image), "*")
    assert code == 0, err
    times = {e["path"]: e["mtime"] for e in json.loads(out)["entries"]}
    assert times["/future"] == f"@{float((1 << 63) - 1):.0f}"
    assert times["/old"].startswith("@-")
    code, out, err = invoke("unpack", str(image), str(tmp_path / "root"))
    assert code in (0, 1), err
    assert "dev: skipped (device)" in out and "outside 0 to 2^32-1" in out


def _mutations(count: int, seed: int) -> list[bytes]:
    """The table's archives with a few bytes changed, cut or spliced, checksums mostly fixed
    up so the change reaches the rules behind the checksum."""
    import random

    rng = random.Random(seed)
    seeds = [c.archive for c in CASES if len(c.archive) < 100_000]
    useful = b"\x00 07-\x80\xff\n=/xgLKS519+."
    archives = []
    for _ in range(count):
        archive = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(archive))
            roll = rng.random()
            if roll < 0.6:
                archive[pos] = rng.choice(useful) if rng.random() < 0.7 else rng.randrange(256)
            elif roll < 0.8:
                del archive[pos : pos + rng.randint(1, 600)]
            else:
                archive[pos:pos] = rng.choice(seeds)[: rng.randint(1, 1500)]
        if rng.random() < 0.8:
            for at in range(0, len(archive) - 511, 512):
                block = archive[at : at + 512]
                if block[257:262] == b"ustar":
                    block[148:156] = b" " * 8
                    block[148:156] = f"{sum(block):06o}".encode() + b"\x00 "
                    archive[at : at + 512] = block
        archives.append(bytes(archive))
    return archives


def test_mutated_archives_read_as_go_reads_them(gotar: Path) -> None:
    for archive in _mutations(300, seed=18):
        go_entries, go_error = go_reading(gotar, archive)
        entries, error = dockscope_reading(archive)
        for e in entries:
            assert e.pop("size") == e["length"]
        assert entries == go_entries[: len(entries)], archive
        assert (error is None) == (go_error is None), (error, go_error, archive)
        if go_error is None:
            assert entries == go_entries
        names, scan_error, _ = scanner_reading(archive, 512)
        assert (scan_error is None) == (error is None), (scan_error, error)
        assert names[: len(entries)] == [
            bytes.fromhex(str(e["name"])).decode("utf-8", "surrogateescape") for e in entries
        ]
