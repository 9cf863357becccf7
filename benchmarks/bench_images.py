"""Deterministic generator of the benchmark images.

Writes, under an output directory:

- ``big-oci.tar``: an OCI image layout in a tar (``oci-layout``, ``index.json``,
  ``blobs/sha256/...``) holding one image of ~1 GiB of file content in 12 gzip layers and
  ~110,000 regular files;
- ``blobs/sha256/<hex>``: the same blobs as plain files (byte-identical to the archive members),
  used by the sha256sum/zcat floor;
- ``tiny-oci.tar``: the same format, one small layer;
- ``big-docker.tar`` (optional): the big image as a legacy ``docker save`` archive;
- ``images.json``: what was generated (digests, sizes, counts, generation time); it doubles as
  the cache stamp.

Everything is a pure function of the seed and the parameters: same inputs, same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import os
import random
import shutil
import tarfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

GENERATOR_VERSION = 1
MIB = 1 << 20
# the directory the top layer makes opaque (its lower contents hidden)
OPAQUE_DIR = "usr/share/l01/p0001"
GIB = 1 << 30
MTIME = 1704067200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
TEXT_POOL_BYTES = 4 * MIB
FILES_PER_DIR = 40
FLUSH_BYTES = 1 * MIB

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

# (regular small files, MiB of file content) per layer, bottom to top: a big base, a few
# package-install layers, some asset layers with big files, a thin application layer on top.
BIG_LAYER_PLAN: tuple[tuple[int, int], ...] = (
    (30000, 190),
    (2000, 60),
    (12000, 120),
    (20000, 150),
    (3000, 90),
    (8000, 80),
    (15000, 100),
    (1500, 64),
    (9000, 70),
    (500, 40),
    (8000, 50),
    (1000, 10),
)


@dataclass(frozen=True)
class LayerSpec:
    """What one layer of the big image holds."""

    index: int
    seed: int
    small_files: int
    content_bytes: int
    level: int
    blob_dir: str
    raw_path: str | None  # also write the uncompressed tar here (for the legacy variant)
    top: bool  # the top layer also carries whiteouts and an overridden file


@dataclass
class LayerResult:
    """What was written for one layer."""

    index: int
    digest: str
    size: int
    diff_id: str
    tar_size: int
    files: int = 0
    content_bytes: int = 0
    random_bytes: int = 0
    big_files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    whiteouts: int = 0
    seconds: float = 0.0


@dataclass
class ImageInfo:
    """One generated archive and the facts the benchmark checks the tools against."""

    archive: str
    format: str
    archive_size: int
    manifest_digest: str | None
    config_digest: str
    layers: list[dict[str, Any]] = field(default_factory=list)


class _LayerSink:
    """Receives the layer tar stream: hashes it (diff_id), gzips it, hashes and stores the blob."""

    def __init__(self, blob: BinaryIO, level: int, raw: BinaryIO | None) -> None:
        self._blob = blob
        self._raw = raw
        self._zip = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip container
        self._diff = hashlib.sha256()
        self._digest = hashlib.sha256()
        self._buf = bytearray()
        self.tar_size = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        chunk = bytes(self._buf)
        self._buf.clear()
        self._diff.update(chunk)
        self.tar_size += len(chunk)
        if self._raw is not None:
            self._raw.write(chunk)
        self._emit(self._zip.compress(chunk))

    def _emit(self, out: bytes) -> None:
        if out:
            self._digest.update(out)
            self._blob.write(out)
            self.size += len(out)

    def finish(self) -> tuple[str, str]:
        """Flush everything; return (digest, diff_id)."""
        self._flush()
        self._emit(self._zip.flush())
        return "sha256:" + self._digest.hexdigest(), "sha256:" + self._diff.hexdigest()


class _TarWriter:
    """A minimal streaming tar writer (PAX/ustar headers, like Go's archive/tar)."""

    def __init__(self, sink: _LayerSink) -> None:
        self._sink = sink
        self._offset = 0

    def _write(self, data: bytes) -> None:
        self._sink.write(data)
        self._offset += len(data)

    def add(self, info: tarfile.TarInfo, data: bytes | None = None) -> None:
        info.mtime = MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if data is not None:
            info.size = len(data)
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if data:
            self._write(data)
            pad = -len(data) % BLOCK
            if pad:
                self._write(b"\0" * pad)

    def close(self) -> None:
        self._write(b"\0" * (2 * BLOCK))
        pad = -self._offset % RECORD
        if pad:
            self._write(b"\0" * pad)


def _text_pool(rng: random.Random, size: int) -> bytes:
    """Source-code-like text: Zipf-distributed words, indentation, punctuation."""
    letters = "abcdefghijklmnopqrstuvwxyz_"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 12))) for _ in range(6000)]
    words += ["(", ")", "=", "{", "}", "return", "if", "self", "None", "import", "0", "1"]
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    rng.shuffle(words)
    cum: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)
    parts: list[str] = []
    n = 0
    while n < size:
        line = " " * rng.choice((0, 0, 4, 4, 8, 12)) + " ".join(
            rng.choices(words, cum_weights=cum, k=rng.randint(1, 14))
        )
        line += "\n"
        parts.append(line)
        n += len(line)
    return "".join(parts).encode()[:size]


