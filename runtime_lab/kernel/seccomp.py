"""seccomp: docker's profile format, resolved for this container and loaded as a kernel filter.

A seccomp filter is a small BPF program the kernel runs at every system call the process (and
every process it starts) makes: it looks at the call's number, the architecture and the
arguments, and answers allow, fail with an errno, log, trap or kill. Once loaded it can never
be removed, only stacked with more filters.

Docker's default policy (``profiles/default.json``, dockscope's own statement of it in docker's
format, its calls grouped by purpose with a comment each) is an allowlist: every call not named
fails with EPERM. Some rules depend on the container, and are resolved here as moby's
``setupSeccomp`` resolves them: ``includes``/``excludes`` on the capabilities the container
keeps (``mount`` is allowed only with CAP_SYS_ADMIN), on the architecture (``arch_prctl`` on
amd64) and on the kernel's version (``minKernel``); ``archMap`` names the architectures the
filter must cover (x86_64 with x86 and x32). The rules then go to libseccomp, loaded with
ctypes from the system (``libseccomp.so.2``), which compiles them into the BPF program: as runc
does, with the rules runc applies (a rule whose action is the default one is skipped, a name
libseccomp does not know is skipped, two conditions on the same argument make separate rules).

``compile_filter`` runs in dockscope before the container's processes are forked (the library
is read from the host's /usr/lib, which PID 1 no longer sees after pivot_root); PID 1 calls
``Filter.load`` as its last step before execve. libseccomp turns its rules into the BPF program
only when asked (``seccomp_load``, ``seccomp_export_bpf``), and that takes tens of
milliseconds: ``prepare`` with a ``cache`` directory keeps each exported program in a file
named by the digest of everything it is made from (the resolved rules, libseccomp's version,
the machine), so a container that gets the same filter as an earlier one loads those bytes
with one ``seccomp(2)`` call, the way libseccomp itself loads them.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from inspect_tool.errors import DockscopeError, UsageError
from inspect_tool.model.digest import hex_digest
from runtime_lab.kernel import linux

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeGuard

DEFAULT = "default"  # docker's default policy, shipped in runtime_lab/kernel/profiles/
UNCONFINED = "unconfined"  # no filter at all
DEFAULT_PROFILE_FILE = "default.json"
MAX_PROFILE_BYTES = 1 << 20

# libseccomp's action values (seccomp.h); ERRNO and TRACE carry a 16-bit value
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
# machine (uname -m) → the name moby's profile uses in includes/excludes "arches" (its
# goToNative: Go's GOARCH, but "x86" for 386), and the SCMP_ARCH_* its archMap is keyed by
MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "i686": ("x86", "SCMP_ARCH_X86"),
    "i386": ("x86", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "ppc64": ("ppc64", "SCMP_ARCH_PPC64"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
}
ARCHITECTURES = {
    f"SCMP_ARCH_{name}"
    for name in [
        "X86",
        "X86_64",
        "X32",
        "ARM",
        "AARCH64",
        "MIPS",
        "MIPS64",
        "MIPS64N32",
        "MIPSEL",
        "MIPSEL64",
        "MIPSEL64N32",
        "PPC",
        "PPC64",
        "PPC64LE",
        "S390",
        "S390X",
        "PARISC",
        "PARISC64",
        "RISCV64",
    ]
}
_FLTATR_CTL_NNP = 3  # scmp_filter_attr: libseccomp sets no_new_privs itself unless told not to
_FLTATR_CTL_LOG = 6  # SECCOMP_FILTER_FLAG_LOG: the kernel logs every action but allow
_NR_SCMP_ERROR = -1


class SeccompError(DockscopeError):
    """libseccomp is missing, or refused the filter (exit 3)."""


class ProfileError(UsageError):
    """A seccomp profile given with --security-opt is not one dockscope can apply (exit 2)."""


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument condition of a rule (docker's ``args`` entry): ``op`` compares argument
    ``index`` with ``value`` (and ``value_two`` for a masked compare)."""

    index: int
    value: int
    value_two: int
    op: str


@dataclass(frozen=True, slots=True)
class Rule:
    """Syscalls that get one action, resolved from a profile's ``syscalls`` entry."""

    names: tuple[str, ...]
    action: str
    errno_ret: int | None = None
    args: tuple[Arg, ...] = ()


