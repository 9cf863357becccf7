"""The container's filesystems, mounted by PID 1 inside its private mount namespace: the root
(overlayfs), /proc, /dev, /sys, the volumes (each target resolved inside the root, symlinks
included, as runc does) and pivot_root into it."""

from __future__ import annotations

import errno
import os
import stat

from inspect_tool.model.resolve import (
    DIRECTORY,
    NOT_DIRECTORY,
    Missing,
    Node,
    Reason,
    Refusal,
    symlink,
)
from inspect_tool.model.resolve import resolve as resolve_in
from runtime_lab.kernel import linux
from runtime_lab.process.launch import LaunchSpec
from runtime_lab.process.rootless_mounts import bind_device

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEV_NODES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)


def _mountinfo(*mount_points: str) -> list[str]:
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    if not mount_points:
        return lines
    return [line for line in lines if line.split()[4] in mount_points]


def rootfs_args(spec: LaunchSpec) -> dict[str, Any]:
    if spec.rootfs_mode == "copy":
        return {"source": spec.merged, "target": spec.merged, "flags": ["MS_BIND"]}
    return {
        "fstype": "overlay",
        "target": spec.merged,
        "lowerdir": list(reversed(spec.lowerdirs)),
        "upperdir": spec.upper,
        "workdir": spec.work,
        **({"options": ["userxattr"]} if spec.rootless else {}),
    }


def mount_rootfs(spec: LaunchSpec) -> dict[str, Any]:
    if spec.rootfs_mode == "copy":
        linux.mount(spec.merged, spec.merged, None, linux.MS_BIND | linux.MS_REC)
    else:
        # overlayfs lists lowerdirs top first
        lower = ":".join(reversed(spec.lowerdirs)) if spec.lowerdirs else None
        if lower is None:  # an image without layers: one empty lower layer
            empty = os.path.join(os.path.dirname(spec.upper), "empty")
            os.makedirs(empty, exist_ok=True)
            lower = empty
        data = f"lowerdir={lower},upperdir={spec.upper},workdir={spec.work}"
        if spec.rootless:  # trusted.* xattrs are the host root's: user.overlay.* instead
            data += ",userxattr"
        linux.mount("overlay", spec.merged, "overlay", 0, data)
    return {"mountinfo": _mountinfo(spec.merged)}


def _mountpoint(root: str, name: str, spec: LaunchSpec) -> str:
    """The directory to mount on; created (and remembered) when the image lacks it."""
    target = os.path.join(root, name)
    try:
        st = os.lstat(target)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, f"{name} in the image is not a directory")
    except FileNotFoundError:
        os.makedirs(target, mode=0o755)
        spec.created_mountpoints.append("/" + name)
    return target


def mount_filesystem(
    root: str, name: str, source: str, fstype: str, flags: int, spec: LaunchSpec
) -> dict[str, Any]:
    created = len(spec.created_mountpoints)
    target = _mountpoint(root, name, spec)
    linux.mount(source, target, fstype, flags)
    return {
        "mountinfo": _mountinfo(target),
        "created_mountpoints": spec.created_mountpoints[created:],
    }


def mount_dev(root: str, spec: LaunchSpec) -> dict[str, Any]:
    created = len(spec.created_mountpoints)
    dev = _mountpoint(root, "dev", spec)
    linux.mount(
        "tmpfs", dev, "tmpfs", linux.MS_NOSUID | linux.MS_STRICTATIME, "mode=755,size=65536k"
    )
    for name, major, minor in DEV_NODES:
        path = os.path.join(dev, name)
        if spec.rootless:  # mknod is the host root's: the host's node, bound (as runc does)
            bind_device(dev, name)
            continue
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)
    os.mkdir(os.path.join(dev, "pts"), 0o755)
    linux.mount(
        "devpts",
        os.path.join(dev, "pts"),
        "devpts",
        linux.MS_NOSUID | linux.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    os.mkdir(os.path.join(dev, "shm"), 0o1777)
    linux.mount(
        "shm",
        os.path.join(dev, "shm"),
        "tmpfs",
        linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
        "mode=1777,size=65536k",
    )
    host_devices = _host_devices(dev) if spec.privileged else []
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))
    return {
        **({"bound_from_host": [f"/dev/{n}" for n, _, _ in DEV_NODES]} if spec.rootless else {}),
        "devices": sorted(os.listdir(dev)),
        **({"host_devices": host_devices} if spec.privileged else {}),
        "mountinfo": _mountinfo(dev),
        "created_mountpoints": spec.created_mountpoints[created:],
    }


_NOT_COPIED = ("pts", "shm", "mqueue", "ptmx", "console")  # the container's own