def _text(rng: random.Random, pool: bytes, size: int) -> bytes:
    if size <= len(pool) // 2:
        start = rng.randrange(len(pool) - size)
        return pool[start : start + size]
    chunks: list[bytes] = []
    left = size
    while left > 0:
        n = min(left, len(pool) // 2)
        start = rng.randrange(len(pool) - n)
        chunks.append(pool[start : start + n])
        left -= n
    return b"".join(chunks)


def _random(seed: int, name: str, size: int) -> bytes:
    return hashlib.shake_128(f"{seed}/{name}".encode()).digest(size)


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def _small_size(rng: random.Random) -> int:
    if rng.random() < 0.03:
        return 0
    return min(int(rng.lognormvariate(math.log(1500), 1.2)), 256 * 1024)


def _write_layer_entries(spec: LayerSpec, tar: _TarWriter, res: LayerResult) -> None:
    rng = random.Random(spec.seed)
    pool = _text_pool(rng, TEXT_POOL_BYTES)
    root = f"usr/share/l{spec.index:02d}"
    for name in ("usr/", "usr/share/", root + "/"):
        tar.add(_dir(name))
        res.dirs += 1
    last_file = ""
    for j in range(spec.small_files):
        subdir = f"{root}/p{j // FILES_PER_DIR:04d}"
        if j % FILES_PER_DIR == 0:
            tar.add(_dir(subdir + "/"))
            res.dirs += 1
            last_file = ""
        size = _small_size(rng)
        binary = rng.random() < 0.25
        name = f"{subdir}/f{j:05d}" + (".so" if binary else ".py")
        data = _random(spec.seed, name, size) if binary else _text(rng, pool, size)
        tar.add(_file(name, 0o755 if binary else 0o644), data)
        res.files += 1
        res.content_bytes += size
        res.random_bytes += size if binary else 0
        if j % 250 == 249 and last_file:
            link = tarfile.TarInfo(f"{subdir}/link{j:05d}")
            link.type = tarfile.SYMTYPE
            link.linkname = last_file.rsplit("/", 1)[1]
            link.mode = 0o777
            tar.add(link)
            res.symlinks += 1
        if j % 2500 == 2499 and last_file:
            hard = tarfile.TarInfo(f"{subdir}/hard{j:05d}")
            hard.type = tarfile.LNKTYPE
            hard.linkname = last_file
            hard.mode = 0o644
            tar.add(hard)
            res.hardlinks += 1
        last_file = name

    big_root = f"opt/l{spec.index:02d}"
    tar.add(_dir("opt/"))
    tar.add(_dir(big_root + "/"))
    res.dirs += 2
    remaining = spec.content_bytes - res.content_bytes
    k = 0
    while remaining >= 64 * 1024:
        size = min(remaining, int(math.exp(rng.uniform(math.log(MIB), math.log(48 * MIB)))))
        # Pick the kind that keeps the layer's content closest to half incompressible.
        as_random = (res.random_bytes + size) / (res.content_bytes + size)
        as_text = res.random_bytes / (res.content_bytes + size)
        binary = abs(as_random - 0.5) <= abs(as_text - 0.5)
        name = f"{big_root}/big{k:03d}" + (".bin" if binary else ".txt")
        data = _random(spec.seed, name, size) if binary else _text(rng, pool, size)
        tar.add(_file(name), data)
        del data
        res.files += 1
        res.big_files += 1
        res.content_bytes += size
        res.random_bytes += size if binary else 0
        remaining -= size
        k += 1

    if spec.top:
        # A file deleted, a directory made opaque, a file overridden: what upper layers do.
        for name in ("usr/share/l00/", "usr/share/l00/p0000/", "usr/share/l01/"):
            tar.add(_dir(name))
            res.dirs += 1
        tar.add(_file("usr/share/l00/p0000/.wh.f00000.py"), b"")
        tar.add(_dir(OPAQUE_DIR + "/"))
        tar.add(_file(OPAQUE_DIR + "/.wh..wh..opq"), b"")
        res.dirs += 1
        res.whiteouts += 2
        data = _text(rng, pool, 4096)
        tar.add(_file("usr/share/l00/p0000/f00001.py"), data)
        res.files += 1
        res.content_bytes += len(data)


def _make_layer(spec: LayerSpec) -> LayerResult:
    """Write one layer blob (runs in a worker process)."""
    start = time.perf_counter()
    tmp = Path(spec.blob_dir) / f".tmp-layer-{spec.index:02d}"
    raw_cm = open(spec.raw_path, "wb") if spec.raw_path else None  # noqa: SIM115
    try:
        with open(tmp, "wb") as blob:
            sink = _LayerSink(blob, spec.level, raw_cm)
            tar = _TarWriter(sink)
            res = LayerResult(spec.index, "", 0, "", 0)
            _write_layer_entries(spec, tar, res)
            tar.close()
            res.digest, res.diff_id = sink.finish()
            res.size, res.tar_size = sink.size, sink.tar_size
    finally:
        if raw_cm is not None:
            raw_cm.close()
    os.replace(tmp, Path(spec.blob_dir) / res.digest.removeprefix("sha256:"))
    res.seconds = time.perf_counter() - start
    return res


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else _sha(f"{out[-1]} {diff_id}".encode()))
    return out