@dataclass(frozen=True, slots=True)
class Resolved:
    """A profile after its conditions were applied for one container."""

    default_action: str
    default_errno: int | None
    architectures: tuple[str, ...]  # SCMP_ARCH_*; empty: the native one only
    rules: tuple[Rule, ...]
    left_out: int = 0  # rules whose includes/excludes did not hold here


@dataclass(slots=True)
class Options:
    """``--security-opt`` as recorded in the container's config."""

    seccomp: str = DEFAULT  # "default", "unconfined", or the path given
    profile: dict[str, Any] | None = None  # a custom profile's document, read at create


def default_profile_text() -> str:
    # package data beside this module (importlib.resources would cost 20 ms of imports at
    # every start)
    path = os.path.join(os.path.dirname(__file__), "profiles", DEFAULT_PROFILE_FILE)
    with open(path, encoding="utf-8") as f:
        return f.read()


def parse_profile(text: str, source: str) -> dict[str, Any]:
    """A profile's JSON document, checked field by field (docker's format)."""
    if len(text) > MAX_PROFILE_BYTES:
        raise ProfileError("the seccomp profile is larger than 1 MiB", subject=source)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProfileError(f"not a JSON seccomp profile: {exc}", subject=source) from None
    if not isinstance(doc, dict):
        raise ProfileError("a seccomp profile is a JSON object", subject=source)
    _check_profile(doc, source)
    return doc


def _fail(source: str, message: str) -> ProfileError:
    return ProfileError(f"seccomp profile: {message}", subject=source)


def _check_action(value: Any, where: str, source: str) -> None:
    if value == "SCMP_ACT_NOTIFY":
        raise _fail(source, f"{where}: SCMP_ACT_NOTIFY needs a listener, which dockscope lacks")
    if value not in ACTIONS:
        raise _fail(source, f"{where}: unknown action {value!r}")


def _is_number(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no number


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, str) and item and "\x00" not in item for item in value
    )


def _check_errno(value: Any, where: str, source: str) -> None:
    if value is not None and (not _is_number(value) or not 0 <= value <= 0xFFFF):
        raise _fail(source, f"{where}: errnoRet must be a number from 0 to 65535")


def _check_arches(value: Any, where: str, source: str) -> None:
    if not _is_strings(value):
        raise _fail(source, f"{where} must list architectures")
    for arch in value:
        if arch not in ARCHITECTURES:
            raise _fail(source, f"{where}: unknown architecture {arch!r}")


def _check_profile(doc: dict[str, Any], source: str) -> None:
    default = doc.get("defaultAction")
    if default is None and not doc.get("syscalls"):
        return  # docker: no default action and no syscalls is no filter
    _check_action(default, "defaultAction", source)
    _check_errno(doc.get("defaultErrnoRet"), "defaultErrnoRet", source)
    if doc.get("architectures") and doc.get("archMap"):
        raise _fail(source, "'architectures' and 'archMap' both given: use one")
    _check_arches(doc.get("architectures") or [], "architectures", source)
    arch_map = doc.get("archMap") or []
    if not isinstance(arch_map, list):
        raise _fail(source, "'archMap' must be a list")
    for entry in arch_map:
        if not isinstance(entry, dict):
            raise _fail(source, "archMap entries must be objects")
        _check_arches([entry.get("architecture")], "archMap architecture", source)
        _check_arches(entry.get("subArchitectures") or [], "archMap subArchitectures", source)
    calls = doc.get("syscalls") or []
    if not isinstance(calls, list):
        raise _fail(source, "'syscalls' must be a list")
    for number, call in enumerate(calls):
        where = f"syscalls[{number}]"
        if not isinstance(call, dict):
            raise _fail(source, f"{where} is not an object")
        names = call.get("names")
        if call.get("name") and names:
            raise _fail(source, f"{where}: 'name' and 'names' both given: use one")
        names = names or ([call["name"]] if call.get("name") else [])
        if not names or not _is_strings(names):
            raise _fail(source, f"{where}: 'names' must list system call names")
        _check_action(call.get("action"), where, source)
        _check_errno(call.get("errnoRet"), where, source)
        args = call.get("args") or []
        if not isinstance(args, list):
            raise _fail(source, f"{where}: 'args' must be a list")
        for arg in args:
            if not isinstance(arg, dict):
                raise _fail(source, f"{where}: an argument is not an object")
            index = arg.get("index")
            if not _is_number(index) or not 0 <= index <= 5:
                raise _fail(source, f"{where}: argument index must be 0 to 5")
            for key in ("value", "valueTwo"):
                value = arg.get(key, 0)
                if not _is_number(value) or not 0 <= value < 1 << 64:
                    raise _fail(source, f"{where}: argument {key} must be a 64-bit unsigned number")
            if arg.get("op") not in OPERATORS:
                raise _fail(source, f"{where}: unknown operator {arg.get('op')!r}")
        for key in ("includes", "excludes"):
            condition = call.get(key) or {}
            if not isinstance(condition, dict):
                raise _fail(source, f"{where}: '{key}' must be an object")
            for field_name in ("caps", "arches"):
                if not _is_strings(condition.get(field_name) or []):
                    raise _fail(source, f"{where}: {key}.{field_name} must be a list of names")
            kernel = condition.get("minKernel")
            if kernel is not None and (
                not isinstance(kernel, str) or _kernel_tuple(kernel) is None
            ):
                raise _fail(source, f"{where}: minKernel {kernel!r} is not a version")


