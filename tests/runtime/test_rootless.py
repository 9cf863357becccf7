"""Rootless: the real ``dockscope`` command run by an ordinary user that the test creates
(useradd, with a home and /etc/subuid and /etc/subgid ranges; a second one without ranges for
the single-ID map), against the busybox image. The set-up needs root (useradd) and is undone
after (userdel -r); everything the user's containers make must stay in the user's own
directories: nothing under /var/lib/dockscope, no control group, no mount left.

The command is started with ``setpriv --reuid --regid --init-groups`` and Debian's
``/usr/bin/python3`` (the test's own interpreter may sit where the user cannot read), with
this checkout and its virtualenv's site-packages on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import site
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.runtime import PtySession, mounts_naming

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
LAUNCHER = (
    "import sys; sys.path[:0] = {paths!r}; from inspect_tool.cli import app; "
    "app(args=sys.argv[1:], prog_name='dockscope')"
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="the set-up creates a user (useradd): run the tests as root"
    ),
]


def _system_python_problem() -> str | None:
    if not SYSTEM_PYTHON.is_file():
        return f"{SYSTEM_PYTHON} is missing: the user runs dockscope with Debian's python3"
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if version != str(sys.version_info[:2]):
        wanted = sys.version_info[:2]
        return f"{SYSTEM_PYTHON} is {version}, the virtualenv's packages are for {wanted}"
    for tool in ("useradd", "userdel", "setpriv", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian: passwd, util-linux, uidmap)"
    return None


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: Path
    runtime: Path  # its XDG_RUNTIME_DIR
    image: Path  # the busybox image, readable by it
    subuid: tuple[int, int] | None  # (start, count) of its range, None: single-ID map

    @property
    def data(self) -> Path:
        return self.home / ".local/share/dockscope"

    def command(
        self, *args: str | Path, env: dict[str, str] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """``dockscope ARGS`` as this user: the argv and its environment."""
        paths = [str(REPO), *site.getsitepackages()]
        environment = {
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
            **(env or {}),
        }
        argv = [
            "/usr/bin/setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--init-groups",
            str(SYSTEM_PYTHON),
            "-c",
            LAUNCHER.format(paths=paths),
            *map(str, args),
        ]
        return argv, environment

    def dockscope(
        self, *args: str | Path, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv, environment = self.command(*args, env=env)
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=environment,
            cwd=str(self.home),
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str | Path) -> str:
        done = self.dockscope(*args)
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout


def _subordinate(path: str, name: str) -> tuple[int, int] | None:
    for line in Path(path).read_text().splitlines():
        parts = line.split(":")
        if len(parts) == 3 and parts[0] == name:
            return int(parts[1]), int(parts[2])
    return None


def _make_user(image: Path, *, subids: bool) -> Iterator[User]:
    name = f"dsrl{secrets.token_hex(4)}"
    # useradd gives a new user a range of its own (login.defs SUB_UID_COUNT) unless told not to
    counts = [] if subids else ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]
    subprocess.run(["useradd", "-m", "-U", "-s", "/bin/sh", *counts, name], check=True)
    runtime = Path(f"/tmp/{name}-run")
    try:
        import pwd

        entry = pwd.getpwnam(name)
        home = Path(entry.pw_dir)
        if subids and _subordinate("/etc/subuid", name) is None:
            start = 600000 + (entry.pw_uid % 1000) * 65536
            subprocess.run(
                ["usermod", "--add-subuids", f"{start}-{start + 65535}", name], check=True
            )
            subprocess.run(
                ["usermod", "--add-subgids", f"{start}-{start + 65535}", name], check=True
            )
        runtime.mkdir(mode=0o700)
        os.chown(runtime, entry.pw_uid, entry.pw_gid)
        copy = home / "busybox.tar"
        shutil.copyfile(image, copy)
        os.chown(copy, entry.pw_uid, entry.pw_gid)
        yield User(
            name,
            entry.pw_uid,
            entry.pw_gid,
            home,
            runtime,
            copy,
            _subordinate("/etc/subuid", name) if subids else None,
        )
    finally:
        # its processes first (a container left by a failed test), then the user and its files
        _kill_processes_of(entry.pw_uid, _subordinate("/etc/subuid", name))
        subprocess.run(["userdel", "-r", "-f", name], check=False, capture_output=True)
        shutil.rmtree(runtime, ignore_errors=True)


def _kill_processes_of(uid: int, subuid: tuple[int, int] | None) -> None:
    """Processes this test's user started (its uid, or its range's): killed by PID."""
    owned = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                owner = entry.stat().st_uid
            except OSError:
                continue
            in_range = subuid is not None and subuid[0] <= owner < subuid[0] + subuid[1]
            if owner == uid or in_range:
                owned.append(int(entry.name))
    for pid in owned:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if owned:
        time.sleep(0.2)


@pytest.fixture(scope="module")
def user(busybox_image: Path) -> Iterator[User]:
    problem = _system_python_problem()
    if problem:
        pytest.skip(problem)
    yield from _make_user(busybox_image, subids=True)


@pytest.fixture(scope="module")
def single_user(busybox_image: Path) -> Iterator[User]:
    problem = _system_python_problem()
    if problem:
        pytest.skip(problem)
    yield from _make_user(busybox_image, subids=False)


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _done(events: list[dict[str, Any]], step: str) -> dict[str, Any]:
    found = [e for e in events if e["step"] == step and e["phase"] == "done"]
    assert len(found) == 1, (step, [e["step"] for e in events])
    return found[0]


def _map_rows(text: str) -> list[list[str]]:
    return [row.split() for row in text.splitlines() if row.strip()]


def test_run_is_root_of_a_user_namespace_mapped_from_subuid(user: User) -> None:
    assert user.subuid is not None
    start, count = user.subuid
    trace = user.runtime / "run.jsonl"
    out = user.ok(
        "run",
        "--rm",
        "--trace-json",
        trace,
        user.image,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; cat /proc/self/gid_map",
    )
    lines = out.splitlines()
    assert lines[0] == "0"
    assert _map_rows("\n".join(lines[1:3])) == [
        ["0", str(user.uid), "1"],
        ["1", str(start), str(count)],
    ]
    events = _events(trace)
    assert events[0]["step"] == "userns"
    userns = _done(events, "userns")["evidence"]
    assert userns["mode"] == "subid"
    assert _map_rows(userns["uid_map"]) == [
        ["0", str(user.uid), "1"],
        ["1", str(start), str(count)],
    ]
    assert userns["setgroups"].strip() == "allow"
    assert any(c.startswith("newuidmap ") for c in userns["commands"])
    assert any(c.startswith("newgidmap ") for c in userns["commands"])
    assert userns["outside"]["uid"] == user.uid and userns["inside"]["uid"] == 0
    # no control group: the step says why, and none of the group steps happen
    none = _done(events, "cgroup-none")["evidence"]
    assert none["limits"] == "cannot apply" and "cgroup v1" in none["reason"]
    steps = {e["step"] for e in events}
    assert not steps & {"cgroup-create", "cgroup-devices", "cgroup-attach", "cgroup-release"}
    assert "userxattr" in _done(events, "mount-rootfs")["evidence"]["mountinfo"][0]


def test_lifecycle_as_an_ordinary_user(user: User) -> None:
    """run -d, ps, logs, exec, attach, container diff, stop, export, rm: files on the host
    belong to the user or its range, state is in the user's directories only."""
    assert user.subuid is not None
    start = user.subuid[0]
    name = f"life{secrets.token_hex(3)}"
    script = (
        "echo a > /by-root; echo b > /by-1000; chown 1000:1000 /by-1000; echo started; "
        "exec sleep 300"
    )
    cid = user.ok("run", "-d", "--name", name, user.image, "sh", "-c", script).strip()
    try:
        deadline = time.monotonic() + 20
        while "started" not in user.ok("logs", name) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert user.ok("logs", name).splitlines()[0] == "started"
        listed = json.loads(user.ok("ps", "--json"))
        [mine] = [c for c in listed["containers"] if c["name"] == name]
        assert mine["status"] == "running"
        state = json.loads((user.data / "containers" / cid / "state.json").read_text())
        assert state["cgroup_paths"] == {}
        # PID 1 stayed in the group it was started in: none of dockscope's (other tests'
        # containers may come and go meanwhile, so the host's groups are not compared)
        groups = Path(f"/proc/{state['pid']}/cgroup").read_text()
        assert "dockscope" not in groups, groups
        assert groups == Path(f"/proc/{state['shim_pid']}/cgroup").read_text()
        # exec joins the container's user namespace first
        exec_trace = user.runtime / f"{name}-exec.jsonl"
        out = user.ok(
            "exec",
            "--trace-json",
            exec_trace,
            name,
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; cat /by-1000",
        )
        joined = [e for e in _events(exec_trace) if e["step"] == "setns"]
        assert joined[0]["args"]["namespace"] == "user"  # first, so that the others may be
        assert _map_rows(joined[0]["evidence"]["uid_map"])[0] == ["0", str(user.uid), "1"]
        assert not [e for e in _events(exec_trace) if e["step"] == "cgroup-join"]
        assert out.splitlines()[0] == "0"
        assert _map_rows(out.splitlines()[1])[0] == ["0", str(user.uid), "1"]
        assert out.splitlines()[-1] == "b"
        # on the host: root's file is the user's, uid 1000's is the range's 1000th
        upper = user.data / "containers" / cid / "upper"
        assert (upper / "by-root").stat().st_uid == user.uid
        assert (upper / "by-1000").stat().st_uid == start + 999
        assert (upper / "by-1000").stat().st_gid == start + 999
        # state where podman keeps it: the user's data home and runtime directory only
        assert (user.runtime / "dockscope" / "containers" / cid / "attach.sock").exists()
        assert not (Path("/var/lib/dockscope/containers") / cid).exists()
        diff = user.ok("container", "diff", name).splitlines()
        assert "A /by-root" in diff and "A /by-1000" in diff
        user.ok("stop", "-t", "1", name)
        exported = user.home / "export.tar"
        user.ok("container", "export", name, "-o", exported)
        with tarfile.open(exported) as tar:
            member = tar.getmember("by-1000")
            assert (member.uid, member.gid) == (1000, 1000)  # back through the map
            assert tar.getmember("by-root").uid == 0
        user.ok("rm", name)
        assert not (user.data / "containers" / cid).exists()  # the range's files too
        assert not (user.runtime / "dockscope" / "containers" / cid).exists()
    finally:
        user.dockscope("rm", "-f", name)
    assert not mounts_naming(user.home)


