"""Small builders for crafted test archives (hostile and broken cases).

Real-world inputs come from ../shared/corpus and the sample images; these builders make the
cases no real tool writes on purpose: escaping paths, bad digests, truncation, deep JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_tar(path: Path, members: dict[str, bytes | tuple[str, str]]) -> Path:
    """Write a tar whose members are bytes, or ("symlink"|"hardlink", target) pairs."""
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, value in members.items():
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if isinstance(value, tuple):
                kind, target = value
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = target
                tf.addfile(info)
            else:
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value))
    return path


def config_bytes(diff_ids: list[str], **extra: Any) -> bytes:
    config: dict[str, Any] = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"step {i}"} for i in range(len(diff_ids))],
    }
    config.update(extra)
    return json.dumps(config).encode()


def docker_archive_members(
    layers: list[bytes], *, tag: str = "test:latest"
) -> dict[str, bytes | tuple[str, str]]:
    """A legacy docker-save archive's members for the given uncompressed layers."""
    diff_ids = [sha256(layer) for layer in layers]
    config = config_bytes(diff_ids)
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    members: dict[str, bytes | tuple[str, str]] = {config_name: config}
    paths = []
    for i, layer in enumerate(layers):
        directory = f"{i:064x}"
        members[f"{directory}/layer.tar"] = layer
        members[f"{directory}/VERSION"] = b"1.0"
        paths.append(f"{directory}/layer.tar")
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": paths}]
    members["manifest.json"] = json.dumps(manifest).encode()
    return members


def oci_layout(
    root: Path,
    layers: list[bytes],
    *,
    ref: str = "latest",
    diff_ids: list[str] | None = None,
    config: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, str]:
    """An OCI layout directory with uncompressed layers; returns the digests written.
    ``diff_ids`` replaces the ones the config records (to test a mismatch); ``config`` keys
    replace the config's defaults; ``annotations`` are the manifest's."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest.split(":")[1]).write_bytes(data)
        return digest

    layer_descs = [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": put(lyr),
            "size": len(lyr),
        }
        for lyr in layers
    ]
    config_raw = config_bytes(diff_ids or [sha256(lyr) for lyr in layers], **(config or {}))
    config_digest = put(config_raw)
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_raw),
        },
        "layers": layer_descs,
    }
    if annotations:
        manifest_doc["annotations"] = annotations
    manifest = json.dumps(manifest_doc).encode()
    manifest_digest = put(manifest)
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return {"config": config_digest, "manifest": manifest_digest}


# -- layer entries of any kind, for the unpack and export tests ----------------------------------

_TAR_KINDS = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


@dataclass(frozen=True)
class Entry:
    """One tar member, written exactly as given (names are not cleaned: hostile ones stay)."""

    name: str
    kind: str = "file"  # a key of _TAR_KINDS, or a raw one-character typeflag
    data: bytes = b""
    link: str = ""
    mode: int | None = None  # default: 0o755 for directories, 0o644 otherwise
    uid: int = 0
    gid: int = 0
    mtime: int = 1_700_000_000
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, str], ...] = ()
    pax_path: bool = False  # carry the name in a PAX "path" record


def f(name: str, data: bytes = b"", **kw: Any) -> Entry:
    return Entry(name, "file", data, **kw)


def d(name: str, **kw: Any) -> Entry:
    return Entry(name, "dir", **kw)


def sym(name: str, target: str, **kw: Any) -> Entry:
    return Entry(name, "symlink", link=target, **kw)


def hard(name: str, target: str, **kw: Any) -> Entry:
    return Entry(name, "hardlink", link=target, **kw)


def build_layer(entries: Iterable[Entry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = _TAR_KINDS.get(entry.kind) or entry.kind.encode()
            info.mode = (
                entry.mode if entry.mode is not None else (0o755 if entry.kind == "dir" else 0o644)
            )
            info.uid, info.gid, info.mtime = entry.uid, entry.gid, entry.mtime
            info.linkname = entry.link
            info.devmajor, info.devminor = entry.devmajor, entry.devminor
            pax = {f"SCHILY.xattr.{k}": v for k, v in entry.xattrs}
            if entry.pax_path:
                pax["path"] = entry.name
            info.pax_headers = pax
            if entry.kind == "file" or entry.kind not in _TAR_KINDS:
                info.size = len(entry.data)
                tf.addfile(info, io.BytesIO(entry.data))
            else:
                tf.addfile(info)
    return buffer.getvalue()


def snapshot(root: Path, *, skip: Path | None = None) -> dict[str, tuple[Any, ...]]:
    """Everything below ``root`` (and ``root`` itself), never following a symlink: type,
    mode, owner, size, mtime, ctime (any chmod, chown, link or write moves it), link count,
    content digest, symlink target. ``skip`` and what it holds are left out."""
    state: dict[str, tuple[Any, ...]] = {}
    stack = [root]
    while stack:
        path = stack.pop()
        if skip is not None and path == skip:
            continue
        st = os.lstat(path)
        extra: str | None = None
        if stat.S_ISLNK(st.st_mode):
            extra = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            extra = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISDIR(st.st_mode):
            stack.extend(path.iterdir())
        state[str(path.relative_to(root))] = (
            stat.S_IFMT(st.st_mode),
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_nlink,
            extra,
        )
    return state


# -- running hostile input with the host's files out of reach ------------------------------------
_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 32, 4096, 0x4000, 1 << 18


def _isolate(writable: list[Path]) -> None:
    """In a new mount namespace: everything read-only except ``writable`` (bind mounts)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source: bytes, target: bytes, flags: int) -> None:
        if libc.mount(source, target, None, flags, None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"mount {target!r}: {os.strerror(errno)}")

    if libc.unshare(_CLONE_NEWNS) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare: {os.strerror(errno)}")
    mount(b"none", b"/", _MS_REC | _MS_PRIVATE)
    for path in writable:
        mount(bytes(path), bytes(path), _MS_BIND | _MS_REC)
    mount(b"none", b"/", _MS_REMOUNT | _MS_BIND | _MS_RDONLY)


