"""Shared namespaces, as a pause container holds a pod's network, as root: a holder and two
containers joining its network (and IPC) namespace with setns instead of unshare (the lab
recipe of docs/RUNTIME.md), a shared PID namespace, and what is refused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import dockscope, ok
from tests.support.runtime import (
    detached,
    events,
    needs_root,
    processes_with,
    ps,
    step,
    wait_until,
)

pytestmark = needs_root

SERVER = "echo hello from web > /tmp/index.html; exec httpd -f -p 127.0.0.1:8080 -h /tmp"


@pytest.fixture(scope="module")
def pod(root: Path, busybox_image: Path) -> Iterator[dict[str, object]]:
    """The holder: a process that only keeps the namespaces alive (a pause container)."""
    yield from detached(root, "pod", "--hostname", "podhost", busybox_image, "sleep", "100000")


def test_two_containers_share_the_holders_network(
    root: Path, busybox_image: Path, pod: dict[str, object]
) -> None:
    trace = root.parent / "web.jsonl"
    ok(
        dockscope(
            root,
            *("run", "-d", "--name", "web", "--net", "container:pod", "--ipc", "container:pod"),
            *("--trace-json", trace, busybox_image, "sh", "-c", SERVER),
        )
    )
    script = "hostname; wget -qO- http://127.0.0.1:8080/; cat /proc/net/dev"
    client = dockscope(
        root, "run", "--rm", "--net", "container:pod", busybox_image, "sh", "-c", script
    )
    lines = ok(client).splitlines()
    assert lines[:2] == ["podhost", "hello from web"]  # the holder's hostname, web's server
    # the holder's interfaces: lo, and eth0 on the bridge (the default network)
    assert [line.split(":")[0].strip() for line in lines[4:]] == ["lo", "eth0"]
    outside = dockscope(
        root, "run", "--rm", busybox_image, "wget", "-qO-", "http://127.0.0.1:8080/"
    )
    assert outside.code != 0  # a container of its own network has no such server

    found = events(trace)
    joined = {e["args"]["namespace"]: e for e in found if e["step"] == "setns"}
    assert set(joined) == {"net", "ipc"}
    holder = pod["pid"]
    for kind, event in joined.items():
        assert event["syscall"] == "setns"
        assert event["args"]["path"] == f"/proc/{holder}/ns/{kind}"
        assert event["evidence"]["container"] == os.stat(f"/proc/{holder}/ns/{kind}").st_ino
    flags = step(found, "unshare")["args"]["flags"]
    assert "CLONE_NEWNET" not in flags and "CLONE_NEWIPC" not in flags
    assert "CLONE_NEWPID" in flags and "CLONE_NEWNS" in flags
    assert not [e for e in found if e["step"] == "loopback"]  # the holder's lo is up already
    done = [e["step"] for e in found if e["phase"] == "done"]
    assert done.index("setns") < done.index("unshare")
    ok(dockscope(root, "rm", "-f", "web"))


def test_a_shared_pid_namespace(root: Path, busybox_image: Path, pod: dict[str, object]) -> None:
    marker = "1234.5"  # the background sleep of the joined container
    trace = root.parent / "joined.jsonl"
    script = f"sleep {marker} & echo $$; ps -o pid,args"
    result = dockscope(
        root,
        *("run", "--name", "joined", "--pid", "container:pod", "--trace-json", trace),
        *(busybox_image, "sh", "-c", script),
    )
    pid, _, *table = ok(result).splitlines()
    assert int(pid) > 1  # PID 1 is the holder's
    assert table[0].split(None, 1) == ["1", "sleep 100000"]
    found = events(trace)
    assert step(found, "fork-init")["evidence"]["container_pid"] == int(pid)
    # its main process ended: what it left in the shared namespace is killed, as runc does
    # (the holder's PID 1 would otherwise inherit it), and its control group is gone
    assert len(step(found, "cleanup")["evidence"]["killed"]) == 1
    wait_until(lambda: not processes_with(f"sleep {marker}"), what="the leftover sleep to go")
    assert ps(root)["pod"]["status"] == "running"
    ok(dockscope(root, "rm", "joined"))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--net", "container:nosuch"), 2, "no such container: nosuch"),
        (("--net", "container:pod", "--hostname", "x"), 2, "conflicting options: --hostname"),
        (("--pid", "shared"), 2, "--pid shared: use private, host or container:NAME"),
        (
            ("--ipc", "container:stopped"),
            3,
            "ipc namespace of container stopped: it is not running",
        ),
    ],
)
def test_joining_refused(
    root: Path,
    busybox_image: Path,
    pod: dict[str, object],
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    if "container:stopped" in args and "stopped" not in ps(root):
        ok(dockscope(root, "run", "--name", "stopped", busybox_image, "true"))
    before = set(ps(root))
    result = dockscope(root, "run", "--rm", *args, busybox_image, "true")
    assert result.code == code, result.err
    assert message in result.err
    assert set(ps(root)) == before  # --rm: nothing kept, even when it could not start