def test_attach_shows_the_output_of_a_rootless_container(user: User) -> None:
    name = f"att{secrets.token_hex(3)}"
    user.ok("run", "-d", "--name", name, user.image, "sh", "-c", "sleep 2; echo hello; sleep 1")
    try:
        attached = user.dockscope("attach", name, timeout=30)
        assert attached.returncode == 0, attached.stderr
        assert "hello" in attached.stdout
    finally:
        user.dockscope("rm", "-f", name)


def test_root_inside_cannot_write_the_hosts_files(user: User) -> None:
    """Root in the container is the user outside: a host directory bound in (root's /etc) is
    shown as nobody's and refuses writes; the user's own directory takes them."""
    own = user.home / "shared"
    own.mkdir()
    os.chown(own, user.uid, user.gid)
    done = user.dockscope(
        "run",
        "--rm",
        "-v",
        "/etc:/hostetc",
        "-v",
        f"{own}:/mine",
        user.image,
        "sh",
        "-c",
        "stat -c %U /hostetc; touch /mine/ok; touch /hostetc/dockscope-rootless-probe",
    )
    assert done.returncode != 0
    assert done.stdout.splitlines()[0] == "nobody"  # root outside is unmapped inside
    assert "Permission denied" in done.stderr
    assert not Path("/etc/dockscope-rootless-probe").exists()
    assert (own / "ok").stat().st_uid == user.uid


