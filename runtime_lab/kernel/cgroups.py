"""Control groups, v1 and v2, behind one interface.

A driver is detected at start: cgroup v2 when ``/sys/fs/cgroup`` is the unified hierarchy,
v1 otherwise (a directory per controller). On v1 each container gets its own group below the
group dockscope itself runs in, so limits nest under whatever the host already imposes; on v2
the "no internal processes" rule forbids that, and groups live in ``<root>/dockscope/`` (see
``CgroupV2``). Every file written is recorded, so the trace can show the exact writes a
student could make by hand.

All file operations go through a small ``CgroupFS`` object: the real one touches the kernel's
cgroup files; tests of the v2 driver use a faithful fake of the unified hierarchy (this
machine runs v1), see ``tests/test_cgroups.py``.
"""

from __future__ import annotations

import errno
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # the protocol for the type checker only: typing is not imported on a run
    from typing import Any, Protocol

    from runtime_lab.kernel.devices import DeviceRule

    class CgroupFS(Protocol):
        def mkdir(self, path: Path) -> None: ...

        def rmdir(self, path: Path) -> None: ...

        def write(self, path: Path, value: str) -> None: ...

        def read(self, path: Path) -> str: ...

        def exists(self, path: Path) -> bool: ...

        def attach_device_program(self, path: Path, program: bytes, count: int) -> list[int]:
            """Load an eBPF device program and attach it to the group at ``path``; returns the
            IDs of the device programs attached there afterwards."""
            ...


CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
# freezer: dockscope pause; cpuacct: the CPU time dockscope stats reads (both only if present)
V1_CONTROLLERS = ("memory", "cpu", "pids", "devices", "freezer", "cpuacct")
V2_CONTROLLERS = ("memory", "cpu", "pids")


class CgroupError(OSError):
    pass


@dataclass(frozen=True, slots=True)
class Limits:
    """The resource limits of a container; None leaves the kernel's default."""

    memory: int | None = None  # bytes
    cpus: float | None = None  # CPUs, e.g. 0.5
    pids: int | None = None


@dataclass(frozen=True, slots=True)
class Write:
    """One value written to one cgroup file, as the trace shows it."""

    path: str
    value: str


class KernelCgroupFS:
    """The real cgroup files."""

    def mkdir(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)

    def rmdir(self, path: Path) -> None:
        # A group can be removed once its last process has gone; that takes a moment after
        # the process is reaped.
        for _ in range(50):
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                time.sleep(0.02)
        path.rmdir()

    def write(self, path: Path, value: str) -> None:
        with open(path, "w") as f:
            f.write(value)

    def read(self, path: Path) -> str:
        return path.read_text()

    def exists(self, path: Path) -> bool:
        return path.exists()

    def attach_device_program(self, path: Path, program: bytes, count: int) -> list[int]:
        from runtime_lab.kernel import linux

        group = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            loaded = linux.bpf_load_device_program(program, count)
            try:  # the attachment holds the program: its descriptor can go
                linux.bpf_attach_device_program(group, loaded)
            finally:
                os.close(loaded)
            return linux.bpf_attached_device_programs(group)
        finally:
            os.close(group)


