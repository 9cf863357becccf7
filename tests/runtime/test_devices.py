"""The device allowlist: the rules, v1's writes (on the fake and on the real kernel), and
cgroup v2's eBPF program — run in an interpreter here against the rules' own answer, and
loaded into the real kernel: this host runs cgroup v1 with systemd's unified hierarchy beside
it (hybrid), and the kernel runs device programs attached there for every process, so the
v2 program is tested for real even though the v2 driver's files are tested on a fake."""

from __future__ import annotations

import errno
import itertools
import json
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_lab.kernel.cgroups import CGROUP_ROOT, CgroupV1, CgroupV2, KernelCgroupFS
from runtime_lab.kernel.devices import (
    DEFAULT_RULES,
    WILDCARD,
    DeviceRule,
    allowed,
    device_program,
    v1_writes,
)
from tests.support.cgroupfs import FakeCgroup1FS, FakeCgroup2FS, own_path_from

UNIFIED = CGROUP_ROOT / "unified"
ROOT = Path("/sys/fs/cgroup")


def run_program(program: bytes, kind: str, major: int, minor: int, access: str) -> int:
    """An interpreter of the instructions ``device_program`` emits, over one request."""
    access_bits = sum({"m": 1, "r": 2, "w": 4}[a] for a in access)
    dev_type = {"b": 1, "c": 2}[kind]
    ctx = struct.pack("<III", (access_bits << 16) | dev_type, major, minor)
    regs = [0] * 11
    insns = [struct.unpack_from("<BBhi", program, i) for i in range(0, len(program), 8)]
    pc = 0
    for _ in range(10_000):
        code, regs_byte, off, imm = insns[pc]
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        if code == 0x61:
            assert src == 1
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0x54:
            regs[dst] = (regs[dst] & imm) & 0xFFFFFFFF
        elif code == 0x74:
            regs[dst] = (regs[dst] >> imm) & 0xFFFFFFFF
        elif code == 0xBC:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == 0xB7:
            regs[dst] = imm
        elif code == 0x55:
            pc += off if regs[dst] != imm else 0
        elif code == 0x5D:
            pc += off if regs[dst] != regs[src] else 0
        elif code == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("no exit")


REQUESTS = list(
    itertools.product(
        ("c", "b"),
        (1, 5, 8, 10, 136, 254),
        (0, 1, 2, 3, 5, 7, 8, 9, 11, 200, 229),
        ("r", "w", "m", "rw", "rwm"),
    )
)


def test_docker_default_answers() -> None:
    assert allowed("c", 1, 3, "rw")  # /dev/null
    assert allowed("c", 136, 4, "rw")  # a terminal of the container's devpts
    assert allowed("b", 8, 0, "m")  # mknod of any block node…
    assert not allowed("b", 8, 0, "r")  # …but not reading it
    assert not allowed("c", 1, 11, "w")  # /dev/kmsg
    assert not allowed("c", 10, 229, "rw")  # /dev/fuse, denied by name
    assert allowed("c", 10, 229, "m")  # (mknod of it is allowed by the later c *:* m)


def test_the_program_answers_as_the_rules() -> None:
    program, count = device_program()
    assert len(program) == 8 * count
    for request in REQUESTS:
        assert run_program(program, *request) == int(allowed(*request)), request


def test_the_program_for_other_rule_sets() -> None:
    rules = [
        DeviceRule(False, "a", WILDCARD, WILDCARD, "rwm"),
        DeviceRule(True, "c", 1, WILDCARD, "r"),
        DeviceRule(False, "c", 1, 3, "rwm"),
        DeviceRule(True, "b", WILDCARD, 0, "rw"),
    ]
    program, _ = device_program(rules)
    for request in REQUESTS:
        assert run_program(program, *request) == int(allowed(*request, rules=rules)), request


def test_v1_writes_deny_all_first() -> None:
    writes = v1_writes()
    assert writes[0] == ("devices.deny", "a")
    assert ("devices.allow", "b *:* m") in writes
    assert all(value != "c 10:229 rwm" for _, value in writes)  # never granted: nothing to deny


def test_v1_driver_on_the_fake() -> None:
    fs = FakeCgroup1FS(ROOT, controllers=("memory", "cpu", "pids", "devices"))
    group = CgroupV1(ROOT, fs, own_path=own_path_from({})).create("c1")
    evidence = group.restrict_devices(DEFAULT_RULES)
    assert evidence["devices.list"] == [
        value for name, value in v1_writes() if name != "devices.deny"
    ]