def _kernel_tuple(text: str) -> tuple[int, int] | None:
    parts = text.split("-")[0].split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def native_machine() -> str:
    return os.uname().machine


def resolve(
    doc: Mapping[str, Any],
    *,
    capabilities: Iterable[str],
    machine: str | None = None,
    kernel: str | None = None,
) -> Resolved | None:
    """moby's ``setupSeccomp``: the rules that hold for a container with these (bounding)
    capabilities on this architecture and kernel. None: the profile asks for no filter."""
    if doc.get("defaultAction") is None and not doc.get("syscalls"):
        return None
    caps = set(capabilities)
    arch, scmp_arch = MACHINES.get(machine or native_machine(), ("", ""))
    running = _kernel_tuple(kernel or os.uname().release) or (0, 0)
    architectures = list(doc.get("architectures") or [])
    for entry in doc.get("archMap") or []:
        if scmp_arch and entry["architecture"] == scmp_arch:
            architectures += [entry["architecture"], *(entry.get("subArchitectures") or [])]
            break
    rules: list[Rule] = []
    left_out = 0
    for call in doc.get("syscalls") or []:
        if not _applies(call, caps, arch, running):
            left_out += 1
            continue
        names = call.get("names") or [call["name"]]
        args = tuple(
            Arg(a["index"], a.get("value", 0), a.get("valueTwo", 0), a["op"])
            for a in call.get("args") or []
        )
        rules.append(Rule(tuple(names), call["action"], call.get("errnoRet"), args))
    return Resolved(
        default_action=doc["defaultAction"],
        default_errno=doc.get("defaultErrnoRet"),
        architectures=tuple(dict.fromkeys(architectures)),
        rules=tuple(rules),
        left_out=left_out,
    )


def _applies(call: Mapping[str, Any], caps: set[str], arch: str, kernel: tuple[int, int]) -> bool:
    excludes = call.get("excludes") or {}
    if arch in (excludes.get("arches") or []):
        return False
    if any(c in caps for c in excludes.get("caps") or []):
        return False
    minimum = excludes.get("minKernel")
    if minimum is not None and kernel >= (_kernel_tuple(str(minimum)) or (0, 0)):
        return False
    includes = call.get("includes") or {}
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if not all(c in caps for c in includes.get("caps") or []):
        return False
    minimum = includes.get("minKernel")
    return minimum is None or kernel >= (_kernel_tuple(str(minimum)) or (0, 0))


def action_value(action: str, errno_ret: int | None) -> int:
    """libseccomp's value of an action; ERRNO and TRACE without errnoRet return EPERM, as
    runc makes them."""
    value = ACTIONS[action]
    if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        value |= (errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF
    return value


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """libseccomp.so.2 (Debian's libseccomp2), loaded once."""
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError as exc:
            raise SeccompError(
                f"cannot load libseccomp.so.2 (install libseccomp2, or run with "
                f"--security-opt seccomp=unconfined): {exc}"
            ) from None
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        ]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_version.restype = ctypes.c_void_p
        _lib = lib
    return _lib


def library_version() -> str:
    lib = library()
    numbers = ctypes.cast(lib.seccomp_version(), ctypes.POINTER(ctypes.c_uint * 3)).contents
    return ".".join(str(n) for n in numbers)