def test_limits_are_ignored_with_podmans_warning(user: User) -> None:
    done = user.dockscope(
        "run", "--rm", "--memory", "64m", "--pids-limit", "10", user.image, "true"
    )
    assert done.returncode == 0, done.stderr
    assert (
        "WARNING: Resource limits are not supported and ignored on cgroups V1 rootless systems"
        in done.stderr
    )


def test_single_id_map_without_subordinate_ranges(single_user: User) -> None:
    user = single_user
    trace = user.runtime / "single.jsonl"
    out = user.ok(
        "run",
        "--rm",
        "--trace-json",
        trace,
        user.image,
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; cat /proc/self/setgroups; echo x > /f; "
        "chown 1000 /f || echo refused",
    )
    lines = out.splitlines()
    assert lines[0] == "0"
    assert _map_rows(lines[1]) == [["0", str(user.uid), "1"]]
    assert lines[2] == "deny"
    assert lines[-1] == "refused"  # uid 1000 is not mapped
    userns = _done(_events(trace), "userns")["evidence"]
    assert userns["mode"] == "single"
    assert "no range" in userns["reason"]
    assert userns["commands"][0].split()[:3] == ["echo", "deny", ">"]
    # a user the map lacks cannot be become: one line, exit 126
    refused = user.dockscope("run", "--rm", "-u", "1000", user.image, "id")
    assert refused.returncode == 126
    assert "uid 1000 or gid 1000 is not mapped" in refused.stderr


