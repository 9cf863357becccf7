"""The container's control group at ``linux.cgroupsPath``, file by file: on cgroup v1 one
directory per mounted hierarchy (as runc's cgroupfs manager), on v2 one directory. The
engine chooses the path (podman with ``--cgroup-manager cgroupfs``:
``/libpod_parent/libpod-ID``)."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from typing import Any

from runtime_lab.oci.config import Resources, Unsupported

CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One cgroup filesystem mounted below /sys/fs/cgroup: where it is mounted, the v1
    controllers it carries (none on v2) and its cgroup version."""

    mount_point: str  # /sys/fs/cgroup/memory
    controllers: tuple[str, ...]  # ("memory",), ("name=systemd",), () for v2
    version: int


def hierarchies(mountinfo: str = "/proc/self/mountinfo") -> list[Hierarchy]:
    """The cgroup filesystems mounted below /sys/fs/cgroup."""
    found = []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            point = fields[4]
            if not point.startswith(CGROUP_ROOT):
                continue
            if fstype == "cgroup2":
                found.append(Hierarchy(point, (), 2))
            elif fstype == "cgroup":
                kinds = tuple(o for o in options if o not in _GENERIC_OPTIONS)
                found.append(Hierarchy(point, kinds, 1))
    # one directory per hierarchy (co-mounted controllers appear once)
    unique: dict[str, Hierarchy] = {h.mount_point: h for h in found}
    return list(unique.values())


_GENERIC_OPTIONS = {"rw", "ro", "relatime", "nosuid", "nodev", "noexec", "clone_children"}


def own_path(h: Hierarchy, pid: int | str = "self") -> str:
    """The group of ``pid`` in one hierarchy (for a relative cgroupsPath)."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, kinds, path = line.rstrip("\n").split(":", 2)
            if (h.version == 2 and kinds == "") or (
                h.version == 1 and set(kinds.split(",")) == set(h.controllers)
            ):
                return path
    return "/"


def paths(cgroups_path: str | None, container_id: str) -> dict[str, str]:
    """mount point → the container's directory in it."""
    result = {}
    for h in hierarchies():  # hybrid hosts: the v2 hierarchy too, without controllers (runc)
        relative = cgroups_path or container_id
        if ":" in relative:
            raise Unsupported(
                f"linux.cgroupsPath: {relative!r} is systemd's slice:prefix:name form "
                "(there is no systemd here: use --cgroup-manager cgroupfs)"
            )
        if not relative.startswith("/"):
            relative = os.path.join(own_path(h), relative)
        target = os.path.normpath(os.path.join(h.mount_point, relative.lstrip("/")))
        if not target.startswith(h.mount_point + "/"):
            raise Unsupported(f"linux.cgroupsPath: {relative!r} leads out of {h.mount_point}")
        result[h.mount_point] = target
    return result


def create(groups: dict[str, str]) -> dict[str, Any]:
    made = []
    for mount_point, path in groups.items():
        missing = []
        here = path
        while not os.path.isdir(here) and here != mount_point:
            missing.append(here)
            here = os.path.dirname(here)
        for directory in reversed(missing):
            os.mkdir(directory, 0o755)
            made.append(directory)
            if os.path.basename(mount_point) == "cpuset" or os.path.exists(
                os.path.join(directory, "cpuset.cpus")
            ):
                _inherit_cpuset(directory)
    return {"groups": sorted(groups.values()), "made": made}


def _inherit_cpuset(directory: str) -> None:
    """cgroup v1's cpuset starts empty: a process cannot join until cpus and mems are set."""
    parent = os.path.dirname(directory)
    for name in ("cpuset.cpus", "cpuset.mems"):
        try:
            if _read(os.path.join(directory, name)).strip():
                continue
            _write(os.path.join(directory, name), _read(os.path.join(parent, name)).strip())
        except OSError:
            pass