@dataclass(slots=True)
class Filter:
    """A compiled filter (libseccomp's context), ready for ``load`` in PID 1."""

    context: int
    name: str  # "default" or the profile's path
    default_action: str
    default_errno: int | None
    architectures: list[str]
    allowed: list[str]  # names allowed without conditions
    conditional: list[str]  # names allowed only for some arguments
    denied: list[str]  # names given an action other than allow
    unknown: list[str]  # names libseccomp does not know (skipped, as runc does)
    rules_left_out: int
    instructions: int | None  # the BPF program's length (measured for traced runs only)
    log: bool
    # the exported program (context 0): loaded by seccomp(2) itself, libseccomp not called
    program: bytes | None = None
    cached: bool | None = None  # None: compiled now without a cache

    def summary(self) -> dict[str, Any]:
        return {
            "profile": self.name,
            "default_action": _describe(self.default_action, self.default_errno),
            "architectures": self.architectures,
            "syscalls_allowed": len(self.allowed),
            "syscalls_allowed_by_argument": sorted(self.conditional),
            "syscalls_with_other_actions": sorted(self.denied),
            "rules_left_out_by_conditions": self.rules_left_out,
            "names_unknown_to_libseccomp": sorted(self.unknown),
            "bpf_instructions": self.instructions,
            "log_flag": self.log,
            "libseccomp": library_version(),
            **({} if self.cached is None else {"program_from_cache": self.cached}),
        }

    def load(self) -> dict[str, Any]:
        """seccomp(SECCOMP_SET_MODE_FILTER): from here on the kernel checks every call."""
        evidence = self.summary()  # before: libseccomp's calls are not the container's
        if self.program is not None:
            linux.seccomp_set_filter(self.program, log=self.log)
        else:
            rc = library().seccomp_load(self.context)
            if rc < 0:
                raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")
        evidence["status"] = _status_lines()
        if self.log:  # dockscope reads the kernel's records of this session at the end
            evidence["audit_session"] = audit_session()
        return evidence

    def release(self) -> None:
        if self.context:
            library().seccomp_release(self.context)
            self.context = 0


def _describe(action: str, errno_ret: int | None) -> str:
    if action == "SCMP_ACT_ERRNO":
        code = errno.EPERM if errno_ret is None else errno_ret
        return f"SCMP_ACT_ERRNO({errno.errorcode.get(code, code)})"
    return action


def _status_lines() -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Seccomp", "Seccomp_filters", "NoNewPrivs"):
                    found[key] = value.strip()
    except OSError:
        pass
    return found


def compile_filter(
    resolved: Resolved, name: str, *, log: bool = False, measure: bool = False
) -> Filter:
    """libseccomp's context for a resolved profile: seccomp_init with the default action,
    seccomp_arch_add for each architecture, seccomp_rule_add_array for each name."""
    lib = library()
    default = action_value(resolved.default_action, resolved.default_errno)
    context = lib.seccomp_init(default)
    if not context:
        raise SeccompError("seccomp_init failed")
    result = Filter(
        context=context,
        name=name,
        default_action=resolved.default_action,
        default_errno=resolved.default_errno,
        architectures=[],
        allowed=[],
        conditional=[],
        denied=[],
        unknown=[],
        rules_left_out=resolved.left_out,
        instructions=None,
        log=log,
    )
    try:
        _build(lib, context, resolved, default, result, measure)
    except BaseException:
        result.release()
        raise
    return result


