"""An adversarial corpus: images with valid digests built to hang a reader or exhaust memory.

Every image is generated here, small on disk (compression and repetition make the big ones).
Each command runs as a process of its own with a timeout, and its peak resident memory is read
from the kernel (``wait4``'s rusage): over a bound it must stop with one line naming the bound,
exit 3; never a hang, an internal error or unbounded memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.support.images import OCI_LAYER_TAR, Layout, config_bytes, layer_tar, sha256

TIMEOUT = 60.0  # seconds per command
MAX_RSS = 300 * 1024 * 1024  # bytes of peak resident memory per command


# A small launcher runs dockscope as its own child: the peak RSS that ``wait4`` reports counts
# the memory a process had before its exec, so dockscope must not be forked from pytest itself.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "inspect_tool", *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def dockscope(*args: str) -> tuple[int, str, float, int]:
    """Run dockscope as a process: (exit code, stderr, seconds, peak RSS in bytes)."""
    rss_file = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"dockscope-rss-{os.getpid()}"
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, str(rss_file), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err_bytes = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"dockscope {' '.join(args)} ran past {TIMEOUT:.0f} s")
    seconds = time.monotonic() - start
    rss = int(rss_file.read_text())
    rss_file.unlink()
    return proc.returncode, err_bytes.decode(errors="replace"), seconds, rss


def check(args: list[str], *fragments: str, codes: tuple[int, ...] = (3,)) -> str:
    code, err, seconds, rss = dockscope(*args)
    print(f"{args[0]}: exit {code}, {seconds:.1f} s, peak RSS {rss / 2**20:.0f} MiB")
    assert rss < MAX_RSS, f"{args}: peak RSS {rss / 2**20:.0f} MiB"
    assert code in codes, (args, code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 3:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dockscope: "), err
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])
    return err


# -- writers -------------------------------------------------------------------------------------


TAR = OCI_LAYER_TAR
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def simple_image(root: Path, layer: bytes, media: str = TAR, diff_id: str | None = None) -> Path:
    layout = Layout(root)
    layout.index([layout.manifest([(layer, media)], [diff_id or sha256(layer)])])
    return root


def header(name: bytes, size: int, typeflag: bytes, *, raw_size: bytes | None = None) -> bytes:
    """One ustar header block with a correct checksum."""
    block = bytearray(512)
    block[0 : len(name[:100])] = name[:100]
    block[100:108] = b"0000644\x00"
    block[108:116] = b"0000000\x00"
    block[116:124] = b"0000000\x00"
    block[124:136] = raw_size if raw_size is not None else b"%011o\x00" % size
    block[136:148] = b"00000000000\x00"
    block[156:157] = typeflag
    block[257:265] = b"ustar\x0000"
    block[148:156] = b"        "
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


# -- the corpus ------------------------------------------------------------------------------------


def gnu_long_name_layer(size: int) -> bytes:
    """A GNU long name record (type L) of ``size`` bytes before a plain file."""
    name = b"a/" * (size // 2)
    return (
        header(b"././@LongLink", len(name), b"L")
        + padded(name)
        + header(b"x", 1, b"0")
        + padded(b"x")
        + bytes(1024)
    )


@pytest.mark.parametrize("size", [16 << 20, (1 << 20) - 2])
@pytest.mark.parametrize("command", ["ls", "find", "unpack", "export", "verify"])
def test_gnu_long_name(tmp_path: Path, size: int, command: str) -> None:
    layer = gnu_long_name_layer(size)
    image = str(simple_image(tmp_path / "img", zstandard.compress(layer), ZSTD, sha256(layer)))
    args = {
        "ls": ["ls", image, "-R"],
        "find": ["find", image, "*"],
        "unpack": ["unpack", image, str(tmp_path / "dest")],
        "export": ["export", image, "-o", str(tmp_path / "flat.tar")],
        "verify": ["verify", image],
    }[command]
    if command == "verify":  # verify lists the layer as a failed check
        check(args, codes=(1,))
    else:
        check(args, "4095" if size < 1 << 20 else "1 MiB")


def test_json_with_a_million_keys(tmp_path: Path) -> None:
    layer = layer_tar({"a": b"a"})
    labels = {f"k{i}": "" for i in range(1_000_000)}
    config = config_bytes([sha256(layer)], config={"Labels": labels})
    layout = Layout(tmp_path / "img")
    layout.index([layout.manifest([(layer, TAR)], [sha256(layer)], config)])
    for command in ("inspect", "verify", "history"):
        check(
            [command, str(tmp_path / "img")],
            "1000000 keys exceeds the bound of 65536",
            codes=(3,) if command != "verify" else (1, 3),
        )


def test_json_array_of_a_million_elements(tmp_path: Path) -> None:
    layer = layer_tar({"a": b"a"})
    config = config_bytes([sha256(layer)], config={"Env": [f"K{i}=v" for i in range(1_000_000)]})
    layout = Layout(tmp_path / "img")
    layout.index([layout.manifest([(layer, TAR)], [sha256(layer)], config)])
    check(["inspect", str(tmp_path / "img")], "1000000 elements exceeds the bound of 65536")


def index_dag(root: Path, fan: int, depth: int) -> Path:
    """Every index lists the next one ``fan`` times, ``depth`` deep: fan**depth paths to one
    manifest, through ``depth`` distinct indexes."""
    layout = Layout(root)
    layer = layer_tar({"a": b"a"})
    manifest = layout.manifest([(layer, TAR)], [sha256(layer)])
    below = {"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest]}
    for _ in range(depth):
        digest, size = layout.put_json(below)
        descriptor = {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": size,
        }
        below = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [descriptor] * fan,
        }
    layout.index(below["manifests"])
    return root


@pytest.mark.parametrize(("fan", "depth"), [(2, 7), (20, 4)])
def test_index_dag_is_walked_once_per_digest(tmp_path: Path, fan: int, depth: int) -> None:
    image = str(index_dag(tmp_path / "img", fan, depth))
    for command in ("inspect", "verify", "ls", "report"):
        args = [command, image]
        if command == "report":
            args += ["-o", str(tmp_path / "r.html")]
        check(args, codes=(0,))
    code, out, _ = run_json("inspect", image)
    assert code == 0 and out["kind"] == "image", out


def run_json(*args: str) -> tuple[int, Any, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "inspect_tool", *args, "--json"],
        capture_output=True,
        timeout=TIMEOUT,
    )
    return proc.returncode, json.loads(proc.stdout or b"null"), proc.stderr.decode()


def test_index_nesting_is_bounded(tmp_path: Path) -> None:
    image = str(index_dag(tmp_path / "img", 2, 12))
    check(["inspect", image], "indexes nested deeper than 8")


def test_index_fan_out_is_bounded(tmp_path: Path) -> None:
    """index.json listing 60,000 manifest descriptors: past the bound of descriptors visited."""
    layout = Layout(tmp_path / "img")
    layer = layer_tar({"a": b"a"})
    manifest = layout.manifest([(layer, TAR)], [sha256(layer)])
    layout.index([manifest] * 60_000)
    for command in ("inspect", "verify", "ls"):
        check([command, str(tmp_path / "img")], "descriptors")


def zstd_bomb_layer() -> tuple[bytes, str]:
    """A header claiming a negative size, then a gigabyte of zeros: 1 GiB from a small blob."""
    head = header(b"bomb", 0, b"0", raw_size=b"\xff" * 12)
    cctx = zstandard.ZstdCompressor(level=3)
    chunks = cctx.compressobj()
    parts = [chunks.compress(head)]
    zero = bytes(1 << 20)
    for _ in range(1024):
        parts.append(chunks.compress(zero))
    parts.append(chunks.flush())
    raw = hashlib.sha256(head)
    for _ in range(1024):
        raw.update(zero)
    return b"".join(parts), "sha256:" + raw.hexdigest()


@pytest.mark.parametrize("command", ["types", "cat", "report", "diff", "ls", "tree"])
def test_negative_size_before_a_zstd_bomb(tmp_path: Path, command: str) -> None:
    blob, diff_id = zstd_bomb_layer()
    image = str(simple_image(tmp_path / "img", blob, ZSTD, diff_id))
    args = {
        "types": ["types", image],
        "cat": ["cat", image, "/bomb"],
        "report": ["report", image, "-o", str(tmp_path / "r.html")],
        "diff": ["diff", image, "--layer", "0"],
        "ls": ["ls", image],
        "tree": ["tree", image],
    }[command]
    check(args, "negative size", codes=(1, 3) if command == "report" else (3,))


def test_a_big_file_is_sniffed_not_read(tmp_path: Path) -> None:
    """types reads a file's first bytes; a 1 GiB file of zeros stays bounded in memory."""
    head = header(b"big", 1 << 30, b"0")
    cctx = zstandard.ZstdCompressor(level=3).compressobj()
    parts = [cctx.compress(head)]
    zero = bytes(1 << 20)
    raw = hashlib.sha256(head)
    for _ in range(1024):
        parts.append(cctx.compress(zero))
        raw.update(zero)
    parts.append(cctx.compress(bytes(1024)))
    raw.update(bytes(1024))
    parts.append(cctx.flush())
    image = str(simple_image(tmp_path / "img", b"".join(parts), ZSTD, "sha256:" + raw.hexdigest()))
    check(["types", image], codes=(0,))
    check(["ls", image], codes=(0,))


