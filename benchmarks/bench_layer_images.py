"""Deterministic generators of the images `bench_layers.py` measures.

Writes, under the output directory (next to what `bench_images.py` writes):

- ``many-oci.tar``: an OCI archive whose merged filesystem holds exactly ``entries``
  (default 1,000,000) entries: directories and small or empty files in a few gzip layers
  (level 1), plus three parent directories that no layer lists (implicit parents). The tar
  headers are written by hand (ustar), which is what makes a million of them fast to produce.
- ``diff-{a,b}-big.tar``: the big image's 12 layers (``bench_images.py``'s ``big-oci.tar``,
  blobs taken from ``blobs/sha256/``) as a shared base, plus one small top layer each; the
  two top layers modify, add and delete (whiteouts, an opaque directory) paths of the base.
- ``diff-{a,b}-tiny.tar``: the same two top layers on a tiny base layer holding only the base
  entries the top layers touch, copied byte for byte (same metadata, same content), so that
  ``dockscope diff`` must report exactly the same file changes for both pairs.
- ``layer-images.json``: parameters, facts and the expected answers (listing count, diff
  changes); it is the cache stamp.

Everything is a pure function of the parameters (and of the big image): same inputs, same bytes.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import multiprocessing
import os
import random
import shutil
import struct
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench_images import (
    MIB,
    MTIME,
    RECORD,
    LayerResult,
    _config,
    _index,
    _LayerSink,
    _manifest,
    _sha,
    _write_oci_archive,
)

LAYER_GENERATOR_VERSION = 1
STAMP = "layer-images.json"
MANY_ARCHIVE = "many-oci.tar"
MTIME_TOP = MTIME + 86400  # what the top layers of the diff images write
LABEL_KEY = "org.dockscope.bench"

# The many-entries image: srv/l<K>/d<NNN>/s<NN>/f<NNN> in layer K, and, in the top layer, a
# few files below opt/imp/a/ whose three parents no layer lists.
SUBDIRS = 20
FILES_PER_SUBDIR = 48
IMPLICIT_DIR = "opt/imp/a"
IMPLICIT_PARENTS = 3  # /opt, /opt/imp, /opt/imp/a
IMPLICIT_FILES = 10
EMPTY_SHARE = 0.4  # of the small files
MAX_SMALL = 400  # bytes

_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")
_ZERO8 = b"0000000\0"
_DIR_MODE = b"0000755\0"
_FILE_MODE = b"0000644\0"
_MTIME_FIELD = b"%011o\0" % MTIME


def ustar_header(name: bytes, size: int, is_dir: bool) -> bytes:
    """One ustar header block (names up to 100 bytes), uid/gid 0, mtime MTIME."""
    buf = bytearray(
        _USTAR.pack(
            name,
            _DIR_MODE if is_dir else _FILE_MODE,
            _ZERO8,
            _ZERO8,
            b"%011o\0" % size,
            _MTIME_FIELD,
            b"        ",
            b"5" if is_dir else b"0",
            b"",
            b"ustar\0",
            b"00",
            b"",
            b"",
            _ZERO8,
            _ZERO8,
            b"",
        )
    )
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf)


@dataclass(frozen=True)
class ManyPlan:
    """The many-entries image: how many entries its merged view holds, in how many layers."""

    entries: int
    layers: int
    seed: int
    level: int

    def quotas(self) -> list[int]:
        """Entries each layer adds below srv/ (srv/l<K>/ included)."""
        rest = self.entries - 1 - IMPLICIT_PARENTS - IMPLICIT_FILES  # 1: srv/ itself
        if rest < 2 * self.layers:
            raise ValueError(f"{self.entries} entries are too few for {self.layers} layers")
        base, extra = divmod(rest, self.layers)
        return [base + (1 if k >= self.layers - extra else 0) for k in range(self.layers)]


def layer_items(plan: ManyPlan, k: int) -> Iterator[tuple[str, bool]]:
    """(name, is_dir) of layer k, in tar order; srv/ is restated by every layer."""
    yield "srv/", True
    quota = plan.quotas()[k]
    yield f"srv/l{k}/", True
    count = 1
    d = 0
    while count < quota:
        yield f"srv/l{k}/d{d:03d}/", True
        count += 1
        for s in range(SUBDIRS):
            if count >= quota:
                break
            yield f"srv/l{k}/d{d:03d}/s{s:02d}/", True
            count += 1
            for f in range(FILES_PER_SUBDIR):
                if count >= quota:
                    break
                yield f"srv/l{k}/d{d:03d}/s{s:02d}/f{f:03d}", False
                count += 1
        d += 1
    if k == plan.layers - 1:
        for f in range(IMPLICIT_FILES):
            yield f"{IMPLICIT_DIR}/f{f:03d}", False


def many_expected(plan: ManyPlan) -> Iterator[tuple[int, str, bool]]:
    """(layer, absolute path, is_dir) of every entry ``ls -R IMAGE /`` must list, in its order
    (depth first, siblings sorted: the names are built so that tar order is that order)."""
    top = plan.layers - 1
    parts = IMPLICIT_DIR.split("/")
    for i in range(len(parts)):
        yield top, "/" + "/".join(parts[: i + 1]), True
    for f in range(IMPLICIT_FILES):
        yield top, f"/{IMPLICIT_DIR}/f{f:03d}", False
    yield top, "/srv", True  # restated by every layer: the top one's
    for k in range(plan.layers):
        for name, is_dir in layer_items(plan, k):
            if name != "srv/" and not name.startswith("opt/"):
                yield k, "/" + name.rstrip("/"), is_dir


def _small_sizes(seed: int) -> list[int]:
    rng = random.Random(seed)
    return [0 if rng.random() < EMPTY_SHARE else rng.randint(1, MAX_SMALL) for _ in range(4093)]


@dataclass(frozen=True)
class ManyLayerJob:
    plan: ManyPlan
    k: int
    blob_dir: str


def _make_many_layer(job: ManyLayerJob) -> dict[str, Any]:
    """Write layer k of the many-entries image (runs in a worker process)."""
    start = time.perf_counter()
    sizes = _small_sizes(job.plan.seed * 100 + job.k)
    pool = hashlib.shake_128(f"{job.plan.seed}/{job.k}".encode()).digest(8192)
    tmp = Path(job.blob_dir) / f".tmp-many-{job.k}"
    entries = files = 0
    with open(tmp, "wb") as blob:
        sink = _LayerSink(blob, job.plan.level, None)
        parts: list[bytes] = []
        pending = 0
        for name, is_dir in layer_items(job.plan, job.k):
            entries += 1
            if is_dir:
                parts.append(ustar_header(name.encode(), 0, True))
                pending += 512
            else:
                size = sizes[files % len(sizes)]
                parts.append(ustar_header(name.encode(), size, False))
                if size:
                    offset = (files * 131) % (len(pool) - size)
                    parts.append(pool[offset : offset + size] + b"\0" * (-size % 512))
                files += 1
                pending += 512 + size
            if pending >= MIB:
                sink.write(b"".join(parts))
                parts.clear()
                pending = 0
        tail = b"\0" * 1024
        total = sink.tar_size + sum(len(p) for p in parts) + len(tail)
        tail += b"\0" * (-total % RECORD)
        sink.write(b"".join(parts) + tail)
        digest, diff_id = sink.finish()
    os.replace(tmp, Path(job.blob_dir) / digest.removeprefix("sha256:"))
    return {
        "index": job.k,
        "digest": digest,
        "size": sink.size,
        "diff_id": diff_id,
        "tar_size": sink.tar_size,
        "entries": entries,
        "files": files,
        "seconds": round(time.perf_counter() - start, 2),
    }


def _generate_many(out: Path, plan: ManyPlan, workers: int) -> dict[str, Any]:
    blob_dir = out / "many-blobs"
    if blob_dir.exists():
        shutil.rmtree(blob_dir)
    blob_dir.mkdir(parents=True)
    jobs = [ManyLayerJob(plan, k, str(blob_dir)) for k in range(plan.layers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        layers = sorted(pool.map(_make_many_layer, jobs, chunksize=1), key=lambda x: x["index"])
    results = [LayerResult(x["index"], x["digest"], x["size"], x["diff_id"], 0) for x in layers]
    config = _config(results, "many")
    manifest = _manifest(config, results)
    small = {_sha(b).removeprefix("sha256:"): b for b in (config, manifest)}
    files = {x["digest"].removeprefix("sha256:"): blob_dir / x["digest"][7:] for x in layers}
    path = out / MANY_ARCHIVE
    _write_oci_archive(path, _index(manifest, "many"), small, files)
    shutil.rmtree(blob_dir)
    return {
        "archive": path.name,
        "archive_size": path.stat().st_size,
        "image_id": _sha(config),
        "layers": layers,
        "expected_entries": plan.entries,
        "tar_entries": sum(x["entries"] for x in layers),
        "implicit_parents": IMPLICIT_PARENTS,
    }


# -- the diff images ---------------------------------------------------------------------------
@dataclass
class Member:
    """One tar entry, copied from a base layer or written by a top layer."""

    info: tarfile.TarInfo
    data: bytes = b""


def _scan_base(blob: Path, wanted_dirs: tuple[str, ...]) -> dict[str, Member]:
    """Every entry of the layer at or below the wanted directories (and their parents)."""
    parents = {"/".join(d.split("/")[:i]) + "/" for d in wanted_dirs for i in range(1, 4)}
    found: dict[str, Member] = {}
    with tarfile.open(blob, "r:gz") as tar:
        for info in tar:
            name = info.name + ("/" if info.isdir() else "")
            if name in parents or any(name.startswith(d) for d in wanted_dirs):
                reader = tar.extractfile(info) if info.isfile() else None
                found[name] = Member(info, reader.read() if reader else b"")
    return found


def _dir_member(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = MTIME
    return Member(info)


def _file_member(name: str, data: bytes, *, mode: int = 0o644, mtime: int = MTIME_TOP) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime
    return Member(info, data)


def _restated(member: Member) -> Member:
    """The same entry again (a top layer restating a base directory, or re-adding a file)."""
    return Member(copy.copy(member.info), member.data)


def _layer_tar(members: list[Member]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = copy.copy(m.info)
            info.name = info.name.rstrip("/")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(m.data) if info.isfile() else None)
    return raw.getvalue()


def _gzip_layer(index: int, layer_tar: bytes, level: int = 6) -> tuple[LayerResult, bytes]:
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    blob = comp.compress(layer_tar) + comp.flush()
    return LayerResult(index, _sha(blob), len(blob), _sha(layer_tar), len(layer_tar)), blob


def _files_in(entries: dict[str, Member], directory: str) -> list[str]:
    return sorted(
        n
        for n, m in entries.items()
        if n.startswith(directory) and n != directory and m.info.isfile()
    )


def _below(entries: dict[str, Member], directory: str) -> list[str]:
    return sorted(n for n in entries if n.startswith(directory) and n != directory)


def _plan_diff(
    l0: dict[str, Member], l11: dict[str, Member], seed: int
) -> tuple[list[Member], list[Member], list[Member], list[dict[str, Any]]]:
    """(tiny base, top A, top B, expected file changes of `diff A B`)."""
    p100, p003, p010, p011 = (
        "usr/share/l00/p0100/",
        "usr/share/l11/p0003/",
        "usr/share/l11/p0010/",
        "usr/share/l11/p0011/",
    )
    t0 = [n for n in _files_in(l0, p100) if l0[n].info.size >= 16][:4]
    u0 = _files_in(l11, p011)[0]
    r0 = _files_in(l11, p010)[0]
    if len(t0) < 4:
        raise RuntimeError(f"the big image has too few files in {p100}")

    # The tiny base: every base entry the top layers touch, byte for byte.
    base_names = ["usr/", "usr/share/", "usr/share/l00/", p100, *t0]
    base_names += ["usr/share/l11/", p003, *_below(l11, p003), p010, *_below(l11, p010)]
    base_names += [p011, u0]

    def copies(*names: str) -> list[Member]:
        return [_restated((l11 if n.startswith("usr/share/l11/") else l0)[n]) for n in names]

    tiny_base = copies(*base_names)

    restate = ["usr/", "usr/share/", "usr/share/l00/", p100, "usr/share/l11/", p011]
    u0_new = l11[u0].data + b"\n# patched by both tops alike\n"

    def blobs(side: str) -> list[Member]:
        out = [_dir_member("app/"), _dir_member(f"app/{side}/")]
        for i in range(16):
            data = hashlib.shake_128(f"{seed}/{side}/{i}".encode()).digest(160 * 1024)
            out.append(_file_member(f"app/{side}/blob{i:02d}.bin", data))
        out.append(_file_member("app/common.txt", b"the same in both\n" * 64))
        out.append(_file_member("app/version.txt", f"version {side}\n".encode()))
        return out

    top_a = copies(*restate)
    top_a.append(_file_member(p100 + ".wh." + t0[2].rsplit("/", 1)[1], b"", mtime=MTIME))
    top_a.append(_file_member("usr/share/l11/.wh.p0003", b"", mtime=MTIME))
    top_a.append(_file_member(u0, u0_new, mode=l11[u0].info.mode))
    top_a += blobs("a")

    top_b = copies(*restate, p010)
    grown = l0[t0[0]].data + b"\n# patched in b\n"
    top_b.append(_file_member(t0[0], grown, mode=l0[t0[0]].info.mode))
    same = bytearray(l0[t0[1]].data)
    for i in range(8):
        same[i] ^= 0xFF
    top_b.append(_file_member(t0[1], bytes(same), mode=l0[t0[1]].info.mode))
    top_b.append(_file_member(p100 + ".wh." + t0[3].rsplit("/", 1)[1], b"", mtime=MTIME))
    top_b.append(_file_member(p010 + ".wh..wh..opq", b"", mtime=MTIME))
    top_b.append(_restated(l11[r0]))  # re-added unchanged: no difference
    top_b.append(_file_member(u0, u0_new, mode=l11[u0].info.mode))
    top_b += blobs("b")

    def entry(name: str) -> str:
        return "/" + name.rstrip("/")

    expected: list[dict[str, Any]] = [
        {"path": entry(t0[0]), "change": "modified", "differences": ["size", "mtime"]},
        {"path": entry(t0[1]), "change": "modified", "differences": ["content", "mtime"]},
        {"path": "/app/version.txt", "change": "modified", "differences": ["content"]},
        {"path": entry(t0[2]), "change": "added", "differences": []},
        {"path": entry(t0[3]), "change": "removed", "differences": []},
        {"path": entry(p003), "change": "added", "differences": []},
        {"path": "/app/a", "change": "removed", "differences": []},
        {"path": "/app/b", "change": "added", "differences": []},
    ]
    expected += [
        {"path": entry(n), "change": "added", "differences": []} for n in _below(l11, p003)
    ]
    expected += [
        {"path": entry(n), "change": "removed", "differences": []}
        for n in _below(l11, p010)
        if n != r0
    ]
    for side, change in (("a", "removed"), ("b", "added")):
        expected += [
            {"path": f"/app/{side}/blob{i:02d}.bin", "change": change, "differences": []}
            for i in range(16)
        ]
    expected.sort(key=lambda x: x["path"])
    return tiny_base, top_a, top_b, expected


def _image(
    out: Path,
    name: str,
    label: str,
    base: list[LayerResult],
    base_files: dict[str, Path],
    top: tuple[LayerResult, bytes],
) -> dict[str, Any]:
    layer, blob = top
    layers = [*base, LayerResult(len(base), layer.digest, layer.size, layer.diff_id, 0)]
    config = _config(layers, label)
    manifest = _manifest(config, layers)
    small = {_sha(b).removeprefix("sha256:"): b for b in (config, manifest, blob)}
    path = out / name
    _write_oci_archive(path, _index(manifest, label), small, base_files)
    return {
        "archive": name,
        "archive_size": path.stat().st_size,
        "image_id": _sha(config),
        "layers": len(layers),
        "top_layer_blob_size": layer.size,
        "top_layer_tar_size": layer.tar_size,
    }


def _generate_diff(out: Path, big_meta: dict[str, Any], seed: int) -> dict[str, Any]:
    big = big_meta["big"]
    blob_dir = out / big["blobs"]["dir"]
    base_layers = big["layer_results"]
    blob = [blob_dir / x["digest"].removeprefix("sha256:") for x in base_layers]
    l0 = _scan_base(blob[0], ("usr/share/l00/p0100/",))
    l11 = _scan_base(
        blob[-1], ("usr/share/l11/p0003/", "usr/share/l11/p0010/", "usr/share/l11/p0011/")
    )
    tiny_base, top_a, top_b, expected = _plan_diff(l0, l11, seed)
    big_base = [
        LayerResult(x["index"], x["digest"], x["size"], x["diff_id"], x["tar_size"])
        for x in base_layers
    ]
    big_files = {x.digest.removeprefix("sha256:"): p for x, p in zip(big_base, blob, strict=True)}
    tiny, tiny_blob = _gzip_layer(0, _layer_tar(tiny_base))
    images: dict[str, Any] = {}
    for side, top in (("a", top_a), ("b", top_b)):
        label = f"diff-{side}"
        images[f"{side}-big"] = _image(
            out,
            f"diff-{side}-big.tar",
            label,
            big_base,
            big_files,
            _gzip_layer(len(big_base), _layer_tar(top)),
        )
        (out / ".tiny-base").write_bytes(tiny_blob)
        images[f"{side}-tiny"] = _image(
            out,
            f"diff-{side}-tiny.tar",
            label,
            [tiny],
            {tiny.digest.removeprefix("sha256:"): out / ".tiny-base"},
            _gzip_layer(1, _layer_tar(top)),
        )
        (out / ".tiny-base").unlink()
    return {
        "images": images,
        "base_layers": len(big_base),
        "base_blob_bytes": sum(x.size for x in big_base),
        "base_tar_bytes": sum(x.tar_size for x in big_base),
        "tiny_base_entries": len(tiny_base),
        "expected_files": expected,
        "expected_config": [{"key": f"Labels {LABEL_KEY}", "a": "diff-a", "b": "diff-b"}],
    }


# -- cache -------------------------------------------------------------------------------------
def _archives_ok(out: Path, images: list[dict[str, Any]]) -> bool:
    return all(
        (out / x["archive"]).is_file() and (out / x["archive"]).stat().st_size == x["archive_size"]
        for x in images
    )


def _generate_part(
    meta: dict[str, Any],
    part: str,
    params: dict[str, Any],
    generate: Callable[[], dict[str, Any]],
) -> None:
    """``meta[part]``: what ``generate`` returns, with the parameters it was made from and the
    seconds it took."""
    start = time.perf_counter()
    facts = generate()
    facts["params"] = params
    facts["generation_seconds"] = round(time.perf_counter() - start, 2)
    meta[part] = facts


def ensure_layer_images(
    out: Path,
    big_meta: dict[str, Any] | None,
    *,
    plan: ManyPlan,
    seed: int = 20240101,
    workers: int = 2,
    force: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Return (layer-images.json content, the parts generated now); generate what is missing.

    Without ``big_meta`` (the big image's images.json), the diff images are left alone."""
    stamp = out / STAMP
    meta: dict[str, Any] = {}
    if stamp.is_file() and not force:
        meta = json.loads(stamp.read_text())
        if meta.get("generator_version") != LAYER_GENERATOR_VERSION:
            meta = {}
    meta["generator_version"] = LAYER_GENERATOR_VERSION
    generated: list[str] = []

    many_params = asdict(plan)
    many = meta.get("many")
    if not many or many.get("params") != many_params or not _archives_ok(out, [many]):
        print(
            f"generating {MANY_ARCHIVE}: {plan.entries} entries in {plan.layers} layers, "
            f"gzip -{plan.level}, {workers} processes",
            flush=True,
        )
        _generate_part(meta, "many", many_params, lambda: _generate_many(out, plan, workers))
        generated.append("many")
        stamp.write_text(json.dumps(meta, indent=2) + "\n")

    if big_meta is None:
        meta.pop("diff", None)
        return meta, generated
    diff_params = {"seed": seed, "base_manifest": big_meta["big"]["oci"]["manifest_digest"]}
    diff = meta.get("diff")
    if (
        not diff
        or diff.get("params") != diff_params
        or not _archives_ok(out, list(diff["images"].values()))
    ):
        print("generating the diff images (big base + one top layer each, tiny base)", flush=True)
        _generate_part(meta, "diff", diff_params, lambda: _generate_diff(out, big_meta, seed))
        generated.append("diff")
        stamp.write_text(json.dumps(meta, indent=2) + "\n")
    return meta, generated
