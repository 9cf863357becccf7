"""Which devices a container may use: docker's default allowlist, as the kernel enforces it.

Creating a device node is not the danger (docker lets a container ``mknod`` any device, for
images that ship them); opening one is. A node for the host's disk (``b 8:0``) made inside a
container would give raw access to the disk. The kernel asks the container's control group
on every ``open`` and ``mknod`` of a device node:

- cgroup v1: the ``devices`` controller. ``echo a > devices.deny`` forbids everything, then
  each ``devices.allow`` line (``c 1:3 rwm``: char device 1:3, read, write, mknod) lets one
  device (or a ``*`` range) through; ``devices.list`` shows the result.
- cgroup v2 has no such files: a small eBPF program of type ``BPF_PROG_TYPE_CGROUP_DEVICE``
  attached to the group answers each request (1 = allow, 0 = deny), as runc attaches one.
  :func:`device_program` writes that program for the same rules, instruction by
  instruction, the way runc's ``devicefilter`` package does.

The rules are docker's defaults: moby's ``oci.DefaultLinuxSpec`` (null, zero, random, urandom,
tty, console; /dev/fuse denied) with runc's ``AllowedDevices`` appended (mknod of any char or
block device, full, the terminals of the container's devpts, /dev/ptmx, /dev/net/tun).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WILDCARD = -1


@dataclass(frozen=True, slots=True)
class DeviceRule:
    """One allow or deny rule: type ``c``/``b``/``a`` (all), major and minor (``-1`` = any),
    access ``r``/``w``/``m``."""

    allow: bool
    type: str
    major: int
    minor: int
    access: str
    name: str = ""

    def v1_line(self) -> str:
        """The rule as devices.allow / devices.deny take it (``c 1:3 rwm``, ``a``)."""
        if self.type == "a":
            return "a"
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


def _allow(kind: str, major: int, minor: int, access: str, name: str) -> DeviceRule:
    return DeviceRule(True, kind, major, minor, access, name)


DEFAULT_RULES: tuple[DeviceRule, ...] = (
    # docker's default spec (moby oci/defaults.go)
    DeviceRule(False, "a", WILDCARD, WILDCARD, "rwm", "everything else"),
    _allow("c", 1, 5, "rwm", "/dev/zero"),
    _allow("c", 1, 3, "rwm", "/dev/null"),
    _allow("c", 1, 9, "rwm", "/dev/urandom"),
    _allow("c", 1, 8, "rwm", "/dev/random"),
    _allow("c", 5, 0, "rwm", "/dev/tty"),
    _allow("c", 5, 1, "rwm", "/dev/console"),
    DeviceRule(False, "c", 10, 229, "rwm", "/dev/fuse"),
    # runc's AllowedDevices, appended by runc to every container's rules
    _allow("c", WILDCARD, WILDCARD, "m", "mknod of any char device"),
    _allow("b", WILDCARD, WILDCARD, "m", "mknod of any block device"),
    _allow("c", 1, 7, "rwm", "/dev/full"),
    _allow("c", 136, WILDCARD, "rwm", "/dev/pts/*"),
    _allow("c", 5, 2, "rwm", "/dev/ptmx"),
    _allow("c", 10, 200, "rwm", "/dev/net/tun"),
)


# --privileged: every device, as docker's privileged containers get (runc writes "a *:* rwm")
PRIVILEGED_RULES: tuple[DeviceRule, ...] = (
    DeviceRule(True, "a", WILDCARD, WILDCARD, "rwm", "every device (--privileged)"),
)


def v1_writes(rules: Sequence[DeviceRule] = DEFAULT_RULES) -> list[tuple[str, str]]:
    """(file, value) pairs to write, in order, into a v1 devices group. A deny of a single
    device after allow rules that never granted it needs no write (a fresh group starts from
    its parent's list, and ``a`` was denied first)."""
    writes: list[tuple[str, str]] = []
    denied_all = False
    for rule in rules:
        if not rule.allow:
            if rule.type == "a":
                writes.append(("devices.deny", "a"))
                denied_all = True
            elif not denied_all:
                writes.append(("devices.deny", rule.v1_line()))
            continue
        writes.append(("devices.allow", rule.v1_line()))
    return writes


def allowed(
    kind: str, major: int, minor: int, access: str, rules: Sequence[DeviceRule] = DEFAULT_RULES
) -> bool:
    """What the rules answer for one request (the last matching rule wins, as runc's
    emulation of the v1 semantics): the reference the eBPF program is tested against."""
    verdict = False
    for rule in rules:
        if rule.type not in ("a", kind):
            continue
        if rule.major not in (WILDCARD, major) or rule.minor not in (WILDCARD, minor):
            continue
        if rule.type != "a" and not set(access) <= set(rule.access):
            continue
        verdict = rule.allow
    return verdict


# -- cgroup v2: the eBPF program ---------------------------------------------------------------

# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }: access_type is
# (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*
DEV_TYPES = {"b": 1, "c": 2}
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}

