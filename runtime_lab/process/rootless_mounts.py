"""PID 1's mounts where the kernel refuses them to a user namespace (rootless), done as runc
and podman do them there: /dev's nodes bind-mounted from the host's /dev (only the host's
root may mknod), and /sys bound from the host's, read-only, when sysfs cannot be mounted (a
network namespace the user namespace does not own: ``--net host``)."""

from __future__ import annotations

import errno
import os

from runtime_lab.kernel import linux

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# the flags a bind of the host's /sys keeps (a remount may not drop them in a user namespace)
SYS_FLAGS = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def bind_device(dev: str, name: str) -> None:
    """An empty file in the container's /dev with the host's node bound onto it."""
    target = os.path.join(dev, name)
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
    linux.mount(f"/dev/{name}", target, None, linux.MS_BIND)


def mount_sys(target: str) -> dict[str, Any]:
    """sysfs, read-only; where the kernel refuses it (EPERM: the network namespace is the
    host's), the host's /sys bound read-only instead."""
    flags = linux.MS_RDONLY | SYS_FLAGS
    try:
        linux.mount("sysfs", target, "sysfs", flags)
        return {"how": "sysfs"}
    except OSError as exc:
        if exc.errno != errno.EPERM:
            raise
    linux.mount("/sys", target, None, linux.MS_BIND | linux.MS_REC)
    linux.mount(None, target, None, linux.MS_BIND | linux.MS_REMOUNT | flags)
    return {
        "how": "the host's /sys bound read-only (sysfs: EPERM, the network namespace "
        "belongs to the host's user namespace)"
    }
