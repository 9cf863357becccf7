"""Faults, as root: Ctrl-C, ``kill -9`` of dockscope itself, a crashing command, a bad image,
a full disk. After each: the host's mountinfo and control groups as before, no process left.

Processes of a test carry a marker (an unusual ``sleep`` argument) so that they can be found on
the host whatever their PIDs; mounts are found by the test's state root in mountinfo.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_lab.kernel import linux
from tests.support.cli import dockscope, ok, popen
from tests.support.runtime import (
    Host,
    alive,
    checked_root,
    container_ids,
    groups_named,
    mounts_naming,
    namespace_members,
    needs_root,
    only_container,
    pid_namespace,
    processes_with,
    ps,
    state,
    wait_for_line,
    wait_until,
)

pytestmark = needs_root


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield from checked_root(tmp_path / "state")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs: a disk that fills up."""
    path.mkdir()
    linux.mount("tmpfs", str(path), "tmpfs", 0, f"size={size},mode=0755")
    try:
        yield path
    finally:
        linux.umount2(str(path), linux.MNT_DETACH)


def fill(directory: Path) -> None:
    """Write until the file system is full."""
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def one_line_error(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dockscope: ") and "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# -- signals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_to_dockscope_are_forwarded_to_pid_1(
    root: Path, busybox_image: Path, signum: signal.Signals
) -> None:
    """Ctrl-C (and kill, and a closed terminal) reach the container's PID 1."""
    name = signum.name[3:]
    script = f'trap "echo got-{name}; exit 42" {name}; echo ready; while :; do sleep 0.1; done'
    proc = popen(root, "run", busybox_image, "sh", "-c", script)
    wait_for_line(proc, "ready")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 42, err
    assert f"got-{name}" in out
    container = state(root, only_container(root))
    assert (container["status"], container["exit_code"]) == ("exited", 42)


def test_second_ctrl_c_kills_a_pid_1_that_ignores_the_first(
    root: Path, busybox_image: Path
) -> None:
    proc = popen(root, "run", busybox_image, "sleep", "1000")
    try:
        wait_until(lambda: running_command(root) == b"sleep\x001000\x00", what="sleep as PID 1")
        proc.send_signal(signal.SIGINT)  # sleep has no handler: for PID 1 the kernel drops it
        time.sleep(0.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)  # as docker run's second Ctrl-C: SIGKILL
        proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 137


def running_command(root: Path) -> bytes:
    """The command line of the running container's PID 1, once it runs its command."""
    ids = container_ids(root)
    if len(ids) != 1:
        return b""
    try:
        pid = state(root, ids[0])["pid"]
        return Path(f"/proc/{pid}/cmdline").read_bytes() if pid else b""
    except (OSError, ValueError):
        return b""


def test_kill_9_of_dockscope_leaves_nothing_running(root: Path, busybox_image: Path) -> None:
    before = Host.take(root)
    script = "sleep 1000 & sleep 1000 & echo ready; wait"
    proc = popen(root, "run", "--memory", "64m", busybox_image, "sh", "-c", script)
    try:
        wait_for_line(proc, "ready")
        container_id = only_container(root)
        recorded = state(root, container_id)
        assert recorded["status"] == "running"
        namespace = pid_namespace(recorded["pid"])
        wait_until(lambda: len(namespace_members(namespace)) == 3, what="sh and two sleeps")
        assert not mounts_naming(root)  # the container's mounts are in its own namespace
    finally:
        proc.kill()  # SIGKILL: dockscope gets no chance to clean up
        proc.communicate(timeout=15)
    # the shim dies with dockscope (parent-death signal), PID 1 with the shim, and with PID 1
    # the kernel kills every process of the namespace
    wait_until(lambda: not namespace_members(namespace), what="the container to die")
    assert not alive(recorded["pid"]) and not alive(recorded["shim_pid"])
    assert mounts_naming(root) == before.mounts  # they went with the mount namespace
    leftover = groups_named([container_id])
    assert leftover, "the empty control group stays until cleanup"
    assert all((group / "cgroup.procs").read_text() == "" for group in leftover)

    report = ok(dockscope(root, "cleanup"))
    assert f"container {container_id[:12]}: marked exited" in report
    assert report.count(": removed") == len(leftover)
    assert not groups_named([container_id])
    container = ps(root)[f"dockscope-{container_id[:8]}"]
    assert (container["status"], container["exit_code"]) == ("exited", -1)
    assert ok(dockscope(root, "cleanup")).strip() == "nothing to clean up"
    ok(dockscope(root, "rm", container_id))