# instruction classes and operations (linux/bpf_common.h, linux/bpf.h)
_LDX_MEM_W = 0x61  # dst = *(u32 *)(src + off)
_ALU32_AND_K = 0x54
_ALU32_RSH_K = 0x74
_ALU32_MOV_X = 0xBC
_ALU64_MOV_K = 0xB7
_JMP_JNE_K = 0x55
_JMP_JNE_X = 0x5D
_JMP_JA = 0x05
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _effective(rules: Sequence[DeviceRule]) -> list[DeviceRule]:
    """The rules that can still decide: everything before the last deny-all is overridden by
    it (the program starts from its verdict)."""
    start = 0
    for index, rule in enumerate(rules):
        if rule.type == "a" and rule.major == WILDCARD and rule.minor == WILDCARD:
            start = index
    return list(rules[start:])


def device_program(rules: Sequence[DeviceRule] = DEFAULT_RULES) -> tuple[bytes, int]:
    """The eBPF program (bytes of ``struct bpf_insn``) and its instruction count.

    Registers after the prologue: R2 = device type, R3 = requested access, R4 = major,
    R5 = minor. The rules are checked last first, so the first match is the last matching
    rule, whose verdict is returned (R0 = 1 allow, 0 deny); no match returns the verdict of
    the rule everything starts from (a leading ``a`` deny: 0)."""
    effective = _effective(rules)
    base = effective[0] if effective and effective[0].type == "a" else None
    checked = effective[1:] if base is not None else effective
    default = 1 if base is not None and base.allow else 0
    prologue = [
        _insn(_LDX_MEM_W, dst=2, src=1, off=0),
        _insn(_ALU32_AND_K, dst=2, imm=0xFFFF),
        _insn(_LDX_MEM_W, dst=3, src=1, off=0),
        _insn(_ALU32_RSH_K, dst=3, imm=16),
        _insn(_LDX_MEM_W, dst=4, src=1, off=4),
        _insn(_LDX_MEM_W, dst=5, src=1, off=8),
    ]
    blocks: list[list[bytes]] = []
    for rule in reversed(checked):
        # each check jumps to the end of this block (the next rule) when it does not match;
        # offsets are filled in once the block's length is known
        checks: list[tuple[int, int, int, int]] = []  # code, dst, src, imm
        if rule.type != "a":
            checks.append((_JMP_JNE_K, 2, 0, DEV_TYPES[rule.type]))
            mask = sum(ACCESS_BITS[a] for a in rule.access)
            if mask != 7:
                # (access & mask) != access: something asked for is not granted
                checks.append((-1, 0, 0, mask))
        if rule.major != WILDCARD:
            checks.append((_JMP_JNE_K, 4, 0, rule.major))
        if rule.minor != WILDCARD:
            checks.append((_JMP_JNE_K, 5, 0, rule.minor))
        length = sum(3 if code == -1 else 1 for code, *_ in checks) + 2
        block: list[bytes] = []
        for code, dst, src, imm in checks:
            if code == -1:
                block.append(_insn(_ALU32_MOV_X, dst=1, src=3))
                block.append(_insn(_ALU32_AND_K, dst=1, imm=imm))
                block.append(_insn(_JMP_JNE_X, dst=1, src=3, off=length - len(block) - 1))
            else:
                block.append(_insn(code, dst=dst, src=src, imm=imm, off=length - len(block) - 1))
        block.append(_insn(_ALU64_MOV_K, dst=0, imm=1 if rule.allow else 0))
        block.append(_insn(_EXIT))
        blocks.append(block)
    epilogue = [_insn(_ALU64_MOV_K, dst=0, imm=default), _insn(_EXIT)]
    instructions = prologue + [i for block in blocks for i in block] + epilogue
    return b"".join(instructions), len(instructions)


def describe(rules: Iterable[DeviceRule] = DEFAULT_RULES) -> list[str]:
    """The rules as a student reads them: ``allow c 1:3 rwm (/dev/null)``."""
    return [
        f"{'allow' if r.allow else 'deny'} {r.v1_line()}" + (f" ({r.name})" if r.name else "")
        for r in rules
    ]
