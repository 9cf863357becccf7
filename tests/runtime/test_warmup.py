"""The kernel's wait before a cgroup attach, taken early (runtime_lab/kernel/warmup.py): which
file it writes, what it writes, and that it stops. Its effect on a run's time is measured by
benchmarks/bench_runtime.py, not here; its evidence in a real run's trace is checked by
tests/runtime/test_runtime.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime_lab.kernel import warmup

V1_SELF = "12:pids:/ci/job\n4:memory,memsw:/ci/mem\n3:cpu,cpuacct:/\n0::/\n"


def hierarchy(tmp_path: Path, *controllers: str, v2: bool = False) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    root.mkdir()
    for controller in controllers:
        (root / controller).mkdir()
    if v2:
        (root / "cgroup.controllers").write_text("cpu memory pids\n")
    return root, tmp_path / "self-cgroup"


def test_v1_writes_to_its_own_pids_group(tmp_path: Path) -> None:
    root, self_file = hierarchy(tmp_path, "memory", "pids", "cpu")
    self_file.write_text(V1_SELF)
    assert warmup.procs_file(str(root), str(self_file)) == str(root / "pids/ci/job/cgroup.procs")


def test_v1_without_pids_takes_the_next_controller_mounted(tmp_path: Path) -> None:
    root, self_file = hierarchy(tmp_path, "memory", "cpu")
    self_file.write_text(V1_SELF)
    assert warmup.procs_file(str(root), str(self_file)) == str(root / "memory/ci/mem/cgroup.procs")


def test_v2_writes_to_its_own_unified_group(tmp_path: Path) -> None:
    root, self_file = hierarchy(tmp_path, v2=True)
    self_file.write_text("0::/user.slice/session-3.scope\n")
    expected = root / "user.slice/session-3.scope/cgroup.procs"
    assert warmup.procs_file(str(root), str(self_file)) == str(expected)


@pytest.mark.parametrize("text", ["", "not a cgroup line\n"])
def test_no_hierarchy_or_an_unreadable_self_is_none(tmp_path: Path, text: str) -> None:
    root, self_file = hierarchy(tmp_path, "pids")
    self_file.write_text(text)
    assert warmup.procs_file(str(root), str(self_file)) is None
    assert warmup.procs_file(str(root), str(tmp_path / "missing")) is None


def test_it_writes_this_process_pid_until_stopped(tmp_path: Path) -> None:
    target = tmp_path / "cgroup.procs"
    target.write_text("")
    running = warmup.AttachWarmup(str(target), "the start began")
    evidence = running.stop()
    assert evidence["file"] == str(target) and evidence["since"] == "the start began"
    assert evidence["value"] == str(os.getpid()) == target.read_text()
    assert evidence["writes"] >= 1 and "refused" not in evidence and "expired" not in evidence
    assert not running._thread.is_alive()


def test_it_stops_by_itself_when_no_attach_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cgroup.procs"
    target.write_text("")
    monkeypatch.setattr(warmup, "LIFETIME", 0.02)
    running = warmup.AttachWarmup(str(target))
    running._thread.join(timeout=10)
    assert not running._thread.is_alive()
    evidence = running.stop()
    assert evidence["writes"] >= 2 and "expired" in evidence


def test_a_refused_write_ends_it_and_is_recorded(tmp_path: Path) -> None:
    evidence = warmup.AttachWarmup(str(tmp_path / "no-such-group" / "cgroup.procs")).stop()
    assert evidence["writes"] == 0
    assert evidence["refused"] == "No such file or directory"


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="its own group's cgroup.procs needs root")
def test_begin_writes_into_its_own_group_and_moves_nothing() -> None:
    before = Path("/proc/self/cgroup").read_text()
    first = warmup.begin()
    try:
        assert first is not None and warmup.begin() is first  # once per process
        assert first.path == warmup.procs_file()
    finally:
        evidence = warmup.end()
    assert evidence is not None and evidence["writes"] >= 1 and "refused" not in evidence
    assert warmup.end() is None
    assert Path("/proc/self/cgroup").read_text() == before