def _build(
    lib: ctypes.CDLL, context: int, resolved: Resolved, default: int, out: Filter, measure: bool
) -> None:
    def check(rc: int, what: str) -> None:
        if rc < 0:
            raise SeccompError(f"{what}: {os.strerror(-rc)}", subject=out.name)

    check(lib.seccomp_attr_set(context, _FLTATR_CTL_NNP, 0), "seccomp_attr_set(CTL_NNP)")
    if out.log:
        check(lib.seccomp_attr_set(context, _FLTATR_CTL_LOG, 1), "seccomp_attr_set(CTL_LOG)")
    for arch in resolved.architectures:
        token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
        if token == 0:
            continue  # an architecture this libseccomp does not know
        rc = lib.seccomp_arch_add(context, token)
        if rc < 0 and -rc != errno.EEXIST:
            check(rc, f"seccomp_arch_add({arch})")
        out.architectures.append(arch)
    for rule in resolved.rules:
        value = action_value(rule.action, rule.errno_ret)
        if value == default:
            continue  # runc skips a rule that does what the default does (libseccomp refuses it)
        for name in rule.names:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number == _NR_SCMP_ERROR:
                if name not in out.unknown:
                    out.unknown.append(name)
                continue
            for group in _argument_groups(rule.args):
                array = (_ArgCmp * max(len(group), 1))(
                    *(_ArgCmp(a.index, OPERATORS[a.op], a.value, a.value_two) for a in group)
                )
                rc = lib.seccomp_rule_add_array(context, value, number, len(group), array)
                check(rc, f"seccomp_rule_add({name})")
            if rule.action != "SCMP_ACT_ALLOW":
                out.denied.append(name)
            elif rule.args:
                out.conditional.append(name)
            else:
                out.allowed.append(name)
    out.allowed = sorted(set(out.allowed))
    out.conditional = sorted(set(out.conditional) - set(out.allowed))
    out.denied = sorted(set(out.denied))
    if measure:
        out.instructions = _program_length(lib, context)


def _argument_groups(args: tuple[Arg, ...]) -> list[tuple[Arg, ...]]:
    """One rule with every condition (all must hold), or, when two conditions name the same
    argument (which libseccomp cannot combine), one rule per condition, as runc does."""
    indexes = [a.index for a in args]
    if len(set(indexes)) != len(indexes):
        return [(a,) for a in args]
    return [args]


def _program_length(lib: ctypes.CDLL, context: int) -> int:
    return len(_export(lib, context)) // 8  # struct sock_filter is 8 bytes


def _export(lib: ctypes.CDLL, context: int) -> bytes:
    """The BPF program libseccomp makes of a context (empty if it cannot)."""
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        if lib.seccomp_export_bpf(context, fd) < 0:
            return b""
        size = os.fstat(fd).st_size
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


CACHE_FORMAT = 1


def cache_key(resolved: Resolved) -> str:
    """The digest of everything the program is made from: the resolved rules (frozen values:
    their repr is exact), libseccomp's version, this machine's architecture, the format."""
    made_of = "\n".join((str(CACHE_FORMAT), library_version(), os.uname().machine, repr(resolved)))
    return hex_digest("sha256", made_of.encode())


def _read_own(cache: Path, path: Path) -> bytes:
    """A cached program's file, trusted only if it and its directory are this user's and
    nobody else may write them (the program is the container's protection)."""
    import stat

    def private(st: os.stat_result) -> bool:
        return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)

    directory = os.lstat(cache)
    if not stat.S_ISDIR(directory.st_mode) or not private(directory):
        raise ValueError(f"{cache}: not a private directory of this user")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not private(os.fstat(fd)):
            raise ValueError(f"{path}: not a private file of this user")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def cached_filter(resolved: Resolved, name: str, cache: Path, *, log: bool) -> Filter:
    """The filter with its program exported: read from ``cache`` when an earlier container
    had the same one (the file records its key, checked), else compiled now and written
    there atomically."""
    key = cache_key(resolved)
    path = cache / f"{key}.json"
    try:
        data = json.loads(_read_own(cache, path))
        if data["key"] == key and data["format"] == CACHE_FORMAT:
            program = bytes.fromhex(data["program"])
            if program and len(program) % 8 == 0:
                return Filter(
                    context=0,
                    name=name,
                    default_action=resolved.default_action,
                    default_errno=resolved.default_errno,
                    architectures=list(data["architectures"]),
                    allowed=list(data["allowed"]),
                    conditional=list(data["conditional"]),
                    denied=list(data["denied"]),
                    unknown=list(data["unknown"]),
                    rules_left_out=resolved.left_out,
                    instructions=len(program) // 8,
                    log=log,
                    program=program,
                    cached=True,
                )
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or unreadable: made again
    compiled = compile_filter(resolved, name, log=log)
    try:
        program = _export(library(), compiled.context)
    finally:
        compiled.release()
    if not program:
        raise SeccompError("seccomp_export_bpf failed", subject=name)
    compiled.program, compiled.cached = program, False
    compiled.instructions = len(program) // 8
    record = {
        "format": CACHE_FORMAT,
        "key": key,
        "architectures": compiled.architectures,
        "allowed": compiled.allowed,
        "conditional": compiled.conditional,
        "denied": compiled.denied,
        "unknown": compiled.unknown,
        "program": program.hex(),
    }
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = cache / f".{key}.{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written: the next container compiles again
    return compiled


