"""A bundle's config.json (OCI runtime spec 1.x) as typed values.

Everything the spec allows is either implemented here or refused with ``Unsupported``, whose
message names the field (``linux.namespaces[user]: user namespaces are not supported``): a
runtime that silently ignores a field runs a container other than the one asked for.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inspect_tool.errors import DockscopeError, UsageError
from runtime_lab.spec import CAPABILITY_NUMBERS

MAX_CONFIG_BYTES = 4 << 20
SUPPORTED_VERSION = re.compile(r"1\.[0-9]+\.[0-9]+(-[0-9A-Za-z.+-]*)?")
NAMESPACE_TYPES = {"pid", "network", "mount", "ipc", "uts", "cgroup"}
REFUSED_NAMESPACES = {"user": "user namespaces", "time": "time namespaces"}
HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
RLIMITS = {
    "RLIMIT_AS": 9,
    "RLIMIT_CORE": 4,
    "RLIMIT_CPU": 0,
    "RLIMIT_DATA": 2,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_NPROC": 6,
    "RLIMIT_RSS": 5,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_STACK": 3,
}
# mount(2) flags by option name (runc's table); the value says whether the option sets
# (True) or clears (False) the flag
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (True, 1),
    "rw": (False, 1),
    "nosuid": (True, 2),
    "suid": (False, 2),
    "nodev": (True, 4),
    "dev": (False, 4),
    "noexec": (True, 8),
    "exec": (False, 8),
    "sync": (True, 16),
    "async": (False, 16),
    "remount": (True, 32),
    "mand": (True, 64),
    "nomand": (False, 64),
    "dirsync": (True, 128),
    "noatime": (True, 1024),
    "atime": (False, 1024),
    "nodiratime": (True, 2048),
    "diratime": (False, 2048),
    "bind": (True, 4096),
    "rbind": (True, 4096 | 16384),
    "relatime": (True, 1 << 21),
    "norelatime": (False, 1 << 21),
    "strictatime": (True, 1 << 24),
    "nostrictatime": (False, 1 << 24),
}
PROPAGATION_FLAGS = {
    "private": 1 << 18,
    "rprivate": (1 << 18) | 16384,
    "slave": 1 << 19,
    "rslave": (1 << 19) | 16384,
    "shared": 1 << 20,
    "rshared": (1 << 20) | 16384,
    "unbindable": 1 << 17,
    "runbindable": (1 << 17) | 16384,
}
MOUNT_TYPES = {"bind", "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "none", ""}
REFUSED_MOUNT_OPTIONS = {"tmpcopyup", "idmap", "ridmap", "rro", "rrw", "rnosuid", "rnoexec"}


class Unsupported(UsageError):
    """A field the spec allows that dockscope-runtime does not implement (exit 2)."""


class ConfigError(DockscopeError):
    """config.json is unreadable or not what the spec says (exit 3)."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """config.json's ``process.capabilities``: the five capability sets, as sorted numbers."""

    bounding: tuple[int, ...] = ()
    effective: tuple[int, ...] = ()
    permitted: tuple[int, ...] = ()
    inheritable: tuple[int, ...] = ()
    ambient: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Rlimit:
    """One entry of ``process.rlimits``: a resource limit by name and setrlimit(2) number, with
    its soft and hard values."""

    type: str
    number: int
    soft: int
    hard: int


