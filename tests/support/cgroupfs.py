"""Fake cgroup file systems that behave as the kernel does, for the drivers in
``runtime_lab/cgroups.py``.

This machine (and CI) mounts cgroup v1, so the v2 driver cannot meet a real unified hierarchy
here. ``FakeCgroup2FS`` models the rules of Documentation/admin-guide/cgroup-v2.rst that a
runtime runs into:

* ``mkdir`` makes a group with its interface files: the core ``cgroup.*`` files, and the
  files of each controller the parent lists in ``cgroup.subtree_control`` (``memory.max``
  reads ``max``, ``cpu.max`` reads ``max 100000``, ``pids.max`` reads ``max``…). The root has
  no limit files.
* ``cgroup.controllers`` of a group is its parent's ``cgroup.subtree_control`` (the root's
  lists every controller the kernel has). ``+name`` in ``cgroup.subtree_control`` needs the
  controller in the group's own ``cgroup.controllers`` (ENOENT otherwise); a bad token is
  EINVAL. Enabling or disabling adds or removes the children's interface files.
* "No internal processes": a non-root group with processes cannot enable controllers for
  its children, and a process cannot join a non-root group that has controllers enabled for
  its children (EBUSY). The root of the whole hierarchy is exempt; the root of a cgroup
  namespace (``namespace_root=True``) is not.
* Values are parsed as the kernel parses them and rejected with EINVAL otherwise: memory
  sizes (``max`` or bytes with an optional K/M/G/T suffix, rounded down to whole pages),
  ``cpu.max`` (``max|QUOTA [PERIOD]``, period 1000–1000000 µs, quota at least 1000 µs),
  ``pids.max`` (``max`` or 0–4194304). Read-only files refuse writes (EINVAL); a file that
  does not exist cannot be created (EACCES), nor read (ENOENT).
* ``rmdir`` fails with EBUSY while the group has processes or child groups.
* ``oom_kill`` does what the OOM killer does when a group hits ``memory.max``: one process
  dies, ``oom`` and ``oom_kill`` count up in ``memory.events`` of the group and of every
  ancestor (hierarchical), and in ``memory.events.local`` of the group only.

``FakeCgroup1FS`` models v1 the same way for the v1 driver: one hierarchy per controller
under ``<root>/<controller>``, no subtree control, ``memory.memsw.limit_in_bytes`` never below
``memory.limit_in_bytes`` (and the other way round), ``cpu.cfs_quota_us`` -1 or at least 1000,
and a ``devices`` controller whose ``devices.list`` starts as ``a *:* rwm``: writing ``a`` to
``devices.deny`` empties it, a line written to ``devices.allow`` is added to it (EPERM when
the parent's list does not cover it, as devcgroup_update_access refuses).

Device programs (cgroup v2's eBPF device filter) are recorded per group by
``attach_device_program``, not run: ``tests/runtime/test_devices.py`` runs the same program on the
real kernel (the hybrid host's unified hierarchy) and in an interpreter of its own.
"""

from __future__ import annotations

import errno
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PAGE_SIZE = 4096
PIDS_LIMIT = 4194304  # PID_MAX_LIMIT on 64-bit
UNLIMITED_V1 = 9223372036854771712  # PAGE_COUNTER_MAX * PAGE_SIZE, what v1 shows for "-1"
# the controllers of a typical kernel, in the order cgroup.controllers lists them
KERNEL_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")


def _error(code: int, path: Path | str) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def parse_memory(text: str, path: Path) -> int | None:
    """The kernel's memparse for memory files: ``max`` (None) or bytes, rounded to pages."""
    value = text.strip()
    if value == "max":
        return None
    multiplier = 1
    if value and value[-1] in "kKmMgGtT":
        multiplier = 1024 ** ("kmgt".index(value[-1].lower()) + 1)
        value = value[:-1]
    if not value.isdigit():
        raise _error(errno.EINVAL, path)
    return int(value) * multiplier // PAGE_SIZE * PAGE_SIZE