def test_rm_after_kill_9_removes_the_leftover_group(root: Path, busybox_image: Path) -> None:
    proc = popen(root, "run", busybox_image, "sh", "-c", "echo ready; sleep 1000")
    try:
        wait_for_line(proc, "ready")
    finally:
        proc.kill()
        proc.communicate(timeout=15)
    container_id = only_container(root)
    wait_until(lambda: not alive(state(root, container_id)["pid"]), what="PID 1 to die")
    assert groups_named([container_id])
    ok(dockscope(root, "rm", container_id))  # no cleanup first
    assert not groups_named([container_id])


def test_cleanup_leaves_other_state_roots_alone(
    root: Path, tmp_path: Path, busybox_image: Path
) -> None:
    ok(dockscope(root, "run", "-d", "--name", "other", busybox_image, "sleep", "1000"))
    running = ps(root)["other"]
    report = ok(dockscope(tmp_path / "elsewhere", "cleanup"))
    assert report.strip() == "nothing to clean up"
    assert alive(running["pid"])
    assert groups_named([running["id"]])
    ok(dockscope(root, "rm", "-f", "other"))


def test_crash_passes_the_signal_through(root: Path, busybox_image: Path) -> None:
    """A real fault kills even PID 1: 128 + SIGSEGV."""
    result = dockscope(
        root, "run", "--rm", busybox_image, "sh", "-c", "ulimit -s 8192; f() { f; }; f"
    )
    assert result.code == 128 + signal.SIGSEGV == 139


# -- bad input ----------------------------------------------------------------------------------


def test_bad_image_creates_nothing(root: Path, tmp_path: Path, busybox_image: Path) -> None:
    garbage = tmp_path / "garbage.tar"
    garbage.write_text("not an image\n")
    result = dockscope(root, "run", garbage, "true")
    assert result.code == 3
    one_line_error(result.err, "garbage.tar", "not an image")
    assert not root.exists()

    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(busybox_image.read_bytes()[:200_000])
    result = dockscope(root, "run", truncated, "true")
    assert result.code == 3
    one_line_error(result.err, "truncated.tar")
    assert container_ids(root) == []
    layers = root / "layers"
    assert not layers.exists() or not list(layers.iterdir())

    result = dockscope(root, "run", tmp_path / "missing.tar", "true")
    assert result.code == 3
    assert container_ids(root) == []


def test_layer_that_does_not_match_its_diff_id_is_not_stored(
    root: Path, tmp_path: Path, busybox_image: Path
) -> None:
    data = bytearray(busybox_image.read_bytes())
    offset = data.index(b"root:x:0:0:root:/root:/bin/sh")
    data[offset : offset + 4] = b"ROOT"  # inside the layer: its diff_id no longer matches
    tampered = tmp_path / "tampered.tar"
    tampered.write_bytes(bytes(data))
    result = dockscope(root, "run", tampered, "true")
    assert result.code == 3
    assert "diff" in result.err.lower() or "digest" in result.err.lower()
    assert container_ids(root) == []
    assert list((root / "layers").iterdir()) == []  # no half-unpacked layer


# -- a full disk --------------------------------------------------------------------------------


def test_full_disk_while_unpacking(tmp_path: Path, busybox_image: Path) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        root = disk / "state"
        before = Host.take(root)
        result = dockscope(root, "run", busybox_image, "true")
        assert result.code == 2
        one_line_error(result.err, "No space left on device")
        assert container_ids(root) == []
        assert list((root / "layers").iterdir()) == []  # the partial layer was removed
        before.assert_unchanged(root)


