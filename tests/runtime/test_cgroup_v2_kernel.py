"""The cgroup v2 driver against the real kernel, as far as this host allows.

This host mounts cgroup v1 for every controller, and systemd's hybrid layout adds the unified
hierarchy at /sys/fs/cgroup/unified with no controller but hugetlb. Mounting cgroup2 again
(even in a new mount namespace) shows the same single hierarchy: there is one per kernel, not
one per mount. A controller bound to a v1 hierarchy cannot be enabled in it: writing ``+memory``
(or ``+pids``, ``+cpu``, ``+io``, ``+cpuset``) to ``cgroup.subtree_control`` fails with ENOENT,
since ``cgroup.controllers`` does not list it. What the v2 core offers without controllers is
real here, and tested here: making and removing groups, ``cgroup.procs``, the device program
(BPF), ``cgroup.freeze``/``cgroup.events`` (pause), ``cpu.stat`` (stats' CPU time). The limits
(memory.max, cpu.max, pids.max) and OOM counting are tested against the fake
(tests/support/cgroupfs.py), and docs/RUNTIME.md lists what that does not prove.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_lab.kernel.cgroups import CgroupError, CgroupV2, Limits
from runtime_lab.kernel.devices import DEFAULT_RULES
from runtime_lab.lifecycle.control import _freeze
from runtime_lab.lifecycle.stats import sample
from runtime_lab.storage.store import ContainerConfig, ContainerState
from tests.support.runtime import needs_root

UNIFIED = Path("/sys/fs/cgroup/unified")

pytestmark = [
    *needs_root,
    pytest.mark.skipif(
        not (UNIFIED / "cgroup.controllers").is_file(), reason="no unified hierarchy mounted"
    ),
]


@pytest.fixture
def driver() -> Iterator[CgroupV2]:
    parent = UNIFIED / "dockscope"
    made = not parent.exists()
    yield CgroupV2(UNIFIED, own_path=lambda _: "/")
    if made:  # only the parent this test made, and only once no other group is in it
        with contextlib.suppress(OSError):
            parent.rmdir()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_the_kernel_offers_no_v1_bound_controller_in_v2() -> None:
    """What item 5 asked: can memory, pids, cpu be enabled in a v2 hierarchy here? No."""
    available = (UNIFIED / "cgroup.controllers").read_text().split()
    for controller in ("memory", "pids", "cpu"):
        assert controller not in available
        with pytest.raises(OSError) as excinfo:
            (UNIFIED / "cgroup.subtree_control").write_text(f"+{controller}")
        assert excinfo.value.errno == errno.ENOENT


def test_v2_group_on_the_real_kernel(driver: CgroupV2, sleeper: subprocess.Popen[bytes]) -> None:
    name = f"habits-{os.getpid()}"
    group = driver.create(name)
    path = group.paths["unified"]
    try:
        assert (path / "cgroup.procs").is_file()
        assert group.writes == []  # no controller to hand down: nothing written
        evidence = group.restrict_devices(DEFAULT_RULES)  # the real BPF attach
        assert evidence["attached_program_ids"]
        group.add(sleeper.pid)
        assert group.procs() == [sleeper.pid]
        with pytest.raises(CgroupError, match="memory controller is not available"):
            group.apply(Limits(64 << 20, None, None))
        # pause: cgroup.freeze, and cgroup.events says when every task has stopped
        state = ContainerState(
            status="running", pid=sleeper.pid, cgroup_paths={"unified": str(path)}
        )
        frozen = _freeze(state, frozen=True)
        assert "frozen 1" in frozen["read"]
        assert "frozen 1" in (path / "cgroup.events").read_text().splitlines()
        thawed = _freeze(state, frozen=False)
        assert "frozen 0" in thawed["read"]
        # stats: cpu.stat is a core file; memory.current and pids.current need controllers
        config = ContainerConfig(
            id="0" * 64,
            name=name,
            image_source="",
            image_id="",
            image_selector={},
            diff_ids=[],
            command=[],
            env=[],
            workdir="/",
            user="",
            hostname="",
            network="none",
        )
        reading = sample(config, state)
        assert reading.cpu_ns is not None
        assert reading.memory is None and reading.pids is None
        group.release(sleeper.pid)  # back to the root group
        assert group.procs() == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(sleeper.pid, signal.SIGKILL)
        for _ in range(50):
            try:
                group.remove()
                break
            except OSError:
                time.sleep(0.05)
    assert not path.exists()