def _format_memory(value: int | None) -> str:
    return "max" if value is None else str(value)


@dataclass
class Group:
    """One cgroup directory."""

    path: Path
    parent: Group | None
    children: dict[str, Group] = field(default_factory=dict)
    procs: set[int] = field(default_factory=set)
    subtree: set[str] = field(default_factory=set)  # v2: cgroup.subtree_control
    values: dict[str, str] = field(default_factory=dict)  # writable files as stored
    counters: dict[str, dict[str, int]] = field(default_factory=dict)  # *.events files


class _FakeFS(ABC):
    """What both versions share: a tree of groups, processes, the CgroupFS protocol."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.groups: dict[Path, Group] = {}
        self.where: dict[tuple[str, int], Group] = {}  # (hierarchy, pid) → the pid's group
        self.fail_mkdir: dict[Path, int] = {}  # path → errno, to simulate a failing mkdir
        self.log: list[tuple[str, str, str]] = []  # ("write"|"mkdir"|"rmdir", path, value)
        self.device_programs: dict[Path, list[tuple[bytes, int]]] = {}

    # -- CgroupFS protocol ----------------------------------------------------------------
    def mkdir(self, path: Path) -> None:
        """Make ``path`` and its missing parents (``mkdir -p``, as KernelCgroupFS does)."""
        missing: list[Path] = []
        current = path
        while current not in self.groups:
            if current == current.parent or not current.is_relative_to(self.root):
                raise _error(errno.ENOENT, path)  # not below a mounted hierarchy
            missing.append(current)
            current = current.parent
        for directory in reversed(missing):
            if directory.parent in self.groups and directory.name in self._files(
                self.groups[directory.parent]
            ):
                raise _error(errno.EEXIST, directory)
            if directory in self.fail_mkdir:
                raise _error(self.fail_mkdir[directory], directory)
            parent = self.groups[directory.parent]
            group = Group(directory, parent)
            parent.children[directory.name] = group
            self.groups[directory] = group
            self._populate(group)
            self.log.append(("mkdir", str(directory), ""))

    def rmdir(self, path: Path) -> None:
        group = self.groups.get(path)
        if group is None:
            code = errno.ENOTDIR if self._file_of(path) is not None else errno.ENOENT
            raise _error(code, path)
        if group.parent is None or group.procs or group.children:
            raise _error(errno.EBUSY, path)
        del group.parent.children[path.name]
        del self.groups[path]
        self.log.append(("rmdir", str(path), ""))

    def read(self, path: Path) -> str:
        found = self._file_of(path)
        if found is None:
            raise _error(errno.EISDIR if path in self.groups else errno.ENOENT, path)
        group, name = found
        return self._read(group, name)

    def write(self, path: Path, value: str) -> None:
        found = self._file_of(path)
        if found is None:
            # cgroupfs cannot create regular files: open(O_CREAT) is refused
            raise _error(errno.EISDIR if path in self.groups else errno.EACCES, path)
        group, name = found
        self._write(group, name, value, path)
        self.log.append(("write", str(path), value))

    def exists(self, path: Path) -> bool:
        return path in self.groups or self._file_of(path) is not None

    def attach_device_program(self, path: Path, program: bytes, count: int) -> list[int]:
        if path not in self.groups:
            raise _error(errno.ENOENT, path)
        if len(program) != 8 * count or not program:
            raise _error(errno.EINVAL, path)  # the verifier's answer to a malformed program
        attached = self.device_programs.setdefault(path, [])
        attached.append((program, count))
        self.log.append(("attach", str(path), f"{count} instructions"))
        return list(range(1, len(attached) + 1))

    # -- what the kernel does on its own --------------------------------------------------
    def add_process(self, path: Path, pid: int) -> None:
        """A process that lives in ``path`` already (dockscope itself, another program)."""
        self._move(self.groups[path], pid)

    def exit(self, pid: int) -> None:
        """The process exited (and was reaped): it leaves its group in every hierarchy."""
        for key in [k for k in self.where if k[1] == pid]:
            self.where.pop(key).procs.discard(pid)

    def listdir(self, path: Path) -> list[str]:
        group = self.groups[path]
        return sorted([*group.children, *self._files(group)])

    # -- helpers for the versions ---------------------------------------------------------
    def _file_of(self, path: Path) -> tuple[Group, str] | None:
        group = self.groups.get(path.parent)
        if group is None or path.name not in self._files(group):
            return None
        return group, path.name

    def _move(self, group: Group, pid: int) -> None:
        """A process joins ``group``, leaving its old group in the same hierarchy."""
        key = (self._hierarchy(group), pid)
        old = self.where.get(key)
        if old is not None:
            old.procs.discard(pid)
        group.procs.add(pid)
        self.where[key] = group

    def _hierarchy(self, group: Group) -> str:
        return ""

    @staticmethod
    def _pid(value: str, path: Path) -> int:
        text = value.strip()
        if not text.isdigit() or int(text) <= 0:
            raise _error(errno.EINVAL, path)
        return int(text)

    @abstractmethod
    def _files(self, group: Group) -> set[str]:
        """Each hierarchy (v1, v2) defines its own."""

    @abstractmethod
    def _populate(self, group: Group) -> None:
        """Each hierarchy (v1, v2) defines its own."""

    @abstractmethod
    def _read(self, group: Group, name: str) -> str:
        """Each hierarchy (v1, v2) defines its own."""

    @abstractmethod
    def _write(self, group: Group, name: str, value: str, path: Path) -> None:
        """Each hierarchy (v1, v2) defines its own."""


# -- cgroup v2 ------------------------------------------------------------------------------

V2_CORE = {
    "cgroup.procs": "rw",
    "cgroup.threads": "rw",
    "cgroup.controllers": "ro",
    "cgroup.subtree_control": "rw",
    "cgroup.events": "ro",
    "cgroup.type": "rw",
    "cgroup.max.depth": "rw",
    "cgroup.max.descendants": "rw",
    "cgroup.stat": "ro",
    "cgroup.freeze": "rw",
    "cgroup.kill": "wo",
    "cpu.stat": "ro",
}
V2_ROOT_CORE = (
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.controllers",
    "cgroup.subtree_control",
    "cgroup.max.depth",
    "cgroup.max.descendants",
    "cgroup.stat",
    "cpu.stat",
)
# controller → file → (mode, initial value)
V2_CONTROLLER_FILES: dict[str, dict[str, tuple[str, str]]] = {
    "memory": {
        "memory.current": ("ro", "0"),
        "memory.min": ("rw", "0"),
        "memory.low": ("rw", "0"),
        "memory.high": ("rw", "max"),
        "memory.max": ("rw", "max"),
        "memory.peak": ("ro", "0"),
        "memory.events": ("ro", ""),
        "memory.events.local": ("ro", ""),
        "memory.stat": ("ro", ""),
        "memory.oom.group": ("rw", "0"),
        "memory.swap.current": ("ro", "0"),
        "memory.swap.max": ("rw", "max"),
    },
    "cpu": {
        "cpu.max": ("rw", "max 100000"),
        "cpu.max.burst": ("rw", "0"),
        "cpu.weight": ("rw", "100"),
        "cpu.weight.nice": ("rw", "0"),
    },
    "pids": {
        "pids.max": ("rw", "max"),
        "pids.current": ("ro", "0"),
        "pids.peak": ("ro", "0"),
        "pids.events": ("ro", ""),
    },
    "io": {"io.max": ("rw", ""), "io.stat": ("ro", ""), "io.weight": ("rw", "default 100")},
    "cpuset": {"cpuset.cpus": ("rw", ""), "cpuset.mems": ("rw", "")},
    "hugetlb": {},
    "rdma": {"rdma.max": ("rw", ""), "rdma.current": ("ro", "")},
    "misc": {"misc.max": ("rw", ""), "misc.current": ("ro", "")},
}
MEMORY_EVENTS = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill")


class FakeCgroup2FS(_FakeFS):
    """The unified hierarchy (cgroup v2), mounted at ``root``."""

    def __init__(
        self,
        root: Path = Path("/sys/fs/cgroup"),
        *,
        controllers: tuple[str, ...] = KERNEL_CONTROLLERS,
        enabled: tuple[str, ...] = (),
        namespace_root: bool = False,
    ) -> None:
        super().__init__(root)
        self.controllers = tuple(c for c in KERNEL_CONTROLLERS if c in controllers)
        self.namespace_root = namespace_root  # a cgroup namespace's root is not exempt
        top = Group(root, None, subtree=set(enabled))
        self.groups[root] = top

    def _is_exempt(self, group: Group) -> bool:
        return group.parent is None and not self.namespace_root

    def controllers_of(self, group: Group) -> list[str]:
        available = set(self.controllers) if group.parent is None else group.parent.subtree
        return [c for c in KERNEL_CONTROLLERS if c in available]

    def _files(self, group: Group) -> set[str]:
        if group.parent is None:
            return set(V2_ROOT_CORE)
        names = set(V2_CORE)
        for controller in self.controllers_of(group):
            names |= set(V2_CONTROLLER_FILES[controller])
        return names

    def _mode(self, group: Group, name: str) -> str:
        if name in V2_CORE:
            return V2_CORE[name]
        for files in V2_CONTROLLER_FILES.values():
            if name in files:
                return files[name][0]
        return "ro"

    def _populate(self, group: Group) -> None:
        group.values.update(
            {"cgroup.type": "domain", "cgroup.max.depth": "max", "cgroup.max.descendants": "max"}
        )
        group.values["cgroup.freeze"] = "0"
        for controller in self.controllers_of(group):
            self._add_controller(group, controller)

    def _add_controller(self, group: Group, controller: str) -> None:
        for name, (_, initial) in V2_CONTROLLER_FILES[controller].items():
            group.values.setdefault(name, initial)
        if controller == "memory":
            group.counters["memory.events"] = dict.fromkeys(MEMORY_EVENTS, 0)
            group.counters["memory.events.local"] = dict.fromkeys(MEMORY_EVENTS, 0)
        if controller == "pids":
            group.counters["pids.events"] = {"max": 0}

    def _remove_controller(self, group: Group, controller: str) -> None:
        for name in V2_CONTROLLER_FILES[controller]:
            group.values.pop(name, None)
            group.counters.pop(name, None)

    def _read(self, group: Group, name: str) -> str:
        if self._mode(group, name) == "wo":
            raise _error(errno.EINVAL, group.path / name)
        if name == "cgroup.procs":
            return "".join(f"{pid}\n" for pid in sorted(group.procs))
        if name == "cgroup.threads":
            return "".join(f"{pid}\n" for pid in sorted(group.procs))
        if name == "cgroup.controllers":
            return " ".join(self.controllers_of(group)) + "\n"
        if name == "cgroup.subtree_control":
            return " ".join(c for c in KERNEL_CONTROLLERS if c in group.subtree) + "\n"
        if name == "cgroup.events":
            return f"populated {int(self._populated(group))}\nfrozen 0\n"
        if name == "pids.current":
            return f"{len(self._all_procs(group))}\n"
        if name in group.counters:
            return "".join(f"{key} {count}\n" for key, count in group.counters[name].items())
        return group.values.get(name, "") + "\n"

    def _all_procs(self, group: Group) -> set[int]:
        found = set(group.procs)
        for child in group.children.values():
            found |= self._all_procs(child)
        return found

    def _populated(self, group: Group) -> bool:
        return bool(self._all_procs(group))

    def _write(self, group: Group, name: str, value: str, path: Path) -> None:
        mode = self._mode(group, name)
        if mode == "ro":
            raise _error(errno.EINVAL, path)
        if name == "cgroup.subtree_control":
            self._write_subtree(group, value, path)
        elif name == "cgroup.procs":
            pid = self._pid(value, path)
            if group.subtree and not self._is_exempt(group):
                raise _error(errno.EBUSY, path)  # no internal processes
            self._move(group, pid)
        elif name in ("memory.max", "memory.high", "memory.low", "memory.min", "memory.swap.max"):
            group.values[name] = _format_memory(parse_memory(value, path))
        elif name == "cpu.max":
            group.values[name] = self._cpu_max(group, value, path)
        elif name == "pids.max":
            text = value.strip()
            if text != "max" and not (text.isdigit() and int(text) <= PIDS_LIMIT):
                raise _error(errno.EINVAL, path)
            group.values[name] = text
        elif name == "cpu.weight":
            text = value.strip()
            if not (text.isdigit() and 1 <= int(text) <= 10000):
                raise _error(errno.EINVAL, path)
            group.values[name] = text
        elif name == "cgroup.kill":
            if value.strip() != "1":
                raise _error(errno.ERANGE, path)
            for pid in self._all_procs(group):
                self.exit(pid)
        else:
            group.values[name] = value.strip()

    def _write_subtree(self, group: Group, value: str, path: Path) -> None:
        enable: set[str] = set()
        disable: set[str] = set()
        for token in value.split():
            sign, name = token[:1], token[1:]
            if sign not in "+-" or not sign or name not in KERNEL_CONTROLLERS:
                raise _error(errno.EINVAL, path)
            (enable if sign == "+" else disable).add(name)
        if enable & disable:
            raise _error(errno.EINVAL, path)
        if enable - set(self.controllers_of(group)):
            raise _error(errno.ENOENT, path)
        new = enable - group.subtree
        if new and group.procs and not self._is_exempt(group):
            raise _error(errno.EBUSY, path)  # no internal processes
        gone = disable & group.subtree
        if any(gone & child.subtree for child in group.children.values()):
            raise _error(errno.EBUSY, path)  # a child still hands it down
        group.subtree |= new
        group.subtree -= gone
        for child in group.children.values():
            for controller in new:
                self._add_controller(child, controller)
            for controller in gone:
                self._remove_controller(child, controller)

    @staticmethod
    def _cpu_max(group: Group, value: str, path: Path) -> str:
        parts = value.split()
        if not 1 <= len(parts) <= 2:
            raise _error(errno.EINVAL, path)
        period = int(group.values.get("cpu.max", "max 100000").split()[1])
        if len(parts) == 2:
            if not parts[1].isdigit():
                raise _error(errno.EINVAL, path)
            period = int(parts[1])
        if not 1000 <= period <= 1_000_000:
            raise _error(errno.EINVAL, path)
        quota = parts[0]
        if quota != "max" and not (quota.isdigit() and int(quota) >= 1000):
            raise _error(errno.EINVAL, path)
        return f"{quota} {period}"

    # -- the OOM killer -------------------------------------------------------------------
    def oom_kill(self, path: Path) -> int:
        """The group went over memory.max and reclaim failed: one of its processes dies."""
        group = self.groups[path]
        victims = sorted(self._all_procs(group))
        current: Group | None = group
        while current is not None and current.parent is not None:
            events = current.counters["memory.events"]
            events["max"] += 1
            events["oom"] += 1
            events["oom_kill"] += 1
            current = current.parent
        local = group.counters["memory.events.local"]
        local["oom"] += 1
        local["oom_kill"] += 1
        if victims:
            self.exit(victims[-1])
            return victims[-1]
        return 0


# -- cgroup v1 ------------------------------------------------------------------------------

V1_COMMON = {
    "cgroup.procs": "rw",
    "tasks": "rw",
    "notify_on_release": "rw",
    "cgroup.clone_children": "rw",
}
V1_CONTROLLER_FILES: dict[str, dict[str, tuple[str, str]]] = {
    "memory": {
        "memory.limit_in_bytes": ("rw", str(UNLIMITED_V1)),
        "memory.memsw.limit_in_bytes": ("rw", str(UNLIMITED_V1)),
        "memory.soft_limit_in_bytes": ("rw", str(UNLIMITED_V1)),
        "memory.usage_in_bytes": ("ro", "0"),
        "memory.max_usage_in_bytes": ("rw", "0"),
        "memory.failcnt": ("rw", "0"),
        "memory.oom_control": ("rw", ""),
        "memory.stat": ("ro", ""),
    },
    "devices": {
        "devices.allow": ("wo", ""),
        "devices.deny": ("wo", ""),
        "devices.list": ("ro", "a *:* rwm"),
    },
    "cpu": {
        "cpu.cfs_period_us": ("rw", "100000"),
        "cpu.cfs_quota_us": ("rw", "-1"),
        "cpu.shares": ("rw", "1024"),
        "cpu.stat": ("ro", ""),
    },
    "pids": {
        "pids.max": ("rw", "max"),
        "pids.current": ("ro", "0"),
        "pids.events": ("ro", "max 0"),
    },
}


class FakeCgroup1FS(_FakeFS):
    """cgroup v1: a hierarchy per controller at ``<root>/<controller>``."""

    def __init__(
        self,
        root: Path = Path("/sys/fs/cgroup"),
        *,
        controllers: tuple[str, ...] = ("memory", "cpu", "pids"),
        swap_accounting: bool = True,
        unified: bool = False,
    ) -> None:
        super().__init__(root)
        self.swap_accounting = swap_accounting
        self.groups[root] = Group(root, None)  # the tmpfs holding the mount points
        self.hierarchies: dict[Path, str] = {}
        for controller in controllers:
            top = Group(root / controller, self.groups[root])
            self.groups[root].children[controller] = top
            self.groups[top.path] = top
            self.hierarchies[top.path] = controller
            self._populate(top)
        if unified:  # systemd's hybrid mode: a v2 hierarchy with no controllers beside them
            top = Group(root / "unified", self.groups[root])
            self.groups[root].children["unified"] = top
            self.groups[top.path] = top
            self.hierarchies[top.path] = ""

    def controller_of(self, group: Group) -> str:
        current: Group | None = group
        while current is not None:
            if current.path in self.hierarchies:
                return self.hierarchies[current.path]
            current = current.parent
        return ""

    def _files(self, group: Group) -> set[str]:
        if group.parent is None:
            return set()
        controller = self.controller_of(group)
        if not controller:
            return {"cgroup.controllers", "cgroup.procs"} if group.path.name == "unified" else set()
        names = set(V1_COMMON) | set(V1_CONTROLLER_FILES[controller])
        if controller == "memory" and not self.swap_accounting:
            names.discard("memory.memsw.limit_in_bytes")
        return names

    def _hierarchy(self, group: Group) -> str:
        return self.controller_of(group)

    def _populate(self, group: Group) -> None:
        controller = self.controller_of(group)
        if not controller:
            return
        for name, (_, initial) in V1_CONTROLLER_FILES[controller].items():
            group.values[name] = initial
        if controller == "devices" and group.parent is not None:
            # a new group starts with its parent's list (devcgroup_online copies it)
            group.values["devices.list"] = group.parent.values.get("devices.list", "a *:* rwm")
        if controller == "memory":
            group.counters["memory.oom_control"] = {
                "oom_kill_disable": 0,
                "under_oom": 0,
                "oom_kill": 0,
            }

    def _mode(self, name: str) -> str:
        if name in V1_COMMON:
            return V1_COMMON[name]
        for files in V1_CONTROLLER_FILES.values():
            if name in files:
                return files[name][0]
        return "ro"

    def _read(self, group: Group, name: str) -> str:
        if name in ("cgroup.procs", "tasks"):
            return "".join(f"{pid}\n" for pid in sorted(group.procs))
        if name == "cgroup.controllers":
            return "\n"
        if name == "pids.current":
            return f"{len(group.procs)}\n"
        if name in group.counters:
            return "".join(f"{key} {count}\n" for key, count in group.counters[name].items())
        return group.values.get(name, "") + "\n"

    def _write(self, group: Group, name: str, value: str, path: Path) -> None:
        if self._mode(name) == "ro":
            raise _error(errno.EINVAL, path)
        if name in ("cgroup.procs", "tasks"):
            self._move(group, self._pid(value, path))
        elif name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
            text = value.strip()
            limit = UNLIMITED_V1 if text == "-1" else parse_memory(text, path)
            limit = UNLIMITED_V1 if limit is None else limit
            memory = int(group.values["memory.limit_in_bytes"])
            memsw = int(group.values.get("memory.memsw.limit_in_bytes", UNLIMITED_V1))
            if name == "memory.limit_in_bytes" and limit > memsw:
                raise _error(errno.EINVAL, path)  # memory above memory+swap
            if name == "memory.memsw.limit_in_bytes" and limit < memory:
                raise _error(errno.EINVAL, path)  # memory+swap below memory
            group.values[name] = str(limit)
        elif name == "cpu.cfs_quota_us":
            text = value.strip()
            number = text.lstrip("-")
            if not number.isdigit() or (int(text) != -1 and int(text) < 1000):
                raise _error(errno.EINVAL, path)
            group.values[name] = text
        elif name == "cpu.cfs_period_us":
            text = value.strip()
            if not text.isdigit() or not 1000 <= int(text) <= 1_000_000:
                raise _error(errno.EINVAL, path)
            group.values[name] = text
        elif name == "pids.max":
            text = value.strip()
            if text != "max" and not (text.isdigit() and int(text) <= PIDS_LIMIT):
                raise _error(errno.EINVAL, path)
            group.values[name] = text
        elif name in ("devices.allow", "devices.deny"):
            self._write_devices(group, name, value.strip(), path)
        else:
            group.values[name] = value.strip()

    @staticmethod
    def _write_devices(group: Group, name: str, rule: str, path: Path) -> None:
        lines = [line for line in group.values["devices.list"].split("\n") if line]
        if rule == "a":
            if name == "devices.deny":
                group.values["devices.list"] = ""
            else:
                group.values["devices.list"] = "a *:* rwm"
            return
        parts = rule.split()
        if len(parts) != 3 or parts[0] not in ("a", "b", "c") or ":" not in parts[1]:
            raise _error(errno.EINVAL, path)
        if name == "devices.allow":
            parent = group.parent
            if parent is not None and "devices.list" in parent.values:
                granted = parent.values["devices.list"].split("\n")
                if "a *:* rwm" not in granted and rule not in granted:
                    raise _error(errno.EPERM, path)
            if "a *:* rwm" not in lines and rule not in lines:
                lines.append(rule)
        else:
            lines = [line for line in lines if line != rule]
        group.values["devices.list"] = "\n".join(lines)

    def rmdir(self, path: Path) -> None:
        if path in self.hierarchies:
            raise _error(errno.EBUSY, path)  # a mounted hierarchy's root
        super().rmdir(path)

    def oom_kill(self, path: Path) -> None:
        """The group hit memory.limit_in_bytes: the OOM killer counts (and kills) in it."""
        group = self.groups[path]
        group.counters["memory.oom_control"]["oom_kill"] += 1
        group.values["memory.failcnt"] = str(int(group.values["memory.failcnt"]) + 1)
        if group.procs:
            self.exit(max(group.procs))


def own_path_from(table: dict[str, str]) -> Callable[[str], str]:
    """A stand-in for /proc/self/cgroup: controller ("" for v2) → this process's group."""
    return lambda controller: table.get(controller, "/")
