"""Detached containers and their lifecycle, as root: run -d, ps, logs (docker's json-file
format), stop (SIGTERM, then SIGKILL after -t), start (the same writable layer), rm -f."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import dockscope, ok
from tests.support.runtime import (
    alive,
    checked_root,
    container_ids,
    groups_named,
    needs_root,
    ps,
    wait_until,
)

pytestmark = needs_root

# Appends to a file in the writable layer, so a restart shows the layer was kept; handles
# SIGTERM (PID 1 gets only the signals it handles).
SERVICE = (
    'echo run >> /runs; echo "runs: $(wc -l < /runs)"; echo oops >&2;'
    ' trap "echo term; exit 3" TERM; while :; do sleep 0.1; done'
)
DOCKER_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield from checked_root(tmp_path / "state")


def logs(root: Path, name: str) -> tuple[str, str]:
    result = dockscope(root, "logs", name)
    return result.out, result.err


def test_detached_container_lifecycle(root: Path, busybox_image: Path) -> None:
    container_id = ok(
        dockscope(root, "run", "-d", "--name", "web", busybox_image, "sh", "-c", SERVICE)
    )
    container_id = container_id.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", container_id)
    listed = ps(root)["web"]
    assert (listed["id"], listed["status"]) == (container_id, "running")
    assert alive(listed["pid"])
    table = ok(dockscope(root, "ps"))
    assert "web" in table and "Up " in table

    wait_until(lambda: "runs: 1" in logs(root, "web")[0], what="the first run's output")
    out, err = logs(root, "web")
    assert out == "runs: 1\n"
    assert err == "oops\n"
    log = root / "containers" / container_id / "container.log"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["stream"], r["log"]) for r in records] == [
        ("stdout", "runs: 1\n"),
        ("stderr", "oops\n"),
    ]
    assert all(
        set(r) == {"log", "stream", "time"} and DOCKER_TIME.match(r["time"]) for r in records
    )

    again = dockscope(root, "start", "web")
    assert again.code == 2 and "already running" in again.err

    started = time.monotonic()
    assert ok(dockscope(root, "stop", "-t", "10", "web")) == "web\n"
    assert time.monotonic() - started < 5  # SIGTERM was handled: no wait for SIGKILL
    stopped = ps(root)["web"]
    assert (stopped["status"], stopped["exit_code"], stopped["oom_killed"]) == ("exited", 3, False)
    assert not alive(listed["pid"])
    assert not groups_named([container_id])
    assert "term\n" in logs(root, "web")[0]
    assert "web" not in ok(dockscope(root, "ps"))  # exited containers need -a

    ok(dockscope(root, "start", "web"))  # the same container, the same writable layer
    wait_until(lambda: "runs: 2" in logs(root, "web")[0], what="the second run's output")
    assert logs(root, "web")[0] == "runs: 1\nterm\nruns: 2\n"
    restarted = ps(root)["web"]
    assert restarted["status"] == "running" and restarted["pid"] != listed["pid"]

    rm = dockscope(root, "rm", "web")
    assert rm.code == 2 and "stop it first" in rm.err
    assert ok(dockscope(root, "rm", "-f", "web")) == "web\n"
    assert container_ids(root) == []
    assert not alive(restarted["pid"])
    assert not groups_named([container_id])


def test_stop_sends_sigkill_after_the_timeout(root: Path, busybox_image: Path) -> None:
    ok(dockscope(root, "run", "-d", "--name", "sleeper", busybox_image, "sleep", "1000"))
    pid = ps(root)["sleeper"]["pid"]
    started = time.monotonic()
    ok(dockscope(root, "stop", "-t", "1", "sleeper"))  # sleep as PID 1 ignores SIGTERM
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 6
    stopped = ps(root)["sleeper"]
    assert (stopped["status"], stopped["exit_code"]) == ("exited", 137)
    assert not alive(pid)
    ok(dockscope(root, "rm", "sleeper"))


def test_detached_rm_removes_the_container_when_it_exits(root: Path, busybox_image: Path) -> None:
    ok(dockscope(root, "run", "-d", "--rm", busybox_image, "sh", "-c", "sleep 0.2"))
    wait_until(lambda: container_ids(root) == [], what="--rm to remove the container")


def test_foreground_rm(root: Path, busybox_image: Path) -> None:
    result = dockscope(root, "run", "--rm", busybox_image, "sh", "-c", "echo bye; exit 4")
    assert (result.code, result.out) == (4, "bye\n")
    assert container_ids(root) == []


def test_detached_setup_failure_is_reported(root: Path, busybox_image: Path) -> None:
    result = dockscope(root, "run", "-d", "-u", "nosuch", busybox_image, "id")
    assert result.code == 2
    assert "failed to start" in result.err and "unable to find user nosuch" in result.err
    assert "Traceback" not in result.err


def test_ps_json_of_an_exited_container(root: Path, busybox_image: Path) -> None:
    ok(dockscope(root, "run", "--name", "once", busybox_image, "true"))
    document = json.loads(ok(dockscope(root, "ps", "-a", "--json")))
    assert document["schema_version"] == 1 and document["kind"] == "ps"
    (container,) = document["containers"]
    assert container["name"] == "once"
    assert container["command"] == ["true"]
    assert (container["status"], container["exit_code"]) == ("exited", 0)
    assert json.loads(ok(dockscope(root, "ps", "--json")))["containers"] == []