def _config(layers: list[LayerResult], label: str) -> bytes:
    history: list[dict[str, Any]] = []
    for i in range(len(layers)):
        history.append({"created": CREATED, "created_by": f"/bin/sh -c #(nop) ADD layer{i} /"})
        if i == 0:
            history.append(
                {
                    "created": CREATED,
                    "created_by": '/bin/sh -c #(nop)  ENV PATH="/usr/bin:/bin"',
                    "empty_layer": True,
                }
            )
    history.append(
        {
            "created": CREATED,
            "created_by": '/bin/sh -c #(nop)  CMD ["/bin/sh"]',
            "empty_layer": True,
        }
    )
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "author": "dockscope benchmark generator",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "Labels": {"org.dockscope.bench": label},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": history,
    }
    return _json(config)


def _manifest(config: bytes, layers: list[LayerResult]) -> bytes:
    return _json(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": _sha(config), "size": len(config)},
            "layers": [
                {"mediaType": MT_LAYER_GZIP, "digest": layer.digest, "size": layer.size}
                for layer in layers
            ],
        }
    )


def _index(manifest: bytes, ref: str) -> bytes:
    return _json(
        {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {
                    "mediaType": MT_MANIFEST,
                    "digest": _sha(manifest),
                    "size": len(manifest),
                    "annotations": {REF_ANNOTATION: ref},
                }
            ],
        }
    )


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = MTIME
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = _dir(name)
    info.mtime = MTIME
    tar.addfile(info)