def prepare(
    options: Options,
    capabilities: Iterable[str],
    *,
    log: bool = False,
    cache: Path | None = None,
) -> Filter | None:
    """The filter a container gets (None: unconfined), compiled in dockscope before fork;
    with ``cache``, its program exported (and kept there for the next container)."""
    if options.seccomp == UNCONFINED:
        return None
    if options.seccomp == DEFAULT or options.profile is None:
        doc = parse_profile(default_profile_text(), DEFAULT_PROFILE_FILE)
        name = DEFAULT
    else:
        doc = options.profile
        name = options.seccomp
    resolved = resolve(doc, capabilities=capabilities)
    if resolved is None:
        return None
    if cache is not None:
        return cached_filter(resolved, name, cache, log=log)
    return compile_filter(resolved, name, log=log, measure=log)


def read_profile(path: str) -> dict[str, Any]:
    """A profile file given with ``--security-opt seccomp=PATH``, read and checked."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        message = f"cannot read the seccomp profile: {exc.strerror}"
        raise ProfileError(message, subject=path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError("the seccomp profile is not UTF-8 text", subject=path) from None
    return parse_profile(text, path)


def security_options(values: Iterable[str]) -> Options:
    """docker's ``--security-opt``: ``seccomp=unconfined``, ``seccomp=PROFILE.json`` and
    ``no-new-privileges[=true]`` (dockscope always sets no_new_privs; ``=false`` is refused).
    docker's older ``KEY:VALUE`` spelling is read too."""
    options = Options()
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep:
            key, sep, rest = value.partition(":")
        if key == "seccomp" and rest:
            if rest == UNCONFINED:
                options = Options(UNCONFINED, None)
            else:
                options = Options(rest, read_profile(rest))
        elif key == "no-new-privileges":
            if sep and rest not in ("true", "false"):
                raise UsageError(f"--security-opt {value}: use no-new-privileges[=true]")
            if rest == "false":
                raise UsageError(
                    "--security-opt no-new-privileges=false: dockscope always sets "
                    "no_new_privs (PR_SET_NO_NEW_PRIVS) for the container"
                )
        elif key in ("apparmor", "label", "systempaths", "mask", "unmask"):
            raise UsageError(f"--security-opt {value}: not supported by dockscope")
        else:
            raise UsageError(
                f"--security-opt {value}: use seccomp=unconfined, seccomp=PROFILE.json or "
                "no-new-privileges"
            )
    return options


# -- what the filter denied: the kernel's audit records -------------------------------------------
# With SECCOMP_FILTER_FLAG_LOG the kernel writes an audit record (type 1326, AUDIT_SECCOMP) for
# every call the filter does not allow. Without an audit daemon the records go to the kernel log
# (/dev/kmsg, what dmesg shows); with one, to its log (ausearch -m SECCOMP). The container's are
# told from other processes' by their audit session: its shim starts a new one.

AUDIT_SECCOMP = 1326
# the marker's call (getppid) and the BPF program of its filter: RET_LOG for it, ALLOW the rest
_MARKER_CALLS = {"x86_64": 110, "aarch64": 173}
_RET_LOG, _RET_ALLOW = 0x7FFC0000, 0x7FFF0000


def _marker_program(number: int) -> bytes:
    """struct sock_filter[4]: load seccomp_data.nr; if it is ``number`` return LOG, else
    ALLOW (BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K)."""
    code = ((0x20, 0, 0, 0), (0x15, 0, 1, number), (0x06, 0, 0, _RET_LOG), (0x06, 0, 0, _RET_ALLOW))
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in code)


def log_marker() -> tuple[int, int] | None:
    """A forked child loads a filter that logs one call (SECCOMP_RET_LOG), makes it and
    exits: its audit record is queued behind every record queued before it, so once it is in
    the kernel log, so are they. (pid, call number) of the marker; None where the call's
    number is not known."""
    number = _MARKER_CALLS.get(os.uname().machine)
    if number is None:
        return None
    program = _marker_program(number)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            linux.set_no_new_privs()
            linux.seccomp_set_filter(program)
            os.getppid()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return pid, number