@dataclass(slots=True)
class Cgroup:
    """One container's group (one directory per controller on v1, one directory on v2)."""

    driver: CgroupDriver
    name: str
    paths: dict[str, Path]  # controller (or "unified") → directory
    writes: list[Write] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)  # processes left at the end, killed

    def write(self, controller: str, filename: str, value: str) -> None:
        path = self.paths[controller] / filename
        try:
            self.driver.fs.write(path, value)
        except OSError as exc:  # say which file refused which value
            raise CgroupError(exc.errno, f"echo {value} > {path}: {exc.strerror or exc}") from None
        self.writes.append(Write(str(path), value))

    def read(self, controller: str, filename: str) -> str:
        return self.driver.fs.read(self.paths[controller] / filename)

    def apply(self, limits: Limits) -> None:
        self.driver.apply(self, limits)

    def restrict_devices(self, rules: Sequence[DeviceRule]) -> dict[str, Any]:
        """Only the devices ``rules`` allow may be opened or made; evidence for the trace."""
        return self.driver.restrict_devices(self, rules)

    def add(self, pid: int) -> None:
        for controller in self.paths:
            self.write(controller, "cgroup.procs", str(pid))

    def release(self, pid: int) -> None:
        """Move ``pid`` out of the group, into dockscope's own group (in each hierarchy)."""
        for controller in self.paths:
            home = self.driver.home(self, controller)
            try:
                self.driver.fs.write(home / "cgroup.procs", str(pid))
            except OSError as exc:
                raise CgroupError(
                    exc.errno, f"echo {pid} > {home / 'cgroup.procs'}: {exc.strerror or exc}"
                ) from None
            self.writes.append(Write(str(home / "cgroup.procs"), str(pid)))

    def oom_killed(self) -> bool:
        return self.driver.oom_kills(self) > 0

    def values(self) -> dict[str, str]:
        """The limit files and their current contents, as evidence for the trace."""
        return self.driver.values(self)

    def procs(self) -> list[int]:
        """The processes in the group (host PIDs), in any of its hierarchies."""
        found: set[int] = set()
        for path in self.paths.values():
            try:
                found.update(int(p) for p in self.driver.fs.read(path / "cgroup.procs").split())
            except (OSError, ValueError):
                continue
        return sorted(found)

    def remove(self) -> None:
        for path in self.paths.values():
            self.driver.fs.rmdir(path)


class CgroupDriver(ABC):
    version = 0

    def __init__(
        self,
        root: Path = CGROUP_ROOT,
        fs: CgroupFS | None = None,
        own_path: Callable[[str], str] | None = None,
    ) -> None:
        self.root = root
        self.fs: CgroupFS = fs or KernelCgroupFS()
        self._own_path = own_path or own_cgroup_path

    @abstractmethod
    def create(self, name: str) -> Cgroup:
        """Make the container's group (below this process's own group)."""

    @abstractmethod
    def apply(self, group: Cgroup, limits: Limits) -> None:
        """Write the limit files."""

    @abstractmethod
    def restrict_devices(self, group: Cgroup, rules: Sequence[DeviceRule]) -> dict[str, Any]:
        """The device allowlist: v1's devices files, v2's eBPF program."""

    @abstractmethod
    def home(self, group: Cgroup, controller: str) -> Path:
        """The group a process leaves the container's for: dockscope's own."""

    @abstractmethod
    def oom_kills(self, group: Cgroup) -> int:
        """How many processes of the group the memory limit killed."""

    @abstractmethod
    def values(self, group: Cgroup) -> dict[str, str]:
        """The limit and usage files with their current contents."""


def own_cgroup_paths(proc_self: str = "/proc/self/cgroup") -> dict[str, str]:
    """This process's group in each hierarchy, by controller ("" for the v2 unified one)."""
    groups: dict[str, str] = {}
    with open(proc_self) as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                groups.setdefault(controller, path)
    return groups


def own_cgroup_path(controller: str) -> str:
    """This process's group for a controller ("" for the v2 unified hierarchy)."""
    return own_cgroup_paths().get(controller, "/")