def _add_path(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mtime = MTIME
    info.mode = 0o644
    with open(path, "rb") as f:
        tar.addfile(info, f)


def _write_oci_archive(
    dest: Path, index: bytes, blobs: dict[str, bytes], blob_files: dict[str, Path]
) -> None:
    """Members in lexical order, as skopeo's oci-archive writes them: blobs first."""
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.TarFile(tmp, "w", format=tarfile.PAX_FORMAT, copybufsize=MIB) as tar:
        _add_dir(tar, "blobs/")
        _add_dir(tar, "blobs/sha256/")
        for hexd in sorted({*blobs, *blob_files}):
            name = f"blobs/sha256/{hexd}"
            if hexd in blobs:
                _add_bytes(tar, name, blobs[hexd])
            else:
                _add_path(tar, name, blob_files[hexd])
        _add_bytes(tar, "index.json", index)
        _add_bytes(tar, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
    os.replace(tmp, dest)


def _write_legacy_archive(
    dest: Path, config: bytes, layers: list[LayerResult], raw_tars: list[Path], tag: str
) -> None:
    """A pre-Docker-25 ``docker save``: <v1id>/{VERSION,json,layer.tar}, manifest.json."""
    cfg = json.loads(config)
    diff_ids = [layer.diff_id for layer in layers]
    chains = chain_ids(diff_ids)
    entries: dict[str, bytes | Path] = {}
    v1_ids: list[str] = []
    parent = ""
    for i, chain in enumerate(chains):
        v1: dict[str, Any] = {"created": "1970-01-01T00:00:00Z", "container_config": {}}
        if i == len(chains) - 1:
            v1 = {k: cfg[k] for k in ("created", "author", "architecture", "os", "config")}
        id_input = dict(v1, layer_id=chain, **({"parent": parent} if parent else {}))
        v1_id = hashlib.sha256(json.dumps(id_input, sort_keys=True).encode()).hexdigest()
        v1_json = dict(v1, id=v1_id, os="linux")
        if parent:
            v1_json["parent"] = parent.removeprefix("sha256:")
        entries[f"{v1_id}/"] = b""
        entries[f"{v1_id}/VERSION"] = b"1.0"
        entries[f"{v1_id}/json"] = _json(v1_json)
        entries[f"{v1_id}/layer.tar"] = raw_tars[i]
        v1_ids.append(v1_id)
        parent = "sha256:" + v1_id
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    entries[config_name] = config
    repo, _, tag_name = tag.rpartition(":")
    entries["manifest.json"] = _json(
        [
            {
                "Config": config_name,
                "RepoTags": [tag],
                "Layers": [f"{v1_id}/layer.tar" for v1_id in v1_ids],
            }
        ]
    )
    entries["repositories"] = _json({repo: {tag_name: v1_ids[-1]}})
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.TarFile(tmp, "w", format=tarfile.PAX_FORMAT, copybufsize=MIB) as tar:
        for name in sorted(entries):
            value = entries[name]
            if name.endswith("/"):
                _add_dir(tar, name)
            elif isinstance(value, Path):
                _add_path(tar, name, value)
            else:
                _add_bytes(tar, name, value)
    os.replace(tmp, dest)


def _layer_facts(layers: list[LayerResult]) -> list[dict[str, Any]]:
    return [
        {"digest": x.digest, "size": x.size, "diff_id": x.diff_id, "media_type": MT_LAYER_GZIP}
        for x in layers
    ]


def _generate_big(
    out: Path, seed: int, scale: float, level: int, legacy: bool, workers: int
) -> dict[str, Any]:
    blob_dir = out / "blobs" / "sha256"
    if blob_dir.exists():
        shutil.rmtree(blob_dir)
    blob_dir.mkdir(parents=True)
    raw_dir = out / "legacy-layers"
    if legacy:
        raw_dir.mkdir(parents=True, exist_ok=True)
    specs = [
        LayerSpec(
            index=i,
            seed=seed * 1000 + i,
            small_files=max(1, round(n * scale)),
            content_bytes=round(mib * MIB * scale),
            level=level,
            blob_dir=str(blob_dir),
            raw_path=str(raw_dir / f"{i:02d}.tar") if legacy else None,
            top=i == len(BIG_LAYER_PLAN) - 1,
        )
        for i, (n, mib) in enumerate(BIG_LAYER_PLAN)
    ]
    # Biggest first so that two workers finish together.
    order = sorted(specs, key=lambda s: s.content_bytes + s.small_files * 3000, reverse=True)
    results: list[LayerResult] = []
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for res in pool.imap_unordered(_make_layer, order, chunksize=1):
            results.append(res)
            print(
                f"  layer {res.index:2d}: {res.files:6d} files, "
                f"{res.content_bytes / MIB:6.1f} MiB content -> {res.size / MIB:6.1f} MiB gzip "
                f"({res.seconds:.1f} s)",
                flush=True,
            )
    layers = sorted(results, key=lambda r: r.index)

    config = _config(layers, "big")
    manifest = _manifest(config, layers)
    index = _index(manifest, "big")
    small_blobs = {_sha(b).removeprefix("sha256:"): b for b in (config, manifest)}
    for hexd, data in small_blobs.items():
        (blob_dir / hexd).write_bytes(data)
    blob_files = {x.digest.removeprefix("sha256:"): blob_dir / x.digest[7:] for x in layers}
    oci_path = out / "big-oci.tar"
    _write_oci_archive(oci_path, index, small_blobs, blob_files)
    facts: dict[str, Any] = {
        "oci": _oci_info(oci_path, manifest, config, layers),
        "layer_results": [asdict(x) for x in layers],
        "blobs": {
            "dir": str(blob_dir.relative_to(out)),
            "manifest": _sha(manifest),
            "config": _sha(config),
        },
    }
    if legacy:
        legacy_path = out / "big-docker.tar"
        raw_tars = [Path(s.raw_path) for s in specs if s.raw_path]
        _write_legacy_archive(legacy_path, config, layers, raw_tars, "dockscope/bench:big")
        shutil.rmtree(raw_dir)
        facts["legacy"] = asdict(
            ImageInfo(
                archive=legacy_path.name,
                format="docker-archive",
                archive_size=legacy_path.stat().st_size,
                manifest_digest=None,
                config_digest=_sha(config),
                layers=[
                    {"diff_id": x.diff_id, "size": x.tar_size, "media_type": None} for x in layers
                ],
            )
        )
    return facts


def _generate_tiny(out: Path, level: int) -> dict[str, Any]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("etc/", "bin/"):
            _add_dir(tar, name)
        _add_bytes(tar, "etc/hostname", b"tiny\n")
        _add_bytes(tar, "etc/os-release", b'NAME="dockscope tiny"\nID=tiny\n')
        _add_bytes(tar, "bin/hello", b"#!/bin/sh\necho hello\n" * 10)
    layer_tar = raw.getvalue()
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    blob = comp.compress(layer_tar) + comp.flush()
    layer = LayerResult(0, _sha(blob), len(blob), _sha(layer_tar), len(layer_tar), files=3)
    config = _config([layer], "tiny")
    manifest = _manifest(config, [layer])
    index = _index(manifest, "tiny")
    blobs = {_sha(b).removeprefix("sha256:"): b for b in (config, manifest, blob)}
    path = out / "tiny-oci.tar"
    _write_oci_archive(path, index, blobs, {})
    return _oci_info(path, manifest, config, [layer])


def _oci_info(
    path: Path, manifest: bytes, config: bytes, layers: list[LayerResult]
) -> dict[str, Any]:
    """What the benchmarks know of an OCI archive written at ``path`` (ImageInfo, as JSON)."""
    return asdict(
        ImageInfo(
            archive=path.name,
            format="oci-archive",
            archive_size=path.stat().st_size,
            manifest_digest=_sha(manifest),
            config_digest=_sha(config),
            layers=_layer_facts(layers),
        )
    )


def _stamp_params(seed: int, scale: float, level: int, legacy: bool) -> dict[str, Any]:
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale,
        "gzip_level": level,
        "legacy": legacy,
    }


def _cache_ok(out: Path, meta: dict[str, Any], params: dict[str, Any]) -> bool:
    if meta.get("params") != params:
        return False
    images = [meta["big"]["oci"], meta["tiny"]] + (
        [meta["big"]["legacy"]] if params["legacy"] else []
    )
    for image in images:
        path = out / image["archive"]
        if not path.is_file() or path.stat().st_size != image["archive_size"]:
            return False
    blob_dir = out / meta["big"]["blobs"]["dir"]
    for layer in meta["big"]["oci"]["layers"]:
        path = blob_dir / layer["digest"].removeprefix("sha256:")
        if not path.is_file() or path.stat().st_size != layer["size"]:
            return False
    return all(
        (blob_dir / meta["big"]["blobs"][k].removeprefix("sha256:")).is_file()
        for k in ("manifest", "config")
    )


def ensure_images(
    out: Path,
    *,
    seed: int = 20240101,
    scale: float = 1.0,
    level: int = 6,
    legacy: bool = True,
    workers: int = 2,
    force: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Return (images.json content, whether it was generated now); generate when needed."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "images.json"
    params = _stamp_params(seed, scale, level, legacy)
    if stamp.is_file() and not force:
        meta: dict[str, Any] = json.loads(stamp.read_text())
        if _cache_ok(out, meta, params):
            return meta, False
    stamp.unlink(missing_ok=True)
    print(
        f"generating benchmark images in {out} (seed {seed}, scale {scale}, gzip -{level}, "
        f"{workers} worker processes)",
        flush=True,
    )
    start = time.perf_counter()
    big = _generate_big(out, seed, scale, level, legacy, workers)
    tiny = _generate_tiny(out, level)
    seconds = time.perf_counter() - start
    results = big["layer_results"]
    meta = {
        "params": params,
        "generation_seconds": round(seconds, 2),
        "workers": workers,
        "big": big,
        "tiny": tiny,
        "totals": {
            "layers": len(results),
            "regular_files": sum(r["files"] for r in results),
            "big_files": sum(r["big_files"] for r in results),
            "symlinks": sum(r["symlinks"] for r in results),
            "hardlinks": sum(r["hardlinks"] for r in results),
            "directories": sum(r["dirs"] for r in results),
            "whiteouts": sum(r["whiteouts"] for r in results),
            "content_bytes": sum(r["content_bytes"] for r in results),
            "random_content_bytes": sum(r["random_bytes"] for r in results),
            "layer_tar_bytes": sum(r["tar_size"] for r in results),
            "layer_blob_bytes": sum(r["size"] for r in results),
        },
    }
    stamp.write_text(json.dumps(meta, indent=2) + "\n")
    return meta, True