def _is_marker(record: str, marker: tuple[int, int]) -> bool:
    _, _, message = record.partition(";")
    if f"type={AUDIT_SECCOMP} " not in message:
        return False
    fields = dict(_FIELD.findall(message))
    return fields.get("pid") == str(marker[0]) and fields.get("syscall") == str(marker[1])


_UNSET = 4294967295
_FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


def new_audit_session() -> int | None:
    """A new audit session for this process and all it starts: its login uid written again to
    /proc/self/loginuid (0 when none is set), which gives it a new session id. None when the
    kernel refuses (login uids made immutable)."""
    try:
        with open("/proc/self/loginuid") as f:
            current = int(f.read().strip())
        fd = os.open("/proc/self/loginuid", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(0 if current == _UNSET else current).encode())
        finally:
            os.close(fd)
        return audit_session()
    except (OSError, ValueError):
        return None


def audit_session() -> int | None:
    try:
        with open("/proc/self/sessionid") as f:
            value = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if value == _UNSET else value


def syscall_name(arch: int, number: int) -> str:
    """libseccomp's name for a call number on an architecture (an audit token)."""
    lib = library()
    resolve = lib.seccomp_syscall_resolve_num_arch
    resolve.restype = ctypes.c_void_p
    resolve.argtypes = [ctypes.c_uint32, ctypes.c_int]
    pointer = resolve(arch, number)
    if not pointer:
        return str(number)
    try:
        return ctypes.string_at(pointer).decode("ascii", "replace")
    finally:
        libc = ctypes.CDLL(None)
        libc.free.argtypes = [ctypes.c_void_p]
        libc.free(pointer)


class KernelLog:
    """/dev/kmsg, read from the moment it is opened: the seccomp records of one session."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls) -> KernelLog | None:
        try:
            fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        os.lseek(fd, 0, os.SEEK_END)  # only what is logged from now on
        return cls(fd)

    def records(self) -> list[str]:
        found: list[str] = []
        while True:
            try:
                record = os.read(self.fd, 8192)
            except BlockingIOError:
                return found
            except BrokenPipeError:  # overwritten before it was read: go on with the next
                continue
            except OSError:
                return found
            if not record:
                return found
            found.append(record.decode("utf-8", "replace"))

    def denials(self, session: int, settle: float = 0.02) -> list[dict[str, Any]]:
        """The session's seccomp records. The kernel's audit thread writes them a moment after
        the call, in the order they were queued: a child of dockscope now makes one call that
        a filter of its own logs (``log_marker``), and the log is read until that record
        appears behind the container's (a quarter of a second at most: the kernel's printk
        rate limit may drop records, the marker too). Where no marker can be made,
        the log is polled for ``settle`` seconds more, as long as records keep coming."""
        import select
        import time

        marker = log_marker()
        records = self.records()
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        limit = time.monotonic() + (0.25 if marker is not None else 0.5)
        if marker is not None:
            while not any(_is_marker(r, marker) for r in records):
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    break
                poller.poll(remaining * 1000)
                records += self.records()
            records = [r for r in records if not _is_marker(r, marker)]
        else:
            while time.monotonic() < limit and poller.poll(settle * 1000):
                new = self.records()
                if not new:
                    break
                records += new
        found = []
        for record in records:
            _, _, message = record.partition(";")
            if f"type={AUDIT_SECCOMP} " not in message:
                continue
            fields = {k: v.strip('"') for k, v in _FIELD.findall(message)}
            if fields.get("ses") != str(session):
                continue
            try:
                arch, number = int(fields["arch"], 16), int(fields["syscall"])
            except (KeyError, ValueError):
                continue
            found.append(
                {
                    "syscall": syscall_name(arch, number),
                    "number": number,
                    "pid": int(fields.get("pid", "0") or 0),
                    "comm": fields.get("comm", ""),
                    "action": _AUDIT_CODES.get(int(fields.get("code", "0"), 16) & 0xFFFF0000, "?"),
                }
            )
        return found

    def close(self) -> None:
        os.close(self.fd)


_AUDIT_CODES = {
    0x00000000: "kill_thread",
    0x80000000: "kill_process",
    0x00030000: "trap",
    0x00050000: "errno",
    0x7FC00000: "user_notif",
    0x7FF00000: "trace",
    0x7FFC0000: "log",
}
