"""The cgroup drivers of runtime_lab/cgroups.py, file by file.

This machine mounts cgroup v1 only, so the v2 driver is exercised against
``tests/support/cgroupfs.py``: a fake unified hierarchy that enforces the kernel's rules (interface
files appear with mkdir and with controllers handed down, values are parsed as the kernel
parses them, "no internal processes", EBUSY on rmdir of a populated group). The v1 driver runs
against a v1 fake with the same care, and once against the real kernel (as root).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from runtime_lab.kernel.cgroups import (
    CGROUP_ROOT,
    CgroupError,
    CgroupV1,
    CgroupV2,
    KernelCgroupFS,
    Limits,
    Write,
    detect,
    own_cgroup_path,
    parse_memory,
)
from tests.support.cgroupfs import FakeCgroup1FS, FakeCgroup2FS, own_path_from

ROOT = Path("/sys/fs/cgroup")
MIB = 1024 * 1024
LIMITS = Limits(memory=64 * MIB, cpus=0.5, pids=64)  # --memory 64m --cpus 0.5 --pids-limit 64
SESSION = "/user.slice/user-0.slice/session-3.scope"


def v2(systemd: bool = False, **options: object) -> tuple[FakeCgroup2FS, CgroupV2]:
    """A unified hierarchy with dockscope (pid 4242) in a login session's scope; with
    ``systemd``, the controllers handed down the slices as systemd does."""
    if systemd:
        options.setdefault("enabled", ("cpu", "io", "memory", "pids"))
    fs = FakeCgroup2FS(ROOT, **options)  # type: ignore[arg-type]
    path = ROOT
    for part in SESSION.strip("/").split("/"):
        path = path / part
        fs.mkdir(path)
        if systemd and part.endswith(".slice"):
            fs.write(path / "cgroup.subtree_control", "+cpu +memory +pids")
    fs.add_process(path, 4242)
    return fs, CgroupV2(ROOT, fs, own_path=own_path_from({"": SESSION}))


def errno_of(excinfo: pytest.ExceptionInfo[OSError]) -> int | None:
    return excinfo.value.errno


# -- detection ------------------------------------------------------------------------------


def test_detect_v2_from_the_unified_hierarchy() -> None:
    fs = FakeCgroup2FS(ROOT)
    assert isinstance(detect(ROOT, fs), CgroupV2)


def test_detect_v1_from_per_controller_hierarchies() -> None:
    assert isinstance(detect(ROOT, FakeCgroup1FS(ROOT)), CgroupV1)


def test_detect_hybrid_is_v1() -> None:
    """systemd's hybrid layout: v1 controllers plus an empty v2 tree at unified/."""
    fs = FakeCgroup1FS(ROOT, unified=True)
    assert fs.exists(ROOT / "unified" / "cgroup.controllers")
    assert isinstance(detect(ROOT, fs), CgroupV1)


def test_detect_this_machine() -> None:
    driver = detect()
    if (CGROUP_ROOT / "cgroup.controllers").exists() and not (CGROUP_ROOT / "memory").exists():
        assert driver.version == 2
    else:
        assert driver.version == 1


def test_own_cgroup_path_reads_proc_self_cgroup() -> None:
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    unified = [line for line in lines if line.startswith("0::")]
    memory = [line for line in lines if "memory" in line.split(":")[1].split(",")]
    if memory:
        assert own_cgroup_path("memory") == memory[0].split(":", 2)[2]
    if unified:
        assert own_cgroup_path("") == unified[0].split(":", 2)[2]


# -- the fake v2 hierarchy behaves as the kernel does -------------------------------------------


def test_fake_v2_mkdir_creates_interface_files() -> None:
    fs = FakeCgroup2FS(ROOT, enabled=("memory", "pids"))
    fs.mkdir(ROOT / "a")
    names = fs.listdir(ROOT / "a")
    assert {"cgroup.procs", "cgroup.controllers", "cgroup.subtree_control", "cgroup.events"} <= set(
        names
    )
    assert fs.read(ROOT / "a" / "cgroup.controllers") == "memory pids\n"
    assert fs.read(ROOT / "a" / "memory.max") == "max\n"
    assert fs.read(ROOT / "a" / "pids.max") == "max\n"
    assert "oom_kill 0\n" in fs.read(ROOT / "a" / "memory.events")
    assert not fs.exists(ROOT / "a" / "cpu.max")  # cpu is not handed down to it
    assert not fs.exists(ROOT / "memory.max")  # the root has no limits