class CgroupV1(CgroupDriver):
    version = 1

    def create(self, name: str) -> Cgroup:
        paths: dict[str, Path] = {}
        for controller in V1_CONTROLLERS:
            base = self.root / controller
            if not self.fs.exists(base):
                continue
            parent = base / self._own_path(controller).lstrip("/") / "dockscope"
            path = parent / name
            try:
                self.fs.mkdir(path)
            except OSError:  # no half-made group: remove the directories already made
                for made in paths.values():
                    self.fs.rmdir(made)
                raise
            paths[controller] = path
        if not paths:
            raise CgroupError(errno.ENOENT, f"no cgroup v1 controllers under {self.root}")
        return Cgroup(self, name, paths)

    def home(self, group: Cgroup, controller: str) -> Path:
        return group.paths[controller].parent.parent  # …/<own path>/dockscope/<name>

    def apply(self, group: Cgroup, limits: Limits) -> None:
        if limits.memory is not None:
            group.write("memory", "memory.limit_in_bytes", str(limits.memory))
            swap = group.paths["memory"] / "memory.memsw.limit_in_bytes"
            if self.fs.exists(swap):  # no swap beyond the limit either
                group.write("memory", "memory.memsw.limit_in_bytes", str(limits.memory))
        if limits.cpus is not None:
            group.write("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US))
            group.write("cpu", "cpu.cfs_quota_us", str(int(limits.cpus * CPU_PERIOD_US)))
        if limits.pids is not None:
            group.write("pids", "pids.max", str(limits.pids))

    def restrict_devices(self, group: Cgroup, rules: Sequence[DeviceRule]) -> dict[str, Any]:
        from runtime_lab.kernel.devices import v1_writes

        if "devices" not in group.paths:
            raise CgroupError(
                errno.ENOENT,
                f"no devices controller under {self.root}: the container could open any "
                "device node it makes (mount the v1 devices hierarchy)",
            )
        made = len(group.writes)
        for filename, value in v1_writes(rules):
            group.write("devices", filename, value)
        return {
            "controller": "devices (cgroup v1)",
            "written": [{"file": w.path, "value": w.value} for w in group.writes[made:]],
            "devices.list": [
                line for line in group.read("devices", "devices.list").splitlines() if line
            ],
        }

    def oom_kills(self, group: Cgroup) -> int:
        if "memory" not in group.paths:
            return 0
        for line in group.read("memory", "memory.oom_control").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        # older kernels have no counter: a hit limit with the process killed by SIGKILL
        return int(group.read("memory", "memory.failcnt") or 0) and 1

    def values(self, group: Cgroup) -> dict[str, str]:
        found = {}
        for controller, filename in (
            ("memory", "memory.limit_in_bytes"),
            ("memory", "memory.max_usage_in_bytes"),
            ("cpu", "cpu.cfs_quota_us"),
            ("cpu", "cpu.cfs_period_us"),
            ("pids", "pids.max"),
            ("pids", "pids.current"),
            ("pids", "pids.peak"),
            ("pids", "pids.events"),
        ):
            if controller in group.paths:
                path = group.paths[controller] / filename
                if self.fs.exists(path):
                    found[str(path)] = self.fs.read(path).strip()
        return found


class CgroupV2(CgroupDriver):
    """The unified hierarchy: one directory per group, controllers handed down explicitly.

    A child can use a controller only if its parent lists it in ``cgroup.subtree_control``,
    and a group other than the root may enable controllers there only while it has no
    processes of its own ("no internal processes"). dockscope's own group usually has
    processes (dockscope, in a login session's scope), so containers cannot live below it as
    they do on v1: like docker's cgroupfs driver (``/sys/fs/cgroup/docker/<id>``) and runc,
    the groups are ``<root>/dockscope/<name>``, with the controllers enabled on the way down.
    """

    version = 2

    def create(self, name: str) -> Cgroup:
        parent = self.root / "dockscope"
        group = Cgroup(self, name, {"unified": parent / name})
        self._hand_down(self.root, group)
        self.fs.mkdir(parent)
        self._hand_down(parent, group)
        self.fs.mkdir(parent / name)
        return group

    def home(self, group: Cgroup, controller: str) -> Path:
        # dockscope's own group: a leaf (it holds dockscope), or the root
        return self.root / self._own_path("").lstrip("/")

    def _hand_down(self, directory: Path, group: Cgroup) -> None:
        """Enable memory, cpu and pids (those available) for the children of ``directory``."""
        available = self.fs.read(directory / "cgroup.controllers").split()
        enabled = self.fs.read(directory / "cgroup.subtree_control").split()
        missing = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
        if not missing:
            return
        path = directory / "cgroup.subtree_control"
        value = " ".join(f"+{c}" for c in missing)
        try:
            self.fs.write(path, value)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            raise CgroupError(
                errno.EBUSY,
                f"cannot enable {' '.join(missing)} in {path}: the group has processes of its "
                "own, and cgroup v2 hands controllers down only from a group without any "
                "(the 'no internal processes' rule; in a container, move its processes into "
                "a child group first)",
            ) from None
        group.writes.append(Write(str(path), value))

    def _require(self, group: Cgroup, controller: str) -> None:
        path = group.paths["unified"]
        available = self.fs.read(path / "cgroup.controllers").split()
        if controller not in available:
            raise CgroupError(
                errno.ENOENT,
                f"the {controller} controller is not available in {path} "
                f"(cgroup.controllers: {' '.join(available) or 'none'})",
            )

    def apply(self, group: Cgroup, limits: Limits) -> None:
        if limits.memory is not None:
            self._require(group, "memory")
            group.write("unified", "memory.max", str(limits.memory))
            if self.fs.exists(group.paths["unified"] / "memory.swap.max"):
                group.write("unified", "memory.swap.max", "0")  # no swap beyond the limit
        if limits.cpus is not None:
            self._require(group, "cpu")
            group.write("unified", "cpu.max", f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        if limits.pids is not None:
            self._require(group, "pids")
            group.write("unified", "pids.max", str(limits.pids))

    def restrict_devices(self, group: Cgroup, rules: Sequence[DeviceRule]) -> dict[str, Any]:
        from runtime_lab.kernel.devices import device_program

        program, count = device_program(rules)
        path = group.paths["unified"]
        try:
            attached = self.fs.attach_device_program(path, program, count)
        except OSError as exc:
            raise CgroupError(
                exc.errno, f"cannot attach the device program to {path}: {exc.strerror or exc}"
            ) from None
        return {
            "controller": "eBPF BPF_PROG_TYPE_CGROUP_DEVICE (cgroup v2)",
            "program": {"instructions": count, "attach_type": "BPF_CGROUP_DEVICE"},
            "attached_program_ids": attached,
        }

    def oom_kills(self, group: Cgroup) -> int:
        for line in group.read("unified", "memory.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def values(self, group: Cgroup) -> dict[str, str]:
        found = {}
        for filename in (
            "memory.max",
            "memory.peak",
            "cpu.max",
            "pids.max",
            "pids.current",
            "pids.peak",
            "pids.events",
        ):
            path = group.paths["unified"] / filename
            if self.fs.exists(path):
                found[str(path)] = self.fs.read(path).strip()
        return found


def detect(root: Path = CGROUP_ROOT, fs: CgroupFS | None = None) -> CgroupDriver:
    """v2 when ``root`` is the unified hierarchy (it has cgroup.controllers), v1 otherwise."""
    fs = fs or KernelCgroupFS()
    if fs.exists(root / "cgroup.controllers") and not fs.exists(root / "memory"):
        return CgroupV2(root, fs)
    return CgroupV1(root, fs)


def dockscope_groups(root: Path = CGROUP_ROOT) -> list[Path]:
    """Every container group dockscope made, on any hierarchy (v1 controllers or v2), for
    any state root: a group's name is its container's short ID."""
    found = []
    for parent in root.glob("**/dockscope"):
        if parent.is_dir():
            found += [p for p in parent.iterdir() if p.is_dir()]
    return found


def parse_memory(text: str) -> int:
    """``64m`` → 67108864, docker's units (b, k, m, g; powers of 1024)."""
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    value = text.strip().lower()
    multiplier = 1
    if value and value[-1] in units:
        multiplier = units[value[-1]]
        value = value[:-1]
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"not a memory size: {text!r} (examples: 64m, 1g)") from None
    if number <= 0:
        raise ValueError(f"memory size must be positive: {text!r}")
    return int(number * multiplier)


def process_exists(pid: int) -> bool:
    """Whether ``pid`` is a live process: a zombie (dead, waiting for a parent or for an init
    that reaps slowly to collect it) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc to ask: kill's answer stands
    return state not in (b"Z", b"X")