def test_many_layers(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "img")
    layout.index([layout.manifest([(layer_tar({"a": b"a"}), TAR)] * 10_001)])
    check(["ls", str(tmp_path / "img")], "10000")


def _sparse_bomb(kind: str, size: int = 512 << 20) -> tuple[bytes, str]:
    """A sparse map that never ends: PAX 1.0 map text of newlines, or old GNU extension blocks
    each announcing another, ``size`` bytes of it from a small zstd blob."""
    cctx = zstandard.ZstdCompressor(level=3).compressobj()
    raw = hashlib.sha256()
    parts: list[bytes] = []

    def put(data: bytes) -> None:
        raw.update(data)
        parts.append(cctx.compress(data))

    if kind == "pax-1.0":
        records = b""
        for key, value in ((b"major", b"1"), (b"minor", b"0"), (b"name", b"s")):
            body = b" GNU.sparse." + key + b"=" + value + b"\n"
            length = len(body) + 2
            records += b"%d" % length + body
        put(header(b"p", len(records), b"x") + padded(records))
        put(header(b"s", size, b"0"))
        put(b"999999999\n".ljust(512, b"\x00"))
        block = b"\n" * (1 << 20)
    else:
        ext = bytearray(512)
        for i in range(21):
            ext[i * 24 : i * 24 + 24] = b"%011o\x00%011o\x00" % (i * 10, 1)
        ext[504] = 1  # another extension block follows
        first = bytearray(header(b"s", 0, b"S"))
        first[257:265] = b"ustar  \x00"  # GNU
        first[482] = 1
        first[148:156] = b"        "
        first[148:156] = b"%06o\x00 " % sum(first)
        put(bytes(first))
        block = bytes(ext) * 2048
    for _ in range(size // len(block)):
        put(block)
    parts.append(cctx.flush())
    return b"".join(parts), "sha256:" + raw.hexdigest()


@pytest.mark.parametrize("kind", ["pax-1.0", "old-gnu"])
def test_a_sparse_map_without_end(tmp_path: Path, kind: str) -> None:
    blob, diff_id = _sparse_bomb(kind)
    image = str(simple_image(tmp_path / "img", blob, ZSTD, diff_id))
    check(["ls", image], "sparse map", "1048576")
    check(["verify", image], codes=(1,))


def _outer_archive(path: Path, kind: str) -> Path:
    """An image archive compressed as a whole (.tar.zst) whose own tar is hostile: an extended
    header of 512 MiB, or three million empty members."""
    cctx = zstandard.ZstdCompressor(level=3).compressobj()
    parts: list[bytes] = []
    if kind == "pax":
        size = 512 << 20
        parts.append(cctx.compress(header(b"p", size, b"x")))
        records = b"9 a=bbbb\n" * ((1 << 20) // 9)
        records += b"\n" * ((1 << 20) - len(records))
        for _ in range(size >> 20):
            parts.append(cctx.compress(records))
    else:
        block = b"".join(header(b"f%07d" % i, 0, b"0") for i in range(1000))
        for _ in range(3000):
            parts.append(cctx.compress(block))
    parts.append(cctx.compress(bytes(1024)))
    parts.append(cctx.flush())
    path.write_bytes(b"".join(parts))
    return path


@pytest.mark.parametrize(
    ("kind", "bound"), [("pax", "1048576 bytes"), ("members", "100000 members")]
)
def test_the_archive_itself_is_bounded(tmp_path: Path, kind: str, bound: str) -> None:
    archive = str(_outer_archive(tmp_path / "image.tar.zst", kind))
    check(["inspect", archive], archive, bound)
    check(["verify", archive], archive, bound)


def test_a_layer_of_millions_of_entries(tmp_path: Path) -> None:
    """2.5 million empty files in a blob of a few megabytes: past the bound of 1,000,000
    entries per layer every command stops (before, ls took minutes and 360 MB for two million)."""
    cctx = zstandard.ZstdCompressor(level=3).compressobj()
    raw = hashlib.sha256()
    parts: list[bytes] = []
    for j in range(2500):
        block = b"".join(header(b"d%04d/f%07d" % (j % 1000, i), 0, b"0") for i in range(1000))
        raw.update(block)
        parts.append(cctx.compress(block))
    raw.update(bytes(1024))
    parts += [cctx.compress(bytes(1024)), cctx.flush()]
    image = str(simple_image(tmp_path / "img", b"".join(parts), ZSTD, "sha256:" + raw.hexdigest()))
    check(["ls", image, "/d0001"], "more than 1000000 entries in one layer")
    check(["verify", image], codes=(1,))


def test_unpack_of_many_entries_across_layers_stays_within_bounds(tmp_path: Path) -> None:
    """Two layers, the second 700,000 whiteouts of paths that are not there (cheap to apply,
    each a member all the same): unpack's two passes would hold every member in memory
    (their plan); past their budget nothing is planned and the layers are applied one by one."""
    cctx = zstandard.ZstdCompressor(level=3).compressobj()
    raw = hashlib.sha256()
    parts: list[bytes] = []
    for j in range(700):
        block = b"".join(header(b"gone/.wh.f%03d%04d" % (j, i), 0, b"0") for i in range(1000))
        raw.update(block)
        parts.append(cctx.compress(block))
    raw.update(bytes(1024))
    parts += [cctx.compress(bytes(1024)), cctx.flush()]
    lower = layer_tar({"kept": b"below"})
    layout = Layout(tmp_path / "img")
    layers = [(lower, TAR), (b"".join(parts), ZSTD)]
    layout.index([layout.manifest(layers, [sha256(lower), "sha256:" + raw.hexdigest()])])
    dest = tmp_path / "dest"
    check(["unpack", str(tmp_path / "img"), str(dest)], codes=(0,))
    assert sorted(os.listdir(dest)) == ["kept"] and (dest / "kept").read_bytes() == b"below"