def test_fake_v2_handing_down_adds_files_to_children() -> None:
    fs = FakeCgroup2FS(ROOT)
    fs.mkdir(ROOT / "a")
    assert not fs.exists(ROOT / "a" / "cpu.max")
    fs.write(ROOT / "cgroup.subtree_control", "+cpu")
    assert fs.read(ROOT / "a" / "cpu.max") == "max 100000\n"
    fs.write(ROOT / "cgroup.subtree_control", "-cpu")
    assert not fs.exists(ROOT / "a" / "cpu.max")


def test_fake_v2_subtree_control_needs_the_controller_in_cgroup_controllers() -> None:
    fs = FakeCgroup2FS(ROOT, enabled=("pids",))
    fs.mkdir(ROOT / "a")
    with pytest.raises(OSError) as excinfo:
        fs.write(ROOT / "a" / "cgroup.subtree_control", "+memory")
    assert errno_of(excinfo) == errno.ENOENT
    with pytest.raises(OSError) as excinfo:
        fs.write(ROOT / "a" / "cgroup.subtree_control", "memory")
    assert errno_of(excinfo) == errno.EINVAL
    fs.write(ROOT / "a" / "cgroup.subtree_control", "+pids")
    assert fs.read(ROOT / "a" / "cgroup.subtree_control") == "pids\n"


def test_fake_v2_no_internal_processes() -> None:
    fs = FakeCgroup2FS(ROOT, enabled=("memory",))
    fs.mkdir(ROOT / "busy")
    fs.add_process(ROOT / "busy", 100)
    with pytest.raises(OSError) as excinfo:
        fs.write(ROOT / "busy" / "cgroup.subtree_control", "+memory")
    assert errno_of(excinfo) == errno.EBUSY
    fs.mkdir(ROOT / "parent")
    fs.write(ROOT / "parent" / "cgroup.subtree_control", "+memory")
    with pytest.raises(OSError) as excinfo:  # nor may a process join a group that hands down
        fs.write(ROOT / "parent" / "cgroup.procs", "100")
    assert errno_of(excinfo) == errno.EBUSY
    fs.add_process(ROOT, 1)  # the root of the hierarchy is exempt
    fs.write(ROOT / "cgroup.subtree_control", "+cpu")


def test_fake_v2_rejects_invalid_values() -> None:
    fs = FakeCgroup2FS(ROOT, enabled=("memory", "cpu", "pids"))
    fs.mkdir(ROOT / "a")
    for name, value in (
        ("memory.max", "lots"),
        ("memory.max", "-1"),
        ("cpu.max", "500 100000"),  # less than 1 ms per period
        ("cpu.max", "50000 100"),  # period below 1 ms
        ("cpu.max", "half"),
        ("pids.max", "-1"),
        ("pids.max", "ten"),
        ("cgroup.procs", "abc"),
        ("memory.current", "0"),  # read-only
        ("memory.events", "oom_kill 0"),
    ):
        with pytest.raises(OSError) as excinfo:
            fs.write(ROOT / "a" / name, value)
        assert errno_of(excinfo) == errno.EINVAL, (name, value)
    with pytest.raises(OSError) as excinfo:  # cgroupfs makes no regular files
        fs.write(ROOT / "a" / "memory.limit_in_bytes", "1")
    assert errno_of(excinfo) == errno.EACCES


def test_fake_v2_values_read_back_as_the_kernel_shows_them() -> None:
    fs = FakeCgroup2FS(ROOT, enabled=("memory", "cpu", "pids"))
    fs.mkdir(ROOT / "a")
    fs.write(ROOT / "a" / "memory.max", "1000000")
    assert fs.read(ROOT / "a" / "memory.max") == "999424\n"  # whole pages
    fs.write(ROOT / "a" / "memory.max", "64M")
    assert fs.read(ROOT / "a" / "memory.max") == f"{64 * MIB}\n"
    fs.write(ROOT / "a" / "cpu.max", "25000")  # the period is kept
    assert fs.read(ROOT / "a" / "cpu.max") == "25000 100000\n"
    fs.write(ROOT / "a" / "cpu.max", "max")
    assert fs.read(ROOT / "a" / "cpu.max") == "max 100000\n"