@dataclass(frozen=True, slots=True)
class Process:
    """config.json's ``process``: the command PID 1 executes, with the user, environment,
    terminal, capabilities and limits it runs under."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    umask: int | None
    terminal: bool
    console_size: tuple[int, int] | None  # (height, width)
    capabilities: Capabilities
    rlimits: tuple[Rlimit, ...]
    no_new_privileges: bool
    oom_score_adj: int | None


@dataclass(frozen=True, slots=True)
class Mount:
    """One entry of config.json's ``mounts``, its options sorted into mount(2) flags, a
    propagation change and the data passed to the filesystem."""

    destination: str
    type: str
    source: str
    flags: int  # MS_* from the options
    propagation: int  # MS_PRIVATE etc, applied by a second mount call
    data: str  # the options mount(2) passes to the filesystem
    options: tuple[str, ...]

    @property
    def bind(self) -> bool:
        return bool(self.flags & 4096)


@dataclass(frozen=True, slots=True)
class Namespace:
    """One entry of ``linux.namespaces``: a namespace to create, or to join when it has a path."""

    type: str
    path: str | None


@dataclass(frozen=True, slots=True)
class Device:
    """One entry of ``linux.devices``: a device node to make in the container's /dev, with its
    numbers, mode and owner."""

    path: str
    type: str  # c, b, u, p
    major: int
    minor: int
    file_mode: int
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class DeviceRule:
    """One entry of ``linux.resources.devices``: a cgroup rule allowing or denying access to a
    type of device, or to one device by its numbers."""

    allow: bool
    type: str  # a, c, b
    major: int | None
    minor: int | None
    access: str


@dataclass(frozen=True, slots=True)
class Resources:
    """config.json's ``linux.resources``: the memory, CPU, pids and device limits set on the
    container's control group; None leaves one unset."""

    memory_limit: int | None = None
    memory_reservation: int | None = None
    memory_swap: int | None = None
    memory_swappiness: int | None = None
    disable_oom_killer: bool | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpus: str | None = None
    mems: str | None = None
    pids_limit: int | None = None
    devices: tuple[DeviceRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Hook:
    """One entry of a list in config.json's ``hooks``: a program the runtime runs at that point
    of the container's life, with an optional timeout in seconds."""

    path: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    timeout: int | None


@dataclass(frozen=True, slots=True)
class Config:
    """A bundle's whole config.json, read and checked: the top-level object, with ``root`` and
    the ``linux`` section's settings flattened into it."""

    oci_version: str
    root_path: str  # absolute
    root_readonly: bool
    process: Process
    hostname: str | None
    mounts: tuple[Mount, ...]
    hooks: dict[str, tuple[Hook, ...]]
    namespaces: tuple[Namespace, ...]
    cgroups_path: str | None
    resources: Resources
    devices: tuple[Device, ...]
    masked_paths: tuple[str, ...]
    readonly_paths: tuple[str, ...]
    seccomp: dict[str, Any] | None
    sysctl: dict[str, str]
    rootfs_propagation: int | None
    annotations: dict[str, str] = field(default_factory=dict)

    def namespace(self, kind: str) -> Namespace | None:
        return next((n for n in self.namespaces if n.type == kind), None)


class _Reader:
    """Typed access to one JSON object, with the field's path for every message."""

    def __init__(self, doc: Any, where: str, known: set[str]) -> None:
        if not isinstance(doc, dict):
            raise ConfigError(f"{where or 'config.json'}: not an object")
        self.doc = doc
        self.where = where
        for key in doc:
            if key not in known and not _empty(doc[key]):
                raise Unsupported(f"{self.path(key)}: not supported by dockscope-runtime")

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = self.doc.get(key)
        if value is None:
            return default
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise ConfigError(f"{self.path(key)}: expected {_kind_name(kind)}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        items = self.get(key, list, [])
        if not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{self.path(key)}: expected a list of strings")
        return tuple(items)

    def child(self, key: str, known: set[str]) -> _Reader:
        return _Reader(self.get(key, dict, {}), self.path(key), known)


def _empty(value: Any) -> bool:
    return value in (None, "", [], {}, False)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "a number", str: "a string", list: "a list", dict: "an object", bool: "a bool"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def load(bundle: str) -> Config:
    """The bundle's config.json, read and checked."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(exc.strerror or str(exc), subject=path) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError("larger than 4 MiB", subject=path)
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"not JSON: {exc}", subject=path) from None
    try:
        return parse(doc, bundle)
    except DockscopeError as exc:
        raise exc.with_subject(path) from None


def parse(doc: Any, bundle: str) -> Config:
    top = _Reader(
        doc,
        "",
        {"ociVersion", "process", "root", "hostname", "mounts", "hooks", "annotations", "linux"},
    )
    version = top.get("ociVersion", str)
    if version is None:
        raise ConfigError("ociVersion: missing")
    if not SUPPORTED_VERSION.fullmatch(version):
        raise Unsupported(f"ociVersion: {version!r} is not a 1.x version")
    if "process" not in doc:
        raise ConfigError("process: missing (needed by create)")
    root = top.child("root", {"path", "readonly"})
    root_path = root.get("path", str)
    if not root_path:
        raise ConfigError("root.path: missing")
    annotations = top.get("annotations", dict, {})
    if not all(isinstance(v, str) for v in annotations.values()):
        raise ConfigError("annotations: values must be strings")
    linux = top.child(
        "linux",
        {
            "namespaces",
            "uidMappings",
            "gidMappings",
            "resources",
            "cgroupsPath",
            "devices",
            "maskedPaths",
            "readonlyPaths",
            "seccomp",
            "sysctl",
            "rootfsPropagation",
            "mountLabel",
        },
    )
    if linux.get("mountLabel", str):
        raise Unsupported("linux.mountLabel: SELinux labels are not supported")
    for key in ("uidMappings", "gidMappings"):
        if linux.get(key, list):
            raise Unsupported(f"linux.{key}: user namespaces are not supported")
    propagation = linux.get("rootfsPropagation", str)
    if propagation and propagation not in PROPAGATION_FLAGS:
        raise ConfigError(f"linux.rootfsPropagation: unknown value {propagation!r}")
    sysctl = linux.get("sysctl", dict, {})
    if not all(isinstance(v, str) for v in sysctl.values()):
        raise ConfigError("linux.sysctl: values must be strings")
    seccomp = linux.get("seccomp", dict)
    if seccomp is not None:
        _check_seccomp(seccomp)
    return Config(
        oci_version=version,
        root_path=os.path.normpath(os.path.join(bundle, root_path)),
        root_readonly=bool(root.get("readonly", bool, False)),
        process=_process(top.child("process", _PROCESS_KEYS)),
        hostname=top.get("hostname", str),
        mounts=tuple(_mount(m, i) for i, m in enumerate(top.get("mounts", list, []))),
        hooks=_hooks(top.child("hooks", set(HOOK_KINDS))),
        namespaces=_namespaces(linux),
        cgroups_path=linux.get("cgroupsPath", str),
        resources=_resources(linux.child("resources", _RESOURCE_KEYS)),
        devices=tuple(_device(d, i) for i, d in enumerate(linux.get("devices", list, []))),
        masked_paths=linux.strings("maskedPaths"),
        readonly_paths=linux.strings("readonlyPaths"),
        seccomp=seccomp,
        sysctl=dict(sysctl),
        rootfs_propagation=PROPAGATION_FLAGS[propagation] if propagation else None,
        annotations=dict(annotations),
    )


_PROCESS_KEYS = {
    "terminal",
    "consoleSize",
    "user",
    "args",
    "env",
    "cwd",
    "capabilities",
    "rlimits",
    "noNewPrivileges",
    "oomScoreAdj",
    "apparmorProfile",
    "selinuxLabel",
}
_RESOURCE_KEYS = {"memory", "cpu", "pids", "devices"}


def _capability_set(reader: _Reader, key: str) -> tuple[int, ...]:
    numbers = []
    for name in reader.strings(key):
        if name not in CAPABILITY_NUMBERS:
            raise ConfigError(f"{reader.path(key)}: unknown capability {name!r}")
        numbers.append(CAPABILITY_NUMBERS[name])
    return tuple(sorted(set(numbers)))


def _process(p: _Reader) -> Process:
    if p.get("apparmorProfile", str):
        raise Unsupported("process.apparmorProfile: AppArmor is not supported")
    if p.get("selinuxLabel", str):
        raise Unsupported("process.selinuxLabel: SELinux labels are not supported")
    args = p.strings("args")
    if not args:
        raise ConfigError("process.args: must name the command to run")
    cwd = p.get("cwd", str)
    if not cwd or not cwd.startswith("/"):
        raise ConfigError("process.cwd: must be an absolute path")
    user = p.child("user", {"uid", "gid", "additionalGids", "umask", "username"})
    if user.get("username", str):
        raise Unsupported("process.user.username: only for Windows")
    caps = p.child("capabilities", {"bounding", "effective", "permitted", "inheritable", "ambient"})
    rlimits = []
    for i, item in enumerate(p.get("rlimits", list, [])):
        r = _Reader(item, f"process.rlimits[{i}]", {"type", "soft", "hard"})
        kind = r.get("type", str, "")
        if kind not in RLIMITS:
            raise Unsupported(f"process.rlimits[{i}].type: unknown limit {kind!r}")
        rlimits.append(Rlimit(kind, RLIMITS[kind], r.get("soft", int, 0), r.get("hard", int, 0)))
    size = p.child("consoleSize", {"height", "width"})
    console = (size.get("height", int, 0), size.get("width", int, 0)) if size.doc else None
    for key in ("uid", "gid"):
        value = user.get(key, int, 0)
        if not 0 <= value < 1 << 32:
            raise ConfigError(f"process.user.{key}: out of range")
    gids = user.get("additionalGids", list, [])
    if not all(isinstance(g, int) and not isinstance(g, bool) and 0 <= g < 1 << 32 for g in gids):
        raise ConfigError("process.user.additionalGids: expected a list of gids")
    return Process(
        args=args,
        env=p.strings("env"),
        cwd=cwd,
        uid=user.get("uid", int, 0),
        gid=user.get("gid", int, 0),
        additional_gids=tuple(user.get("additionalGids", list, [])),
        umask=user.get("umask", int),
        terminal=bool(p.get("terminal", bool, False)),
        console_size=console,
        capabilities=Capabilities(
            bounding=_capability_set(caps, "bounding"),
            effective=_capability_set(caps, "effective"),
            permitted=_capability_set(caps, "permitted"),
            inheritable=_capability_set(caps, "inheritable"),
            ambient=_capability_set(caps, "ambient"),
        ),
        rlimits=tuple(rlimits),
        no_new_privileges=bool(p.get("noNewPrivileges", bool, False)),
        oom_score_adj=p.get("oomScoreAdj", int),
    )


def _mount(item: Any, i: int) -> Mount:
    where = f"mounts[{i}]"
    m = _Reader(item, where, {"destination", "type", "source", "options"})
    destination = m.get("destination", str, "")
    if not destination.startswith("/"):
        raise ConfigError(f"{where}.destination: must be an absolute path")
    kind = m.get("type", str, "")
    if kind not in MOUNT_TYPES:
        raise Unsupported(f"{where}.type: {kind!r} mounts are not supported")
    flags, propagation, data = 0, 0, []
    options = m.strings("options")
    for option in options:
        if option in REFUSED_MOUNT_OPTIONS or option.startswith("idmap"):
            raise Unsupported(f"{where}.options: {option!r} is not supported")
        if option in MOUNT_FLAGS:
            sets, bit = MOUNT_FLAGS[option]
            flags = flags | bit if sets else flags & ~bit
        elif option in PROPAGATION_FLAGS:
            propagation = PROPAGATION_FLAGS[option]
        elif option.startswith("x-"):  # userspace hints, ignored by mount(8) too
            continue
        else:
            data.append(option)
    if kind == "bind":
        flags |= 4096
    if flags & 4096 and not m.get("source", str):
        raise ConfigError(f"{where}.source: a bind mount needs a source")
    if kind in ("", "none") and not flags & 4096:
        raise Unsupported(f"{where}.type: a mount without a type must be a bind mount")
    return Mount(
        destination=os.path.normpath(destination),
        type="bind" if flags & 4096 else kind,
        source=m.get("source", str, kind),
        flags=flags,
        propagation=propagation,
        data=",".join(data),
        options=options,
    )


def _hooks(h: _Reader) -> dict[str, tuple[Hook, ...]]:
    hooks: dict[str, tuple[Hook, ...]] = {}
    for kind in HOOK_KINDS:
        found = []
        for i, item in enumerate(h.get(kind, list, [])):
            r = _Reader(item, f"hooks.{kind}[{i}]", {"path", "args", "env", "timeout"})
            path = r.get("path", str, "")
            if not path.startswith("/"):
                raise ConfigError(f"hooks.{kind}[{i}].path: must be an absolute path")
            timeout = r.get("timeout", int)
            if timeout is not None and timeout <= 0:
                raise ConfigError(f"hooks.{kind}[{i}].timeout: must be positive")
            found.append(Hook(path, r.strings("args"), r.strings("env"), timeout))
        hooks[kind] = tuple(found)
    return hooks


def _namespaces(linux: _Reader) -> tuple[Namespace, ...]:
    found: list[Namespace] = []
    for i, item in enumerate(linux.get("namespaces", list, [])):
        r = _Reader(item, f"linux.namespaces[{i}]", {"type", "path"})
        kind = r.get("type", str, "")
        if kind in REFUSED_NAMESPACES:
            raise Unsupported(
                f"linux.namespaces[{kind}]: {REFUSED_NAMESPACES[kind]} are not supported"
            )
        if kind not in NAMESPACE_TYPES:
            raise ConfigError(f"linux.namespaces[{i}].type: unknown namespace {kind!r}")
        if any(n.type == kind for n in found):
            raise ConfigError(f"linux.namespaces[{kind}]: given twice")
        path = r.get("path", str) or None
        if kind == "mount" and path:
            raise Unsupported("linux.namespaces[mount].path: joining a mount namespace")
        found.append(Namespace(kind, path))
    if not any(n.type == "mount" for n in found):
        raise Unsupported("linux.namespaces: without a mount namespace (pivot_root needs one)")
    return tuple(found)


def _resources(r: _Reader) -> Resources:
    memory = r.child(
        "memory", {"limit", "reservation", "swap", "swappiness", "disableOOMKiller", "kernel"}
    )
    if memory.get("kernel", int):
        raise Unsupported("linux.resources.memory.kernel: kernel memory limits are not supported")
    cpu = r.child("cpu", {"shares", "quota", "period", "cpus", "mems"})
    pids = r.child("pids", {"limit"})
    rules = []
    for i, item in enumerate(r.get("devices", list, [])):
        d = _Reader(
            item, f"linux.resources.devices[{i}]", {"allow", "type", "major", "minor", "access"}
        )
        kind = d.get("type", str, "a")
        if kind not in ("a", "c", "b"):
            raise ConfigError(f"linux.resources.devices[{i}].type: {kind!r}")
        access = d.get("access", str, "rwm")
        if not access or set(access) - set("rwm"):
            raise ConfigError(f"linux.resources.devices[{i}].access: {access!r}")
        rules.append(
            DeviceRule(
                bool(d.get("allow", bool, False)),
                kind,
                d.get("major", int),
                d.get("minor", int),
                access,
            )
        )
    swappiness = memory.get("swappiness", int)
    return Resources(
        memory_limit=memory.get("limit", int),
        memory_reservation=memory.get("reservation", int),
        memory_swap=memory.get("swap", int),
        memory_swappiness=swappiness,
        disable_oom_killer=memory.get("disableOOMKiller", bool),
        cpu_shares=cpu.get("shares", int),
        cpu_quota=cpu.get("quota", int),
        cpu_period=cpu.get("period", int),
        cpus=cpu.get("cpus", str),
        mems=cpu.get("mems", str),
        pids_limit=pids.get("limit", int),
        devices=tuple(rules),
    )


def _device(item: Any, i: int) -> Device:
    where = f"linux.devices[{i}]"
    d = _Reader(item, where, {"path", "type", "major", "minor", "fileMode", "uid", "gid"})
    path = d.get("path", str, "")
    if not path.startswith("/dev/"):
        raise ConfigError(f"{where}.path: must be below /dev")
    kind = d.get("type", str, "")
    if kind not in ("c", "b", "u", "p"):
        raise ConfigError(f"{where}.type: {kind!r}")
    return Device(
        path=os.path.normpath(path),
        type=kind,
        major=d.get("major", int, 0),
        minor=d.get("minor", int, 0),
        file_mode=d.get("fileMode", int, 0o666),
        uid=d.get("uid", int, 0),
        gid=d.get("gid", int, 0),
    )


SECCOMP_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "syscalls", "flags"}
SECCOMP_OPERATORS = {
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
}
SECCOMP_ACTIONS = {
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
}


def _check_seccomp(doc: Mapping[str, Any]) -> None:
    s = _Reader(doc, "linux.seccomp", SECCOMP_KEYS)
    if s.strings("flags"):
        raise Unsupported("linux.seccomp.flags: seccomp flags are not supported")
    if s.get("defaultAction", str) not in SECCOMP_ACTIONS:
        raise Unsupported(f"linux.seccomp.defaultAction: {doc.get('defaultAction')!r}")
    for i, item in enumerate(s.get("syscalls", list, [])):
        r = _Reader(item, f"linux.seccomp.syscalls[{i}]", {"names", "action", "errnoRet", "args"})
        if r.get("action", str) not in SECCOMP_ACTIONS:
            raise Unsupported(f"linux.seccomp.syscalls[{i}].action: {item.get('action')!r}")
        for j, arg in enumerate(r.get("args", list, [])):
            if not isinstance(arg, dict) or arg.get("op") not in SECCOMP_OPERATORS:
                op = arg.get("op") if isinstance(arg, dict) else arg
                raise Unsupported(f"linux.seccomp.syscalls[{i}].args[{j}].op: {op!r}")
            _Reader(
                arg, f"linux.seccomp.syscalls[{i}].args[{j}]", {"index", "value", "valueTwo", "op"}
            )
