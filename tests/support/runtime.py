"""Running ``dockscope run`` for real in tests (as root), and looking at the host around it.

Each test module keeps its containers in a state root of its own under pytest's tmp_path, so
everything a test leaves can be found: mounts that name the root, control groups named after
its containers, processes that carry a marker in their command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime_lab.kernel.cgroups import CGROUP_ROOT, own_cgroup_path
from tests.support.cli import DOCKSCOPE, dockscope, env_for, ok

ROOT_CAPABILITIES = "00000000a80425fb"  # docker's default set, as /proc/PID/status shows it

needs_root = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]


def wait_for_line(proc: subprocess.Popen[str], wanted: str, timeout: float = 30) -> None:
    """Read the process's stdout until a line equals ``wanted``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.rstrip("\n") == wanted:
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"never printed {wanted!r}: {err}")


def wait_until(predicate: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def step(found: list[dict[str, Any]], step_id: str) -> dict[str, Any]:
    """The one completed event of a step."""
    matching = [e for e in found if e["step"] == step_id and e["phase"] == "done"]
    assert len(matching) == 1, (step_id, matching)
    return matching[0]


def status_fields(text: str) -> dict[str, str]:
    """``Key:\\tvalue`` lines of /proc/PID/status."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    return fields


# -- the state root -------------------------------------------------------------------------


def container_ids(root: Path) -> list[str]:
    containers = root / "containers"
    return sorted(p.name for p in containers.iterdir()) if containers.is_dir() else []


def only_container(root: Path) -> str:
    ids = container_ids(root)
    assert len(ids) == 1, ids
    return ids[0]


def state(root: Path, container_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (root / "containers" / container_id / "state.json").read_text()
    )
    return data


def ps(root: Path) -> dict[str, dict[str, Any]]:
    """``dockscope ps -a --json``, by container name."""
    document = json.loads(ok(dockscope(root, "ps", "-a", "--json")))
    return {c["name"]: c for c in document["containers"]}


# -- the host -------------------------------------------------------------------------------


def mounts_naming(root: Path) -> list[str]:
    """Lines of this process's mountinfo that name anything below ``root``."""
    with open("/proc/self/mountinfo") as f:
        return [line for line in f.read().splitlines() if str(root) in line]


def hierarchies() -> list[Path]:
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]
    return [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]


def groups_named(ids: Iterable[str]) -> list[Path]:
    """Control groups, in any hierarchy, that dockscope made for these containers."""
    names = {i[:12] for i in ids}
    found = []
    for hierarchy in hierarchies():
        for parent in hierarchy.rglob("dockscope"):
            found += [p for p in parent.iterdir() if p.is_dir() and p.name in names]
    return sorted(found)


def my_groups() -> set[str]:
    """Container groups below this process's own group: on v1 the memory hierarchy nests
    them there, so other people's containers on the same machine are not counted."""
    memory = CGROUP_ROOT / "memory"
    if memory.is_dir():
        parent = memory / own_cgroup_path("memory").lstrip("/") / "dockscope"
    else:
        parent = CGROUP_ROOT / "dockscope"
    return {p.name for p in parent.iterdir() if p.is_dir()} if parent.is_dir() else set()


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and entry.name != str(os.getpid()):
            found.append(int(entry.name))
    return found


def pid_namespace(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/pid").st_ino


def namespace_members(inode: int) -> list[int]:
    """Live processes in the PID namespace with this inode (as the host numbers them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "pid").st_ino == inode and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def alive(pid: int) -> bool:
    """Running (a zombie is dead, only not yet collected)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rpartition(")")[2].split()[0] not in ("Z", "X")


@dataclass
class Host:
    """What a test must leave as it found it."""

    mounts: list[str]
    groups: set[str]

    @classmethod
    def take(cls, root: Path) -> Host:
        return cls(mounts_naming(root), my_groups())

    def assert_unchanged(self, root: Path) -> None:
        assert mounts_naming(root) == self.mounts
        assert my_groups() == self.groups
        assert not groups_named(container_ids(root))


def checked_root(path: Path) -> Iterator[Path]:
    """A state root for a test (a fixture body): the host must be as before afterwards;
    whatever a failed test left is removed all the same, so one failure does not cascade."""
    before = Host.take(path)
    try:
        yield path
        before.assert_unchanged(path)
    finally:
        leftover = container_ids(path)
        groups = groups_named(leftover)
        for container_id in leftover:
            dockscope(path, "rm", "-f", container_id)
        if groups:
            dockscope(path, "cleanup")


def detached(root: Path, name: str, *run_args: str | Path) -> Iterator[dict[str, Any]]:
    """A container the tests of a module share (a fixture body): ``run -d --name NAME
    RUN_ARGS``, its ps entry while they run, then ``rm -f``."""
    ok(dockscope(root, "run", "-d", "--name", name, *run_args))
    yield ps(root)[name]
    ok(dockscope(root, "rm", "-f", name))


# -- a terminal ---------------------------------------------------------------------------------


class PtySession:
    """A command run on a new pseudo-terminal, driven as a person at a terminal would: it is
    the session leader with the terminal as its controlling terminal (the pty module), and the
    test reads the screen's bytes, types, resizes the window and looks at the line discipline's
    settings (termios on the master reports the terminal's)."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 24, columns: int = 80):
        import pty

        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the terminal is its stdin, stdout and stderr
            try:
                self._set_size(0, rows, columns)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.seen = b""  # everything read so far
        self._unread = b""
        self.code: int | None = None

    @staticmethod
    def _set_size(fd: int, rows: int, columns: int) -> None:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def resize(self, rows: int, columns: int) -> None:
        """The window changes size: the kernel sends SIGWINCH to the foreground group."""
        self._set_size(self.fd, rows, columns)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def _fill(self, deadline: float) -> bool:
        import select

        ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: every process holding the terminal has gone
            chunk = b""
        if not chunk:
            return False
        self.seen += chunk
        self._unread += chunk
        return True

    def expect(self, wanted: bytes, timeout: float = 15) -> bytes:
        """Read until ``wanted`` appears; return what came up to and including it."""
        deadline = time.monotonic() + timeout
        while wanted not in self._unread:
            if not self._fill(deadline):
                raise AssertionError(f"never saw {wanted!r}; the screen so far: {self.seen!r}")
        end = self._unread.index(wanted) + len(wanted)
        found, self._unread = self._unread[:end], self._unread[end:]
        return found

    def local_mode(self) -> int:
        """The terminal's c_lflag (ICANON, ECHO, ISIG…)."""
        import termios

        return int(termios.tcgetattr(self.fd)[3])

    def wait(self, timeout: float = 20) -> int:
        """Read the rest of the output and wait for the command's exit status."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
                return self.code
            time.sleep(0.02)
        raise AssertionError(f"still running; the screen so far: {self.seen!r}")

    def close(self) -> None:
        if self.code is None:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self.fd)


def pty_session(root: Path, *args: str | Path, rows: int = 24, columns: int = 80) -> PtySession:
    """``dockscope ARGS`` on a new terminal of ROWS x COLUMNS."""
    return PtySession([*DOCKSCOPE, *map(str, args)], env_for(root), rows, columns)