def test_fake_v2_rmdir_is_busy_while_processes_remain() -> None:
    fs = FakeCgroup2FS(ROOT, enabled=("pids",))
    fs.mkdir(ROOT / "a" / "b")
    fs.write(ROOT / "a" / "b" / "cgroup.procs", "77")
    assert fs.read(ROOT / "a" / "cgroup.events").startswith("populated 1")
    with pytest.raises(OSError) as excinfo:
        fs.rmdir(ROOT / "a" / "b")
    assert errno_of(excinfo) == errno.EBUSY
    with pytest.raises(OSError) as excinfo:  # nor while it has child groups
        fs.rmdir(ROOT / "a")
    assert errno_of(excinfo) == errno.EBUSY
    fs.exit(77)
    fs.rmdir(ROOT / "a" / "b")
    fs.rmdir(ROOT / "a")
    assert not fs.exists(ROOT / "a")
    with pytest.raises(OSError) as excinfo:
        fs.rmdir(ROOT / "a")
    assert errno_of(excinfo) == errno.ENOENT


# -- the v2 driver ----------------------------------------------------------------------------


def test_v2_create_hands_the_controllers_down() -> None:
    fs, driver = v2()
    group = driver.create("0123456789ab")
    path = ROOT / "dockscope" / "0123456789ab"
    assert group.paths == {"unified": path}
    assert group.writes == [
        Write(str(ROOT / "cgroup.subtree_control"), "+memory +cpu +pids"),
        Write(str(ROOT / "dockscope" / "cgroup.subtree_control"), "+memory +cpu +pids"),
    ]
    assert fs.read(path / "cgroup.controllers") == "cpu memory pids\n"
    assert fs.read(path / "memory.max") == "max\n"
    assert fs.read(path / "cpu.max") == "max 100000\n"
    assert fs.read(path / "pids.max") == "max\n"


def test_v2_second_group_writes_no_subtree_control_again() -> None:
    _fs, driver = v2()
    driver.create("first")
    assert driver.create("second").writes == []


def test_v2_only_missing_controllers_are_enabled() -> None:
    _fs, driver = v2(systemd=True)
    group = driver.create("c1")
    assert group.writes == [
        Write(str(ROOT / "dockscope" / "cgroup.subtree_control"), "+memory +cpu +pids")
    ]


def test_v2_not_below_a_group_with_processes() -> None:
    """dockscope's own group (a session scope) has processes: nothing can be handed down from
    it, so a container group below it could hold no limit; the driver goes to the root."""
    fs, driver = v2(systemd=True)
    session = ROOT / SESSION.lstrip("/")
    assert fs.read(session / "cgroup.controllers") == "cpu memory pids\n"
    with pytest.raises(OSError) as excinfo:
        fs.write(session / "cgroup.subtree_control", "+memory")
    assert errno_of(excinfo) == errno.EBUSY
    group = driver.create("c1")
    assert group.paths["unified"].parent == ROOT / "dockscope"


def test_v2_exact_writes_for_memory_cpus_pids() -> None:
    _fs, driver = v2()
    group = driver.create("c1")
    made = len(group.writes)
    group.apply(LIMITS)
    path = ROOT / "dockscope" / "c1"
    assert group.writes[made:] == [
        Write(str(path / "memory.max"), "67108864"),
        Write(str(path / "memory.swap.max"), "0"),
        Write(str(path / "cpu.max"), "50000 100000"),
        Write(str(path / "pids.max"), "64"),
    ]
    assert group.values() == {
        str(path / "memory.max"): "67108864",
        str(path / "memory.peak"): "0",
        str(path / "cpu.max"): "50000 100000",
        str(path / "pids.max"): "64",
        str(path / "pids.current"): "0",
        str(path / "pids.peak"): "0",
        str(path / "pids.events"): "max 0",
    }


def test_v2_add_and_remove() -> None:
    fs, driver = v2()
    group = driver.create("c1")
    path = ROOT / "dockscope" / "c1"
    group.add(5000)
    assert group.writes[-1] == Write(str(path / "cgroup.procs"), "5000")
    assert fs.read(path / "cgroup.procs") == "5000\n"
    with pytest.raises(OSError) as excinfo:
        group.remove()
    assert errno_of(excinfo) == errno.EBUSY
    fs.exit(5000)
    group.remove()
    assert not fs.exists(path)
    assert fs.exists(ROOT / "dockscope")  # kept for the next container