def limit_writes(groups: dict[str, str], resources: Resources) -> list[tuple[str, str]]:
    """The (file, value) writes of linux.resources, in order; refuses a limit whose
    controller is not mounted."""
    r = resources
    wanted: list[tuple[str, str, str, str]] = []  # controller, file, value, field

    def add(controller: str, name: str, value: object, field: str) -> None:
        if value is not None:
            wanted.append((controller, name, str(value), field))

    v2 = unified_only(groups)
    if v2:
        add("memory", "memory.max", _v2_max(r.memory_limit), "memory.limit")
        add("memory", "memory.low", r.memory_reservation, "memory.reservation")
        if r.cpu_quota is not None or r.cpu_period is not None:
            quota = "max" if r.cpu_quota in (None, -1) else r.cpu_quota
            add("cpu", "cpu.max", f"{quota} {r.cpu_period or 100000}", "cpu.quota")
        if r.cpu_shares is not None:  # runc's conversion of shares to weight
            add("cpu", "cpu.weight", 1 + ((r.cpu_shares - 2) * 9999) // 262142, "cpu.shares")
        add("pids", "pids.max", _v2_max(r.pids_limit), "pids.limit")
    else:
        add("memory", "memory.limit_in_bytes", r.memory_limit, "memory.limit")
        add("memory", "memory.soft_limit_in_bytes", r.memory_reservation, "memory.reservation")
        add("memory", "memory.memsw.limit_in_bytes", r.memory_swap, "memory.swap")
        add("memory", "memory.swappiness", r.memory_swappiness, "memory.swappiness")
        if r.disable_oom_killer:
            add("memory", "memory.oom_control", 1, "memory.disableOOMKiller")
        add("cpu", "cpu.shares", r.cpu_shares, "cpu.shares")
        add("cpu", "cpu.cfs_period_us", r.cpu_period, "cpu.period")
        add("cpu", "cpu.cfs_quota_us", r.cpu_quota, "cpu.quota")
        add("pids", "pids.max", "max" if r.pids_limit in (None, -1) else r.pids_limit, "pids.limit")
        if r.pids_limit is None:
            wanted.pop()
    add("cpuset", "cpuset.cpus", r.cpus, "cpu.cpus")
    add("cpuset", "cpuset.mems", r.mems, "cpu.mems")
    writes = []
    for controller, name, value, field in wanted:
        path = _controller_dir(groups, controller)
        if path is None:
            raise Unsupported(
                f"linux.resources.{field}: the {controller} controller is not mounted"
            )
        writes.append((os.path.join(path, name), value))
    if r.devices and not v2:  # v2: an eBPF program (device_program_v2)
        devices = _controller_dir(groups, "devices")
        if devices is None:
            if not v2:
                raise Unsupported("linux.resources.devices: the devices controller is not mounted")
        else:
            for rule in effective_device_rules([*_spec_rules(r), *_defaults()]):
                writes.append(rule_write(devices, rule))
    return writes


def device_program_v2(groups: dict[str, str], resources: Resources) -> dict[str, Any]:
    """cgroup v2 has no device files: the same rules (runc's emulator's result) become the
    eBPF program kernel/devices.py writes, attached to the group as `dockscope run` does.
    (This host mounts v1: the tests do not exercise it.)"""
    from pathlib import Path

    from runtime_lab.kernel.cgroups import KernelCgroupFS
    from runtime_lab.kernel.devices import WILDCARD, DeviceRule, device_program

    rules = []
    for allow, line in effective_device_rules([*_spec_rules(resources), *_defaults()]):
        if line == "a":
            rules.append(DeviceRule(allow, "a", WILDCARD, WILDCARD, "rwm"))
            continue
        kind, numbers, access = line.split()
        major, minor = (WILDCARD if n == "*" else int(n) for n in numbers.split(":"))
        rules.append(DeviceRule(allow, kind, major, minor, access))
    program, count = device_program(rules)
    path = next(iter(groups.values()))
    attached = KernelCgroupFS().attach_device_program(Path(path), program, count)
    return {"instructions": count, "attached_program_ids": attached}


def rule_write(devices: str, rule: tuple[bool, str]) -> tuple[str, str]:
    allow, line = rule
    return (os.path.join(devices, "devices.allow" if allow else "devices.deny"), line)


def effective_device_rules(rules: list[tuple[bool, str]]) -> list[tuple[bool, str]]:
    """What runc's device emulator writes for a list that starts by denying everything:
    ``a`` denied, then each device allowed once (access merged), sorted (type, then major
    and minor with ``*`` first), so ``devices.list`` reads as under runc."""
    if not rules or rules[0] != (False, "a"):
        return rules
    allowed: dict[tuple[str, str, str], set[str]] = {}
    for allow, line in rules[1:]:
        if line == "a":
            allowed.clear()
            if allow:
                return [(True, "a")]
            continue
        kind, numbers, access = line.split()
        major, minor = numbers.split(":")
        key = (kind, major, minor)
        if allow:
            allowed.setdefault(key, set()).update(access)
        elif key in allowed:
            allowed[key] -= set(access)

    def order(key: tuple[str, str, str]) -> tuple[str, int, int]:
        kind, major, minor = key
        return (kind, -1 if major == "*" else int(major), -1 if minor == "*" else int(minor))

    out = [(False, "a")]
    for key in sorted(allowed, key=order):
        access = "".join(c for c in "rwm" if c in allowed[key])
        if access:
            out.append((True, f"{key[0]} {key[1]}:{key[2]} {access}"))
    return out


def _spec_rules(r: Resources) -> list[tuple[bool, str]]:
    rules = []
    for d in r.devices:
        if d.type == "a" and d.major is None and d.minor is None:
            rules.append((d.allow, "a"))
            continue
        major = "*" if d.major is None or d.major < 0 else str(d.major)
        minor = "*" if d.minor is None or d.minor < 0 else str(d.minor)
        rules.append((d.allow, f"{d.type} {major}:{minor} {d.access}"))
    return rules


# the devices runc always allows after the engine's rules (libcontainer/specconv's
# AllowedDevices): mknod of any, the standard nodes, /dev/pts, /dev/ptmx, /dev/net/tun
RUNC_ALLOWED_DEVICES = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
)