def test_copy_fallback_without_overlayfs(user: User) -> None:
    """Where overlayfs cannot be mounted in a user namespace (before Linux 5.11; forced here
    with DOCKSCOPE_ROOTFS=copy) the image is copied into the container's root, owners
    through the map as in the layer store."""
    assert user.subuid is not None
    trace = user.runtime / "copy.jsonl"
    name = f"copy{secrets.token_hex(3)}"
    done = user.dockscope(
        "run",
        "--name",
        name,
        "--trace-json",
        trace,
        user.image,
        "sh",
        "-c",
        "id -u; echo x > /f; chown 1000 /f",
        env={"DOCKSCOPE_ROOTFS": "copy"},
    )
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["0"]
        events = _events(trace)
        assert _done(events, "container-dirs")["evidence"]["rootfs_mode"] == "copy"
        [cid] = [
            p.name
            for p in (user.data / "containers").iterdir()
            if json.loads((p / "config.json").read_text())["name"] == name
        ]
        merged = user.data / "containers" / cid / "merged"
        assert (merged / "bin" / "busybox").stat().st_uid == user.uid  # root's, mapped
        assert (merged / "f").stat().st_uid == user.subuid[0] + 999
    finally:
        user.ok("rm", name)


def test_host_network_binds_the_hosts_sys(user: User) -> None:
    """--net host: the network namespace is the host's user namespace's, so sysfs may not be
    mounted; the host's /sys is bound read-only instead, and the trace says so."""
    trace = user.runtime / "host-net.jsonl"
    out = user.ok(
        "run",
        "--rm",
        "--net",
        "host",
        "--trace-json",
        trace,
        user.image,
        "sh",
        "-c",
        "ls /sys/class/net; touch /sys/x 2>&1 || true",
    )
    assert "lo" in out.split()
    assert "Read-only file system" in out
    sys_step = _done(_events(trace), "mount-sys")["evidence"]
    assert sys_step["how"].startswith("the host's /sys bound read-only")
    assert not [e for e in _events(trace) if e["step"] == "loopback"]


def test_rm_f_of_a_container_running_as_a_range_id(user: User) -> None:
    """PID 1 as uid 1000 (a range id on the host): rm -f stops it from outside, where the
    user may signal it, then removes its files inside a user namespace."""
    name = f"rmf{secrets.token_hex(3)}"
    cid = user.ok("run", "-d", "--name", name, "-u", "1000", user.image, "sleep", "300").strip()
    removed = user.dockscope("rm", "-f", name)
    assert removed.returncode == 0, removed.stderr
    assert not (user.data / "containers" / cid).exists()


def test_a_terminal_session_rootless(user: User) -> None:
    """run -it as the user: the container's own devpts in its user namespace, raw mode, and
    root inside."""
    argv, env = user.command("run", "-it", "--rm", user.image, "sh")
    session = PtySession(argv, env)
    try:
        session.expect(b"# ")
        session.send(b"id -u; tty\r")
        screen = session.expect(b"/dev/pts/0")
        assert b"\r\n0\r\n" in screen
        session.send(b"exit 3\r")
        assert session.wait() == 3
    finally:
        session.close()