def test_v1_without_a_devices_controller_refuses_to_run_unprotected() -> None:
    fs = FakeCgroup1FS(ROOT, controllers=("memory", "cpu", "pids"))
    group = CgroupV1(ROOT, fs, own_path=own_path_from({})).create("c1")
    with pytest.raises(OSError) as excinfo:
        group.restrict_devices(DEFAULT_RULES)
    assert excinfo.value.errno == errno.ENOENT
    assert "devices" in str(excinfo.value)


def test_v2_driver_attaches_the_program() -> None:
    fs = FakeCgroup2FS(ROOT)
    group = CgroupV2(ROOT, fs).create("c1")
    evidence = group.restrict_devices(DEFAULT_RULES)
    program, count = device_program()
    assert fs.device_programs[group.paths["unified"]] == [(program, count)]
    assert evidence["program"] == {"instructions": count, "attach_type": "BPF_CGROUP_DEVICE"}
    assert evidence["attached_program_ids"] == [1]


# -- the real kernel ------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def unified_group() -> Iterator[Path]:
    if not (UNIFIED / "cgroup.procs").exists():
        pytest.skip("no unified (v2) hierarchy mounted beside v1 on this host")
    path = UNIFIED / f"dockscope-test-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        path.rmdir()


def probe_in(
    group: Path, nodes: dict[str, tuple[int, int, int]], directory: Path
) -> dict[str, str]:
    """In a child moved into ``group``: open each node (made first by the parent), and
    mknod a block node; what each gave."""
    for name, (kind, major, minor) in nodes.items():
        os.mknod(directory / name, 0o600 | kind, os.makedev(major, minor))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        results = {}
        try:
            (group / "cgroup.procs").write_text(str(os.getpid()))
            for name in nodes:
                try:
                    os.close(os.open(directory / name, os.O_RDONLY | os.O_NONBLOCK))
                    results[name] = "ok"
                except OSError as exc:
                    results[name] = errno.errorcode[exc.errno or 0]
            try:
                os.mknod(directory / "made", 0o600 | stat.S_IFBLK, os.makedev(8, 0))
                results["mknod b 8:0"] = "ok"
            except OSError as exc:
                results["mknod b 8:0"] = errno.errorcode[exc.errno or 0]
        finally:
            os.write(write_fd, json.dumps(results).encode())
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd) as pipe:
        return dict(json.load(pipe))


@needs_root
def test_the_program_on_the_real_kernel(unified_group: Path, tmp_path: Path) -> None:
    program, count = device_program()
    attached = KernelCgroupFS().attach_device_program(unified_group, program, count)
    assert len(attached) == 1
    nodes = {
        "null": (stat.S_IFCHR, 1, 3),
        "zero": (stat.S_IFCHR, 1, 5),
        "kmsg": (stat.S_IFCHR, 1, 11),
        "disk": (stat.S_IFBLK, 8, 0),
    }
    assert probe_in(unified_group, nodes, tmp_path) == {
        "null": "ok",
        "zero": "ok",
        "kmsg": "EPERM",
        "disk": "EPERM",
        "mknod b 8:0": "ok",
    }


@needs_root
def test_without_the_program_the_same_probe_opens_everything(
    unified_group: Path, tmp_path: Path
) -> None:
    """The control: the same probe in a group without the program (so the EPERMs above are
    the program's)."""
    nodes = {"kmsg": (stat.S_IFCHR, 1, 11), "null": (stat.S_IFCHR, 1, 3)}
    assert probe_in(unified_group, nodes, tmp_path) == {
        "kmsg": "ok",
        "null": "ok",
        "mknod b 8:0": "ok",
    }


@needs_root
@pytest.mark.skipif(not (CGROUP_ROOT / "devices").is_dir(), reason="no v1 devices hierarchy")
def test_v1_kernel_accepts_the_writes() -> None:
    group = CgroupV1(CGROUP_ROOT, KernelCgroupFS()).create(f"test-devices-{os.getpid()}")
    try:
        evidence = group.restrict_devices(DEFAULT_RULES)
        assert sorted(evidence["devices.list"]) == sorted(
            value for name, value in v1_writes() if name == "devices.allow"
        )
    finally:
        group.remove()