def _defaults() -> list[tuple[bool, str]]:
    """runc's always-allowed devices, so /dev/null works whatever the engine wrote."""
    return [(True, line) for line in RUNC_ALLOWED_DEVICES]


def _v2_max(value: int | None) -> str | None:
    if value is None:
        return None
    return "max" if value == -1 else str(value)


def _version(mount_point: str) -> int:
    return 2 if os.path.exists(os.path.join(mount_point, "cgroup.controllers")) else 1


def unified_only(groups: dict[str, str]) -> bool:
    """cgroup v2 alone (not a hybrid host's extra v2 hierarchy next to v1's)."""
    return bool(groups) and all(_version(m) == 2 for m in groups)


def _controller_dir(groups: dict[str, str], controller: str) -> str | None:
    v2 = unified_only(groups)
    for mount_point, path in groups.items():
        if _version(mount_point) == 2:
            if not v2:
                continue
            available = _read(os.path.join(mount_point, "cgroup.controllers")).split()
            return path if controller in available or controller == "devices" else None
        if controller in os.path.basename(mount_point).split(","):
            return path
    return None


def apply_limits(writes: list[tuple[str, str]]) -> dict[str, Any]:
    written = {}
    for path, value in writes:
        try:
            _write(path, value)
        except OSError as exc:
            raise OSError(exc.errno, f"echo {value} > {path}: {exc.strerror}") from None
        written[path] = value
    return {"written": written}


def attach(groups: dict[str, str], pid: int) -> dict[str, Any]:
    files = []
    for path in groups.values():
        _write(os.path.join(path, "cgroup.procs"), str(pid))
        files.append(os.path.join(path, "cgroup.procs"))
    return {"pid": pid, "files": files}


def pids(groups: dict[str, str]) -> list[int]:
    found: set[int] = set()
    for path in groups.values():
        try:
            found.update(int(x) for x in _read(os.path.join(path, "cgroup.procs")).split())
        except OSError:
            continue
    return sorted(found)


def remove(groups: dict[str, str], timeout: float = 5.0) -> list[str]:
    """rmdir each group (retried while the kernel still counts an exiting process)."""
    removed = []
    deadline = time.monotonic() + timeout
    for path in groups.values():
        while True:
            try:
                os.rmdir(path)
                removed.append(path)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
    return removed


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
