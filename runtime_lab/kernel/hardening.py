"""Docker's read-only and masked paths: what of the host's kernel a container may not touch.

A container's /proc and /sys are the kernel's own: /proc/sys/kernel/core_pattern written as
root inside would make the host run a program of the container's choosing as root when any
process dumps core. Docker (moby's ``oci.DefaultLinuxSpec``, runc's ``readonlyPath`` and
``maskPath``) closes that after ``pivot_root``:

- read-only paths are bind-mounted onto themselves and remounted read-only (writes fail with
  EROFS);
- masked paths disappear under an empty read-only tmpfs (directories) or /dev/null bind-mounted
  over them (files): they read empty. Paths the kernel does not have are skipped.

Without CAP_SYS_ADMIN (docker's default capabilities lack it) the container cannot unmount
either.
"""

from __future__ import annotations

import errno
import glob
import os
import stat

from runtime_lab.kernel import linux

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# docker 28's list (API 1.48): moby oci/defaults.go, with /proc/interrupts and powercap
MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
# also masked by docker 28: each CPU's thermal_throttle directory (its counters leak the host's
# load to a side channel)
MASKED_GLOBS = ("/sys/devices/system/cpu/cpu*/thermal_throttle",)

# the flags a remount must keep: proc and sysfs are mounted nosuid, nodev, noexec
_ST_FLAGS = {
    os.ST_NOSUID: linux.MS_NOSUID,
    os.ST_NODEV: linux.MS_NODEV,
    os.ST_NOEXEC: linux.MS_NOEXEC,
}


def _kept_flags(path: str) -> int:
    flags = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_FLAGS.items() if flags & st)


def make_readonly(paths: tuple[str, ...] = READONLY_PATHS) -> dict[str, Any]:
    """Each path bound onto itself, then remounted read-only (in the container, after
    pivot_root)."""
    done: dict[str, str] = {}
    for path in paths:
        try:
            linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                done[path] = "absent"
                continue
            raise
        flags = linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | _kept_flags(path)
        linux.mount(path, path, None, flags)
        done[path] = "read-only"
    return {"paths": done, "mountinfo": _mountinfo(paths)}


def mask(
    paths: tuple[str, ...] = MASKED_PATHS, patterns: tuple[str, ...] = MASKED_GLOBS
) -> dict[str, Any]:
    """Directories under an empty read-only tmpfs, files under /dev/null."""
    chosen = list(paths)
    for pattern in patterns:
        chosen += sorted(glob.glob(pattern))
    done: dict[str, str] = {}
    for path in chosen:
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                done[path] = "absent"
                continue
            raise
        if stat.S_ISDIR(st.st_mode):
            linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY)
            done[path] = "empty read-only tmpfs"
        else:
            linux.mount("/dev/null", path, None, linux.MS_BIND)
            done[path] = "/dev/null"
    return {"paths": done}


def _mountinfo(paths: tuple[str, ...]) -> list[str]:
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [line for line in lines if line.split()[4] in paths]
