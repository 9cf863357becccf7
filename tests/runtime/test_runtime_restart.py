"""``--restart`` honoured by a detached container's supervisor, as root: on-failure[:N] and
always, docker's back-off, no restart after ``stop``, the count in ``ps``; the policy's rules
checked in process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspect_tool.errors import UsageError
from runtime_lab.spec import RestartPolicy
from tests.support.cli import dockscope, ok
from tests.support.runtime import checked_root, container_ids, events, needs_root, ps, wait_until


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield from checked_root(tmp_path / "state")


def test_restart_policies_as_docker_reads_them() -> None:
    never, always = RestartPolicy.parse("no"), RestartPolicy.parse("always")
    limited, unlimited = RestartPolicy.parse("on-failure:2"), RestartPolicy.parse("on-failure")
    assert not never.wants_restart(1, 0)
    assert always.wants_restart(0, 100)
    assert [limited.wants_restart(1, n) for n in range(3)] == [True, True, False]
    assert not limited.wants_restart(0, 0)  # success is not a failure
    assert unlimited.wants_restart(1, 1000)
    assert str(limited) == "on-failure:2" and str(unlimited) == "on-failure"
    for bad in ("sometimes", "always:3", "on-failure:x"):
        with pytest.raises(UsageError):
            RestartPolicy.parse(bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-d", "--rm", "--restart", "always"), "conflicting options: --restart and --rm"),
        (("--restart", "always"), "--restart needs -d"),
        (("-d", "--restart", "maybe"), "use no, always or on-failure"),
    ],
)
def test_restart_options_refused(
    tmp_path: Path, busybox_image: Path, args: tuple[str, ...], message: str
) -> None:
    root = tmp_path / "state"
    result = dockscope(root, "run", *args, busybox_image, "true")
    assert result.code == 2 and message in result.err
    assert container_ids(root) == []


class TestSupervisor:
    pytestmark = needs_root

    def test_on_failure_restarts_up_to_n_times(self, root: Path, busybox_image: Path) -> None:
        trace = root.parent / "restart.jsonl"
        ok(
            dockscope(
                root,
                *("run", "-d", "--name", "flaky", "--restart", "on-failure:2"),
                *("--trace-json", trace, busybox_image, "sh", "-c", "echo run; exit 3"),
            )
        )
        wait_until(
            lambda: (
                ps(root)["flaky"]["status"] == "exited" and ps(root)["flaky"]["restart_count"] == 2
            ),
            what="two restarts and the last exit",
        )
        time.sleep(0.5)  # no third one
        container = ps(root)["flaky"]
        assert (container["exit_code"], container["restart_count"]) == (3, 2)
        assert container["restart_policy"] == "on-failure:2"
        assert (
            dockscope(root, "logs", "flaky").out == "run\nrun\nrun\n"
        )  # one writable layer, one log
        restarts = [e for e in events(trace) if e["step"] == "restart"]
        assert [e["args"]["delay"] for e in restarts] == [0.1, 0.2]  # docker's back-off
        assert [e["evidence"]["restart_count"] for e in restarts] == [1, 2]
        table = ok(dockscope(root, "ps", "-a")).splitlines()
        header = table[0].split()
        row = next(line for line in table if "flaky" in line)
        assert "RESTARTS" in header and " 2 " in row
        ok(dockscope(root, "rm", "flaky"))

    def test_success_is_not_restarted_on_failure(self, root: Path, busybox_image: Path) -> None:
        ok(
            dockscope(
                root,
                "run",
                "-d",
                "--name",
                "fine",
                "--restart",
                "on-failure",
                busybox_image,
                "true",
            )
        )
        wait_until(lambda: ps(root)["fine"]["status"] == "exited", what="the exit")
        time.sleep(0.3)
        assert (ps(root)["fine"]["restart_count"], ps(root)["fine"]["status"]) == (0, "exited")
        ok(dockscope(root, "rm", "fine"))

    def test_always_until_stopped_by_hand(self, root: Path, busybox_image: Path) -> None:
        script = "echo run; sleep 1"  # each run lasts a second: restarts are countable
        ok(
            dockscope(
                root,
                "run",
                "-d",
                "--name",
                "loop",
                "--restart",
                "always",
                busybox_image,
                "sh",
                "-c",
                script,
            )
        )
        wait_until(lambda: ps(root)["loop"]["restart_count"] >= 2, what="two restarts")
        assert ps(root)["loop"]["status"] in ("running", "restarting")
        assert "loop" in ok(dockscope(root, "ps"))  # a restarting container is listed without -a
        ok(dockscope(root, "stop", "-t", "1", "loop"))
        stopped = ps(root)["loop"]
        assert stopped["status"] == "exited"
        time.sleep(0.6)  # longer than any delay so far: it would have started again
        assert ps(root)["loop"] == stopped
        began = time.monotonic()
        ok(dockscope(root, "start", "loop"))  # a start by hand: the policy applies again, from zero
        count = ps(root)["loop"]["restart_count"]
        # a run lasts a second, so no more restarts than whole seconds have passed since the
        # start (a loaded machine may take that long to answer ps): the count began at zero
        assert count <= max(1, int(time.monotonic() - began)), count
        ok(dockscope(root, "rm", "-f", "loop"))
        assert container_ids(root) == []
        document = json.loads(ok(dockscope(root, "ps", "-a", "--json")))
        assert document["containers"] == []