def _host_devices(dev: str, host: str = "/dev", depth: int = 0) -> list[str]:
    """--privileged: a node in the container's /dev for each device of the host's (made
    while the host's /dev is still in reach, before pivot_root), as docker's privileged
    containers get them; the names made."""
    made: list[str] = []
    try:
        entries = list(os.scandir(host))
    except OSError:
        return made
    for entry in entries:
        if depth == 0 and entry.name in _NOT_COPIED:
            continue
        target = os.path.join(dev, entry.name)
        try:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) and depth < 3:
                os.makedirs(target, mode=0o755, exist_ok=True)
                made += [f"{entry.name}/{n}" for n in _host_devices(target, entry.path, depth + 1)]
            elif (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and not os.path.lexists(
                target
            ):
                os.mknod(target, st.st_mode, st.st_rdev)
                os.chown(target, st.st_uid, st.st_gid)
                os.chmod(target, stat.S_IMODE(st.st_mode))
                made.append(entry.name)
        except OSError:  # a device that vanished, or one this kernel will not let us make
            continue
    return sorted(made)


def resolve_in_root(root: str, path: str, *, directory: bool, created: list[str]) -> str:
    """``path`` in the container as a host path below ``root``, every symlink resolved as if
    ``root`` were ``/`` (filepath-securejoin's rule, ``inspect_tool/model/resolve.py``:
    ``..`` stops at the root, 40 links at most), so an image's ``/data -> /etc`` or
    ``-> ../../..`` cannot lead a mount out of the container. Missing components are made
    (directories; the last one an empty file when a file is to be mounted on it), the
    topmost one appended to ``created``."""

    def lookup(parts: tuple[str, ...]) -> Node | None:
        candidate = os.path.join(root, *parts)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return symlink(os.readlink(candidate))
        return DIRECTORY if stat.S_ISDIR(st.st_mode) else NOT_DIRECTORY

    def create(parts: tuple[str, ...], last: bool) -> Node:
        candidate = os.path.join(root, *parts)
        if not last or directory:
            os.mkdir(candidate, 0o755)
        else:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
        inside = "/" + "/".join(parts)
        if not any(inside.startswith(p + "/") for p in created):
            created.append(inside)
        return DIRECTORY if not last or directory else NOT_DIRECTORY

    found = resolve_in(path, lookup, missing=Missing.CREATE, create=create)
    if isinstance(found, Refusal):
        if found.reason is Reason.LOOP:
            raise OSError(errno.ELOOP, f"{path}: too many levels of symbolic links")
        where = "/" + "/".join(found.at)
        raise OSError(errno.ENOTDIR, f"{path}: {where} is not a directory")
    return os.path.join(root, *found.parts)


def mount_volume(root: str, mount: dict[str, Any], spec: LaunchSpec) -> dict[str, Any]:
    """A bind mount of the volume's (or host path's) directory onto its place in the
    container, made read-only by a second mount call when asked (MS_RDONLY is ignored by
    the first: a bind keeps its source's flags). A new, empty volume first gets the image's
    files at that place, as docker copies them."""
    created = len(spec.created_mountpoints)
    source = mount["source"]
    is_directory = os.path.isdir(source)
    target = resolve_in_root(
        root, mount["destination"], directory=is_directory, created=spec.created_mountpoints
    )
    copied = 0
    if mount.get("copy") and is_directory and not os.listdir(source):
        st = os.lstat(target)
        if stat.S_ISDIR(st.st_mode):
            copied = _copy_tree(target, source)
    fd = os.open(target, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:  # through the descriptor: the very directory resolved above
        linux.mount(source, f"/proc/self/fd/{fd}", None, linux.MS_BIND | linux.MS_REC)
    finally:
        os.close(fd)
    if mount["read_only"]:
        linux.mount(None, target, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)
    return {
        "mountinfo": _mountinfo(target),
        "created_mountpoints": spec.created_mountpoints[created:],
        "copied_from_image": copied,
    }


def _copy_tree(source: str, destination: str) -> int:
    """The image's entries below ``source`` into an empty volume: owners, modes and times
    kept, symlinks copied as links (never followed), devices and FIFOs made again."""
    count = 0
    directories: list[tuple[str, os.stat_result]] = [(destination, os.lstat(source))]
    for here, dirnames, filenames in os.walk(source):
        there = os.path.join(destination, os.path.relpath(here, source))
        for name in [*dirnames, *filenames]:
            src, dst = os.path.join(here, name), os.path.join(there, name)
            st = os.lstat(src)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(dst, 0o700)
                directories.append((dst, st))
                count += 1
                continue
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISREG(st.st_mode):
                reader = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                writer = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                try:
                    while chunk := os.read(reader, 1 << 20):
                        os.write(writer, chunk)
                finally:
                    os.close(reader)
                    os.close(writer)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                os.mknod(dst, st.st_mode, st.st_rdev)
            else:
                continue  # a socket
            os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            count += 1
    for path, st in reversed(directories):  # children first: their writes touched the times
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return count


def remount_root_read_only() -> dict[str, Any]:
    linux.mount(None, "/", None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY)
    return {"mountinfo": _mountinfo("/")}


def pivot(root: str) -> dict[str, Any]:
    os.chdir(root)
    linux.pivot_root(".", ".")  # the old root ends up stacked under the new one
    linux.umount2(".", linux.MNT_DETACH)  # …and is detached from it
    os.chdir("/")
    return {"mountinfo": _mountinfo()}