def sandboxed(function: Any, writable: list[Path]) -> Any:
    """``function()`` in a child process that sees the root filesystem read-only except
    ``writable``: should a breakout ever come back, it fails there instead of writing to
    the host's /etc. As root only (elsewhere permissions already keep /etc out of reach);
    where mount namespaces are not available the call runs here, unprotected."""
    import pickle

    if os.geteuid() != 0:
        return function()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        try:
            try:
                _isolate(writable)
            except OSError:
                outcome: tuple[str, Any] = ("no-sandbox", None)
            else:
                outcome = ("ok", function())
        except BaseException as exc:
            outcome = ("error", f"{type(exc).__name__}: {exc}")
        payload = pickle.dumps(outcome)
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(payload)
    if kind == "no-sandbox":
        return function()
    if kind == "error":
        raise AssertionError(f"in the sandbox: {value}")
    return value


# -- the trees unpack and export produce, in one comparable form --------------------------------
Tree = dict[str, tuple[str, int | None, str | None]]


def dest_tree(dest: Path) -> Tree:
    """path -> (type, mode, content digest / link target), hard links as groups of names."""
    tree: Tree = {}
    inodes: dict[int, list[str]] = {}
    for path in sorted(_walk(dest)):
        st = os.lstat(path)
        rel = str(path.relative_to(dest))
        if stat.S_ISDIR(st.st_mode):
            tree[rel] = ("dir", stat.S_IMODE(st.st_mode), None)
            continue
        if stat.S_ISLNK(st.st_mode):
            tree[rel] = ("symlink", None, os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            tree[rel] = ("file", stat.S_IMODE(st.st_mode), digest)
        elif stat.S_ISFIFO(st.st_mode):
            tree[rel] = ("fifo", stat.S_IMODE(st.st_mode), None)
        elif stat.S_ISCHR(st.st_mode):
            tree[rel] = ("char", stat.S_IMODE(st.st_mode), f"{st.st_rdev}")
        elif stat.S_ISBLK(st.st_mode):
            tree[rel] = ("block", stat.S_IMODE(st.st_mode), f"{st.st_rdev}")
        inodes.setdefault(st.st_ino, []).append(rel)
    for names in inodes.values():
        for name in names[1:]:
            kind, mode, extra = tree[name]
            tree[name] = (kind, mode, f"{extra} =link {names[0]}")
    return tree


def _walk(root: Path) -> list[Path]:
    out = []
    stack = [root]
    while stack:
        path = stack.pop()
        for child in path.iterdir():
            out.append(child)
            if not child.is_symlink() and child.is_dir():  # never follow a symlink
                stack.append(child)
    return out


def tar_tree(data: bytes) -> Tree:
    tree: Tree = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = tf.getmembers()
        names = [m.name.rstrip("/") for m in members]
        assert len(names) == len(set(names)), "a path appears twice in the exported tar"
        for member in members:
            name = member.name.rstrip("/")
            if member.isdir():
                tree[name] = ("dir", member.mode, None)
            elif member.issym():
                tree[name] = ("symlink", None, member.linkname)
            elif member.isfile():
                reader = tf.extractfile(member)
                assert reader is not None
                digest = hashlib.sha256(reader.read()).hexdigest()
                tree[name] = ("file", member.mode, digest)
            elif member.islnk():
                assert member.linkname in tree, "a hard link before its target"
                kind, mode, extra = tree[member.linkname]
                tree[name] = (kind, mode, f"{extra} =link {member.linkname}")
            elif member.isfifo():
                tree[name] = ("fifo", member.mode, None)
            elif member.ischr() or member.isblk():
                kind = "char" if member.ischr() else "block"
                tree[name] = (kind, member.mode, f"{os.makedev(member.devmajor, member.devminor)}")
    return tree


def extract_trusted(
    archive: tarfile.TarFile, destination: Path | str, filter: str = "data"
) -> None:
    """``extractall`` of an archive the tests made or ship (never image content under test):
    with tarfile's extraction filter where Python has one (3.11.4 and later; Debian
    bookworm's 3.11.2 has none, and then the archive is extracted as is)."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(destination, filter=filter)
    else:  # pragma: no cover - Python before 3.11.4
        archive.extractall(destination)
