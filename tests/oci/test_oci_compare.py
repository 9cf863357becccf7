"""The same bundle under runc and under dockscope-runtime: what the kernel shows of the
container's PID 1 must be the same (no strace: /proc/PID/status, mountinfo, cgroup, limits,
the /dev listing, and the cgroup files the limits were written to)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.oci.conftest import RUNTIME, MakeBundle, wait_for
from tests.support.runtime import needs_root

pytestmark = [*needs_root, pytest.mark.interop]

STATUS_FIELDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                 "NoNewPrivs", "Seccomp", "Seccomp_filters")  # fmt: skip


CGROUP_FILES = (
    ("memory", "memory.limit_in_bytes"),
    ("pids", "pids.max"),
    ("devices", "devices.list"),
    ("cpu", "cpu.cfs_quota_us"),
)


def observe(runtime: str, state: Path, bundle: Path, cid: str) -> dict[str, Any]:
    def run(*argv: str | Path) -> str:
        return subprocess.run(
            [runtime, "--root", str(state), *(str(a) for a in argv)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        ).stdout

    with open(os.devnull, "w") as null:  # PID 1 keeps create's streams
        subprocess.run(
            [runtime, "--root", str(state), "create", "--bundle", str(bundle), cid],
            check=True, stdout=null, stderr=null, stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
    try:
        run("start", cid)
        pid = json.loads(run("state", cid))["pid"]
        assert wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"))
        status = {
            k: v.strip()
            for k, _, v in (
                line.partition(":") for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            )
            if k in STATUS_FIELDS
        }
        mounts = []
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
            fields = line.split()
            sep = fields.index("-")
            # mount point, its options, the filesystem type, the superblock's options
            mounts.append((fields[4], fields[5], fields[sep + 1], fields[sep + 3]))
        groups = sorted(
            line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        )
        cgroup_dir = next(
            line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
            if ":memory:" in line
        )  # fmt: skip
        files = {}
        for controller, name in CGROUP_FILES:
            path = Path("/sys/fs/cgroup") / controller / cgroup_dir.lstrip("/") / name
            files[name] = path.read_text().split("\n")
        dev = sorted(
            (
                entry.name,
                oct(entry.stat(follow_symlinks=False).st_mode),
                entry.stat(follow_symlinks=False).st_rdev,
            )
            for entry in os.scandir(f"/proc/{pid}/root/dev")
        )
        limits = Path(f"/proc/{pid}/limits").read_text()
        return {"status": status, "mounts": mounts, "cgroup": groups, "files": files, "dev": dev,
                "limits": limits}  # fmt: skip
    finally:
        subprocess.run([runtime, "--root", str(state), "delete", "--force", cid],
                       capture_output=True, timeout=60, check=False)  # fmt: skip


def plain(doc: dict[str, Any]) -> None:
    pass


def restricted(doc: dict[str, Any]) -> None:
    """A non-root user with groups, a reduced capability set, limits, a device rule, a
    seccomp filter: the fields podman fills in, checked against runc."""
    p = doc["process"]
    p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10]}
    p["capabilities"] = {
        k: ["CAP_KILL", "CAP_NET_BIND_SERVICE"] for k in ("bounding", "effective", "permitted")
    }
    p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                    {"type": "RLIMIT_NPROC", "soft": 50, "hard": 60}]  # fmt: skip
    doc["linux"]["resources"] = {
        "memory": {"limit": 64 << 20},
        "pids": {"limit": 20},
        "cpu": {"quota": 50000, "period": 100000},
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
    }  # fmt: skip
    doc["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    doc["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}


@pytest.mark.parametrize("edit", [plain, restricted], ids=["runc-template", "restricted"])
def test_same_kernel_view_as_runc(
    make_bundle: MakeBundle, tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> None:
    bundle = make_bundle(["sleep", "1000"], edit)
    cid = f"cmp-{tmp_path.name[-20:]}-{int(time.time() * 1000) % 100000}"
    ours = observe(str(RUNTIME), tmp_path / "ds-state", bundle, cid)
    theirs = observe("runc", tmp_path / "runc-state", bundle, cid)
    assert ours["status"] == theirs["status"]
    assert ours["cgroup"] == theirs["cgroup"]
    assert ours["limits"] == theirs["limits"]
    assert ours["dev"] == theirs["dev"]
    assert ours["files"] == theirs["files"]
    assert ours["mounts"] == theirs["mounts"]