def test_v2_release_moves_the_shim_to_dockscopes_own_group() -> None:
    """The shim leaves the container's group for dockscope's (a leaf: the session's scope),
    so pids.max counts only the container's processes; the group can then go empty."""
    fs, driver = v2()
    group = driver.create("c1")
    path = ROOT / "dockscope" / "c1"
    group.add(5000)  # the shim
    group.add(5001)  # PID 1, forked in the group
    group.release(5000)
    session = ROOT / SESSION.lstrip("/")
    assert group.writes[-1] == Write(str(session / "cgroup.procs"), "5000")
    assert fs.read(path / "cgroup.procs") == "5001\n"
    assert fs.read(session / "cgroup.procs") == "4242\n5000\n"
    group.apply(Limits(pids=1))
    assert fs.read(path / "pids.current") == "1\n"
    fs.exit(5001)
    group.remove()


def test_v2_oom_detected_from_memory_events() -> None:
    fs, driver = v2()
    group = driver.create("c1")
    group.apply(Limits(memory=16 * MIB))
    group.add(5000)
    assert not group.oom_killed()
    assert fs.oom_kill(group.paths["unified"]) == 5000
    assert "oom_kill 1\n" in fs.read(group.paths["unified"] / "memory.events")
    assert group.oom_killed()
    assert driver.oom_kills(group) == 1
    # hierarchical: the parent counts it too
    assert "oom_kill 1\n" in fs.read(ROOT / "dockscope" / "memory.events")


def test_v2_limit_on_a_controller_the_hierarchy_lacks() -> None:
    _fs, driver = v2(controllers=("cpu", "io", "pids"))  # no memory controller
    group = driver.create("c1")
    assert group.writes[0].value == "+cpu +pids"
    with pytest.raises(CgroupError, match="memory controller is not available") as excinfo:
        group.apply(Limits(memory=16 * MIB))
    assert excinfo.value.errno == errno.ENOENT
    group.apply(Limits(pids=10))


def test_v2_in_a_cgroup_namespace_root_with_processes() -> None:
    """Inside a container with its own cgroup namespace the root is not exempt."""
    fs = FakeCgroup2FS(ROOT, namespace_root=True)
    fs.add_process(ROOT, 1)
    driver = CgroupV2(ROOT, fs, own_path=own_path_from({"": "/"}))
    with pytest.raises(CgroupError, match="no internal processes") as excinfo:
        driver.create("c1")
    assert excinfo.value.errno == errno.EBUSY


def test_v2_kernel_refuses_a_quota_below_one_millisecond() -> None:
    _fs, driver = v2()
    group = driver.create("c1")
    with pytest.raises(OSError) as excinfo:
        group.apply(Limits(cpus=0.005))  # 500 µs per 100 ms
    assert errno_of(excinfo) == errno.EINVAL


# -- the v1 driver ----------------------------------------------------------------------------


def v1(**options: object) -> tuple[FakeCgroup1FS, CgroupV1]:
    fs = FakeCgroup1FS(ROOT, **options)  # type: ignore[arg-type]
    own = own_path_from({"memory": "/process_api/job7"})
    fs.mkdir(ROOT / "memory" / "process_api" / "job7")
    return fs, CgroupV1(ROOT, fs, own_path=own)


def test_v1_groups_nest_under_this_process_groups() -> None:
    _fs, driver = v1()
    group = driver.create("c1")
    assert group.paths == {
        "memory": ROOT / "memory" / "process_api" / "job7" / "dockscope" / "c1",
        "cpu": ROOT / "cpu" / "dockscope" / "c1",
        "pids": ROOT / "pids" / "dockscope" / "c1",
    }
    assert group.writes == []  # v1 hands nothing down


def test_v1_exact_writes_for_memory_cpus_pids() -> None:
    fs, driver = v1()
    group = driver.create("c1")
    group.apply(LIMITS)
    memory, cpu, pids = (group.paths[c] for c in ("memory", "cpu", "pids"))
    assert group.writes == [
        Write(str(memory / "memory.limit_in_bytes"), "67108864"),
        Write(str(memory / "memory.memsw.limit_in_bytes"), "67108864"),
        Write(str(cpu / "cpu.cfs_period_us"), "100000"),
        Write(str(cpu / "cpu.cfs_quota_us"), "50000"),
        Write(str(pids / "pids.max"), "64"),
    ]
    assert fs.read(memory / "memory.memsw.limit_in_bytes") == "67108864\n"