def test_full_disk_while_creating_the_container(tmp_path: Path, busybox_image: Path) -> None:
    with tmpfs(tmp_path / "disk", "4m") as disk:
        root = disk / "state"
        before = Host.take(root)
        ok(dockscope(root, "run", "--rm", busybox_image, "true"))  # the layer is stored
        fill(disk)
        result = dockscope(root, "run", busybox_image, "true")
        assert result.code == 3
        one_line_error(result.err, "cannot create the container", "No space left on device")
        assert container_ids(root) == []
        assert not list(root.rglob("*.tmp"))
        before.assert_unchanged(root)


def test_container_that_fills_the_disk(tmp_path: Path, busybox_image: Path) -> None:
    with tmpfs(tmp_path / "disk", "4m") as disk:
        root = disk / "state"
        before = Host.take(root)
        script = "dd if=/dev/zero of=/big bs=64k count=200 2>/dev/null; echo dd=$?"
        result = dockscope(root, "run", busybox_image, "sh", "-c", script)
        assert "dd=1" in result.out  # the container saw ENOSPC like any program
        # its exit could not be recorded either: said so, after cleaning up
        assert result.code == 3
        assert "could not be saved" in result.err and "Traceback" not in result.err
        container_id = only_container(root)
        assert not groups_named([container_id])
        before.assert_unchanged(root)
        (root / "containers" / container_id / "upper" / "big").unlink()
        (container,) = ps(root).values()  # readable again; the exit is known to be lost
        assert container["status"] == "exited"
        ok(dockscope(root, "rm", container_id))


def test_trace_file_on_a_full_disk_stops_the_container(
    root: Path, tmp_path: Path, busybox_image: Path
) -> None:
    marker = "1234.75"
    with tmpfs(tmp_path / "tracedisk", "8k") as disk:
        trace = disk / "trace.jsonl"
        started = time.monotonic()
        # --net none: 8k of trace is filled after fork-shim (the bridge's steps say more)
        run = ("run", "--net", "none", "--trace-json", trace, busybox_image, "sleep", marker)
        result = dockscope(root, *run)
        assert time.monotonic() - started < 20
        assert result.code == 2
        one_line_error(result.err, "cannot write the trace", "No space left on device")
        complete = trace.read_text().rpartition("\n")[0]  # the last line is cut short
        written = [json.loads(line) for line in complete.splitlines()]
        assert any(e["step"] == "fork-shim" for e in written)  # it failed mid-run
    assert not processes_with(f"sleep {marker}")  # killed, not left running unwatched
    container_id = only_container(root)
    assert state(root, container_id)["status"] == "exited"
    assert not groups_named([container_id])
    ok(dockscope(root, "rm", container_id))


def test_cleanup_removes_half_unpacked_layers(root: Path, busybox_image: Path) -> None:
    ok(dockscope(root, "run", "--rm", busybox_image, "true"))
    partial = root / "layers" / ".tmp-0123456789abcdef-00000000"
    (partial / "etc").mkdir(parents=True)
    report = ok(dockscope(root, "cleanup"))
    assert "removed half-unpacked .tmp-0123456789abcdef-00000000" in report
    assert not partial.exists()
    assert os.listdir(root / "containers") == []


def test_an_exit_being_recorded_is_not_taken_for_one_nobody_saw(tmp_path: Path) -> None:
    """The shim is gone and its reaper has not written the exit code yet (it tears the network
    down first): a reader meanwhile (wait, ps) sees the container still running, not exited
    with -1; once no process is left to record it, the exit is corrected to -1."""
    import subprocess

    from runtime_lab.lifecycle.state import refresh
    from runtime_lab.storage.store import ContainerState, Store

    store = Store(tmp_path / "state")
    store.container_dir("c1").mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    recorder = subprocess.Popen(["sleep", "30"])
    try:
        running = ContainerState(status="running", shim_pid=gone.pid, recorder_pid=recorder.pid)
        store.save_state("c1", running)
        seen = refresh(store, "c1")
        assert (seen.status, seen.exit_code) == ("running", None)
    finally:
        recorder.kill()
        recorder.wait()
    seen = refresh(store, "c1")
    assert (seen.status, seen.exit_code) == ("exited", -1)
    assert store.load_state("c1").exit_code == -1
