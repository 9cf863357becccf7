"""Rootless without root: the maps planned from /etc/subuid and /etc/subgid, the plan of a
rootless run, and how the trace tells the maps (tests/runtime/test_rootless.py runs them for
real, as a user the test creates)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime_lab.kernel import userns
from runtime_lab.trace.events import Event
from runtime_lab.trace.narrate import _evidence_lines
from runtime_lab.trace.steps import plan


def _files(tmp_path: Path, subuid: str, subgid: str) -> tuple[str, str]:
    (tmp_path / "subuid").write_text(subuid)
    (tmp_path / "subgid").write_text(subgid)
    return str(tmp_path / "subuid"), str(tmp_path / "subgid")


def test_ranges_by_name_or_by_uid_and_nothing_else(tmp_path: Path) -> None:
    path, _ = _files(
        tmp_path,
        "alice:100000:65536\n"
        "1001:300000:1000\n"
        "bob:200000:65536\n"
        "alice:notanumber:5\n"
        "alice:400000:0\n"
        "alice:500000\n"
        "# alice:600000:10\n",
        "",
    )
    assert userns.subordinate_ranges(path, "alice", 1001) == [(100000, 65536), (300000, 1000)]
    assert userns.subordinate_ranges(path, "carol", 1002) == []
    assert userns.subordinate_ranges(str(tmp_path / "missing"), "alice", 1001) == []


def test_subid_map_needs_both_ranges_and_the_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subuid, subgid = _files(tmp_path, "1001:100000:65536\n", "1001:200000:65536\n")
    monkeypatch.setattr(userns, "SUBUID", subuid)
    monkeypatch.setattr(userns, "SUBGID", subgid)
    monkeypatch.setattr(userns.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    planned = userns.plan_maps(1001, 1002)
    assert planned.mode == "subid"
    assert [r.line() for r in planned.uid_map] == ["0 1001 1", "1 100000 65536"]
    assert [r.line() for r in planned.gid_map] == ["0 1002 1", "1 200000 65536"]
    assert planned.maps_id(1000) and not planned.maps_id(65537)

    monkeypatch.setattr(userns.shutil, "which", lambda tool: None)
    without_helpers = userns.plan_maps(1001, 1002)
    assert without_helpers.mode == "single"
    assert "newuidmap/newgidmap are not installed" in without_helpers.reason
    assert [r.line() for r in without_helpers.uid_map] == ["0 1001 1"]
    assert not without_helpers.maps_id(1000)

    monkeypatch.setattr(userns.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    Path(subgid).write_text("someone:200000:65536\n")
    no_gids = userns.plan_maps(1001, 1002)
    assert no_gids.mode == "single"
    assert no_gids.reason.endswith(f"in {subgid}: only the user's own ids are mapped")


def test_the_maps_are_read_back_from_proc() -> None:
    maps = userns.read_maps()
    assert set(maps) >= {"uid_map", "gid_map"}
    rows = [row.split() for row in maps["uid_map"].splitlines()]
    assert all(len(row) == 3 for row in rows)
    if not userns.in_own_namespace() and os.geteuid() == 0:
        assert ["0", "0", "4294967295"] in rows  # the host's own namespace: everything


def test_a_rootless_plan_has_a_user_namespace_and_no_control_group() -> None:
    ids = [s.id for s in plan(network="none", limits=True, rootfs_mode="overlay", rootless=True)]
    assert ids[0] == "userns"
    assert "cgroup-none" in ids
    assert not {"cgroup-create", "cgroup-limits", "cgroup-devices", "cgroup-attach"} & set(ids)
    assert "cgroup-release" not in ids and "seccomp-denied" not in ids
    rooted = [s.id for s in plan(network="none", limits=True, rootfs_mode="overlay")]
    assert "userns" not in rooted and "cgroup-none" not in rooted and "cgroup-create" in rooted


def test_the_trace_shows_the_maps_as_written_and_as_read() -> None:
    event = Event(
        step="userns",
        title="Enter a user namespace (rootless)",
        explanation="",
        syscall="unshare/newuidmap",
        evidence={
            "commands": ["newuidmap 42 0 1001 1 1 100000 65536"],
            "uid_map": "         0       1001          1\n         1     100000      65536\n",
            "setgroups": "allow\n",
            "mode": "subid",
            "not_available": ["control groups"],
        },
    )
    lines = _evidence_lines(event)
    assert "$ newuidmap 42 0 1001 1 1 100000 65536" in lines
    assert "/proc/self/uid_map: 0 1001 1" in lines
    assert "/proc/self/uid_map: 1 100000 65536" in lines
    assert "setgroups: allow" in lines and "mode: subid" in lines
    assert "not available: control groups" in lines
