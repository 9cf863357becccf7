"""``dockscope exec``, as root: setns into each namespace of a running container (traced),
its control group, the container's user, environment and working directory, docker's
capabilities; the new process is not PID 1; -i and -it (driven through a pseudo-terminal)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import dockscope, ok
from tests.support.runtime import (
    ROOT_CAPABILITIES,
    detached,
    events,
    needs_root,
    ps,
    pty_session,
    status_fields,
    step,
)

pytestmark = needs_root


@pytest.fixture(scope="module")
def box(root: Path, busybox_image: Path) -> Iterator[dict[str, object]]:
    """A running container: PID 1 is a sleep; -e and -h as a student would give them."""
    yield from detached(
        root,
        "box",
        *("--hostname", "boxhost", "-e", "GREETING=hi", "--memory", "64m"),
        *(busybox_image, "sleep", "1000"),
    )


def test_exec_joins_the_namespaces_and_the_control_group(
    root: Path, box: dict[str, object]
) -> None:
    trace = root.parent / "exec.jsonl"
    script = "echo $$; hostname; cat /proc/1/cmdline; echo; cat /proc/self/cgroup /proc/1/cgroup"
    out = ok(dockscope(root, "exec", "--trace-json", trace, "box", "sh", "-c", script))
    pid, hostname, pid1, *cgroups = out.splitlines()
    assert int(pid) > 1  # PID 1 is still the container's command
    assert hostname == "boxhost"
    assert pid1 == "sleep\x001000\x00"
    half = len(cgroups) // 2
    assert cgroups[:half] == cgroups[half:]  # the same groups, seen through the same namespace

    found = events(trace)
    joined = [e for e in found if e["step"] == "setns"]
    assert [e["args"]["namespace"] for e in joined] == ["ipc", "uts", "net", "pid", "cgroup", "mnt"]
    target = box["pid"]
    for event in joined:
        kind = event["args"]["namespace"]
        assert event["args"]["path"] == f"/proc/{target}/ns/{kind}"
        assert event["evidence"]["container"] == os.stat(f"/proc/{target}/ns/{kind}").st_ino
        assert event["evidence"]["before"] == os.stat(f"/proc/self/ns/{kind}").st_ino
    written = step(found, "cgroup-join")["evidence"]["written"]
    assert {Path(w["file"]).parent.name for w in written} == {str(box["id"])[:12]}
    assert step(found, "exec-command")["evidence"]["container_pid"] == int(pid)
    assert step(found, "exec-exit")["evidence"]["exit_code"] == 0
    done = [e["step"] for e in found if e["phase"] == "done"]
    assert done.index("fork-exec") > done.index("setns") and done[-1] == "exec-exit"


def test_exec_has_the_containers_privileges_user_and_environment(
    root: Path, box: dict[str, object]
) -> None:
    fields = status_fields(ok(dockscope(root, "exec", "box", "cat", "/proc/self/status")))
    assert fields["CapEff"] == fields["CapBnd"] == ROOT_CAPABILITIES
    assert fields["NoNewPrivs"] == "1"
    script = "id -u; pwd; echo $GREETING $EXTRA $HOSTNAME $HOME"
    options = ("-u", "nobody", "-w", "/tmp", "-e", "EXTRA=1")
    out = ok(dockscope(root, "exec", *options, "box", "sh", "-c", script))
    assert out.splitlines() == ["65534", "/tmp", "hi 1 boxhost /home"]


def test_exec_exit_status_and_failures(root: Path, box: dict[str, object]) -> None:
    assert dockscope(root, "exec", "box", "sh", "-c", "exit 4").code == 4
    missing = dockscope(root, "exec", "box", "nosuch")
    assert missing.code == 127 and "nosuch" in missing.err
    nowhere = dockscope(root, "exec", "-w", "/nonexistent", "box", "true")
    assert nowhere.code == 126
    assert "chdir /nonexistent: No such file or directory" in nowhere.err
    nobody = dockscope(root, "exec", "-u", "nosuch", "box", "true")
    assert nobody.code == 126 and "unable to find user nosuch" in nobody.err


def test_exec_interactive(root: Path, box: dict[str, object]) -> None:
    assert ok(dockscope(root, "exec", "-i", "box", "cat", input="typed\n")) == "typed\n"
    assert ok(dockscope(root, "exec", "box", "cat", input="typed\n")) == ""  # no -i: stdin closed


def test_exec_interactive_terminal(root: Path, box: dict[str, object]) -> None:
    session = pty_session(root, "exec", "-it", "box", "sh", rows=30, columns=90)
    try:
        cooked = session.local_mode()
        session.expect(b"# ")
        session.send(b"tty; stty size; echo pid=$$ m$((1))\n")
        screen = session.expect(b"m1\r\n").decode()
        assert "/dev/pts/0\r\n30 90\r\n" in screen
        assert "pid=1 " not in screen
        session.send(b"exit 5\n")
        assert session.wait() == 5
        assert session.local_mode() == cooked
    finally:
        session.close()
    assert ps(root)["box"]["status"] == "running"  # the container runs on


def test_exec_into_a_stopped_container_is_refused(root: Path, busybox_image: Path) -> None:
    ok(dockscope(root, "run", "--name", "done", busybox_image, "true"))
    result = dockscope(root, "exec", "done", "true")
    assert result.code == 2 and "is not running" in result.err
    ok(dockscope(root, "rm", "done"))