def test_v1_without_swap_accounting() -> None:
    _fs, driver = v1(swap_accounting=False)
    group = driver.create("c1")
    group.apply(Limits(memory=16 * MIB))
    assert [w.path.rsplit("/", 1)[1] for w in group.writes] == ["memory.limit_in_bytes"]


def test_v1_oom_detected_from_oom_control() -> None:
    fs, driver = v1()
    group = driver.create("c1")
    group.add(300)
    assert not group.oom_killed()
    fs.oom_kill(group.paths["memory"])
    assert group.oom_killed()
    assert fs.read(group.paths["memory"] / "cgroup.procs") == ""


def test_v1_add_writes_every_hierarchy_and_remove_needs_it_empty() -> None:
    fs, driver = v1()
    group = driver.create("c1")
    group.add(300)
    assert [w.path.rsplit("/", 1)[1] for w in group.writes] == ["cgroup.procs"] * 3
    with pytest.raises(OSError) as excinfo:
        group.remove()
    assert errno_of(excinfo) == errno.EBUSY
    fs.exit(300)
    group.remove()
    assert not any(fs.exists(p) for p in group.paths.values())


def test_v1_release_moves_the_shim_out_of_every_hierarchy() -> None:
    fs, driver = v1()
    group = driver.create("c1")
    group.add(300)
    group.add(301)
    made = len(group.writes)
    group.release(300)
    homes = [group.paths[c].parent.parent for c in ("memory", "cpu", "pids")]
    assert homes[0] == ROOT / "memory" / "process_api" / "job7"
    assert group.writes[made:] == [Write(str(h / "cgroup.procs"), "300") for h in homes]
    assert all(fs.read(p / "cgroup.procs") == "301\n" for p in group.paths.values())


def test_v1_half_made_group_is_removed() -> None:
    fs, driver = v1()
    fs.fail_mkdir[ROOT / "pids" / "dockscope" / "c1"] = errno.ENOSPC
    with pytest.raises(OSError) as excinfo:
        driver.create("c1")
    assert errno_of(excinfo) == errno.ENOSPC
    assert not fs.exists(ROOT / "memory" / "process_api" / "job7" / "dockscope" / "c1")
    assert not fs.exists(ROOT / "cpu" / "dockscope" / "c1")


def test_v1_fake_keeps_memory_below_memsw() -> None:
    """The order v1 writes in matters: memory+swap can never be below memory alone."""
    fs, driver = v1()
    memory = driver.create("c1").paths["memory"]
    with pytest.raises(OSError) as excinfo:  # the memory limit is still unlimited
        fs.write(memory / "memory.memsw.limit_in_bytes", "32M")
    assert errno_of(excinfo) == errno.EINVAL
    fs.write(memory / "memory.limit_in_bytes", "32M")
    fs.write(memory / "memory.memsw.limit_in_bytes", "32M")
    with pytest.raises(OSError) as excinfo:
        fs.write(memory / "memory.limit_in_bytes", "64M")
    assert errno_of(excinfo) == errno.EINVAL


def test_v1_only_present_controllers() -> None:
    fs = FakeCgroup1FS(ROOT, controllers=("memory",))
    group = CgroupV1(ROOT, fs, own_path=own_path_from({})).create("c1")
    assert list(group.paths) == ["memory"]
    with pytest.raises(CgroupError):
        CgroupV1(ROOT, FakeCgroup1FS(ROOT, controllers=())).create("c2")


# -- v1 on the real kernel ------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.skipif(not (CGROUP_ROOT / "memory").is_dir(), reason="this machine is not cgroup v1")
def test_v1_kernel_accepts_the_same_writes() -> None:
    driver = CgroupV1(CGROUP_ROOT, KernelCgroupFS())
    group = driver.create(f"test-{os.getpid()}")
    try:
        group.apply(LIMITS)
        values = {Path(k).name: v for k, v in group.values().items()}
        assert values["memory.limit_in_bytes"] == "67108864"
        assert values["cpu.cfs_quota_us"] == "50000"
        assert values["cpu.cfs_period_us"] == "100000"
        assert values["pids.max"] == "64"
        assert not group.oom_killed()
    finally:
        group.remove()
    assert not any(p.exists() for p in group.paths.values())


def test_parse_memory_uses_powers_of_1024() -> None:
    assert parse_memory("64m") == 64 * MIB
    assert parse_memory("1g") == 1024 * MIB
    assert parse_memory("512") == 512
    with pytest.raises(ValueError):
        parse_memory("lots")
    with pytest.raises(ValueError):
        parse_memory("0")
