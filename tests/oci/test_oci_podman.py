"""Real podman driving dockscope-runtime (``podman --runtime PATH``): run --rm, run -d with
exec, stop and rm, -it through a pseudo-terminal, a pod whose containers join the infra
container's namespaces by path, and a refusal that podman shows.

podman runs on a private store (--root, --runroot, --tmpdir), with cgroupfs (no systemd
here) and the file events logger; the busybox sample image is loaded into it. podman's
default rlimits (nofile 1048576) exceed what this machine lets root raise to, so a private
containers.conf sets default_ulimits (the infra container of a pod gets them too)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oci.conftest import RUNTIME
from tests.support.runtime import needs_root

pytestmark = [*needs_root, pytest.mark.interop]


class Podman:
    def __init__(self, base: Path) -> None:
        self.base = base
        conf = base / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n')
        self.made: list[str] = []
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        self.flags = [
            "--root", str(base / "graph"),
            "--runroot", str(base / "run"),
            "--tmpdir", str(base / "tmp"),
            "--storage-driver", "overlay",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            "--runtime", str(RUNTIME),
        ]  # fmt: skip
        # the runtime's default state root: podman does not pass --runtime-flag on to the
        # cleanup command conmon runs when a container exits
        self.state = Path("/run/dockscope-runtime")

    def argv(self, *args: str | Path) -> list[str]:
        return ["podman", *self.flags, *(str(a) for a in args)]

    def __call__(
        self, *args: str | Path, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if args[:2] == ("run", "-d") or args[:1] == ("create",):
            self.made += proc.stdout.split()[-1:]
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {args} exited {proc.returncode}: {proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def podman(busybox_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    for tool in ("podman", "conmon"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            pytest.fail(f"{tool} is missing (make debs-test)")
    pm = Podman(tmp_path_factory.mktemp("podman-oci"))
    pm("load", "-i", busybox_image)
    yield pm
    ids = pm("ps", "-a", "-q", "--no-trunc").stdout.split()
    pm("pod", "rm", "-a", "-f", "-t", "0", check=False)
    pm("rm", "-a", "-f", "-t", "0", check=False)
    ids += pm.made
    time.sleep(1)  # conmon's cleanup of the last container
    left = [i for i in ids if (pm.state / i).exists()]
    pm("system", "reset", "-f", check=False)
    assert left == [], f"dockscope-runtime state left behind: {left}"


IMAGE = "docker.io/dockscope/busybox"


def name() -> str:
    return f"oci-{uuid.uuid4().hex[:10]}"


def test_run_rm_echo_and_the_trace(podman: Podman, tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    proc = podman(
        "run", "--rm", "--network", "none", "--annotation", f"org.dockscope.trace={trace}",
        IMAGE, "echo", "hi",
    )  # fmt: skip
    assert proc.stdout == "hi\n"

    def steps_now() -> list[str]:
        return [json.loads(line)["step"] for line in trace.read_text().splitlines()]

    # podman deletes the container after run returns (conmon's exit command)
    for _ in range(100):
        if "delete" in steps_now():
            break
        time.sleep(0.1)
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    steps = [e["step"] for e in events]
    for step in ("bundle", "cgroup-create", "unshare", "mount", "pivot_root", "masked-paths",
                 "created", "start", "seccomp", "capabilities", "exec", "delete"):  # fmt: skip
        assert step in steps, step
    bundle = events[0]
    assert bundle["evidence"]["cgroupsPath"].startswith("/libpod_parent/libpod-")
    # what podman asked for, as the trace shows it: its mounts, in its order
    destinations = [e["args"]["destination"] for e in events if e["step"] == "mount"]
    assert destinations[0] == "/proc" and "/etc/hosts" in destinations
    exec_event = next(e for e in events if e["step"] == "exec")
    assert exec_event["args"]["argv"] == ["echo", "hi"]
    assert all(e["result"] == "ok" for e in events)


def test_run_detached_exec_stop_rm(podman: Podman) -> None:
    n = name()
    podman("run", "-d", "--name", n, "--network", "none", IMAGE, "sleep", "1000")
    assert "Up" in podman("ps", "--filter", f"name={n}").stdout
    proc = podman("exec", n, "sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '")
    assert proc.stdout.splitlines()[1].strip() == "sleep 1000"
    failed = podman("exec", n, "sh", "-c", "exit 3", check=False)
    assert failed.returncode == 3
    podman("stop", "-t", "1", n)
    assert "Exited" in podman("ps", "-a", "--filter", f"name={n}").stdout
    podman("rm", n)
    assert n not in podman("ps", "-a").stdout


def _pty_run(argv: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, bytes]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(argv[0], argv, env)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output


def test_run_it_gets_a_terminal(podman: Podman) -> None:
    code, output = _pty_run(
        podman.argv("run", "--rm", "-it", "--network", "none", IMAGE, "sh", "-c",
                    "tty; [ -t 0 ] && echo stdin-is-a-tty"),
        podman.env,
    )  # fmt: skip
    assert code == 0, output
    text = output.decode(errors="replace")
    assert "/dev/pts/0\r\n" in text and "stdin-is-a-tty" in text


def test_exec_it_gets_a_terminal(podman: Podman) -> None:
    n = name()
    podman("run", "-d", "--name", n, "--network", "none", IMAGE, "sleep", "1000")
    try:
        code, output = _pty_run(podman.argv("exec", "-it", n, "sh", "-c", "tty"), podman.env)
        assert code == 0 and b"/dev/pts/" in output
    finally:
        podman("rm", "-f", "-t", "0", n)


def test_pod_shares_the_infra_namespaces(podman: Podman) -> None:
    pod = name()
    podman(
        "pod", "create", "--name", pod, "--network", "none",
        "--infra-image", IMAGE, "--infra-command", "sleep 100000",
    )  # fmt: skip
    try:
        web = name()
        podman(
            "run", "-d", "--pod", pod, "--name", web, IMAGE, "sh", "-c",
            "echo hello > /tmp/i.html; exec httpd -f -p 127.0.0.1:8080 -h /tmp",
        )  # fmt: skip
        got = ""
        for _ in range(50):
            proc = podman(
                "run", "--rm", "--pod", pod, IMAGE, "wget", "-qO-", "http://127.0.0.1:8080/i.html",
                check=False,
            )  # fmt: skip
            got = proc.stdout
            if got == "hello\n":
                break
            time.sleep(0.1)
        assert got == "hello\n"
        # a container outside the pod has no such server
        alone = podman(
            "run", "--rm", "--network", "none", IMAGE, "wget", "-qO-", "http://127.0.0.1:8080/",
            check=False,
        )  # fmt: skip
        assert alone.returncode != 0
    finally:
        podman("pod", "rm", "-f", "-t", "0", pod)


def test_refusal_reaches_podman(podman: Podman) -> None:
    proc = podman(
        "run", "--rm", "--network", "none", "--uidmap", "0:100000:65536", IMAGE, "true",
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "user namespaces are not supported" in proc.stderr


def test_buildah_run_through_the_runtime(podman: Podman) -> None:
    """buildah, a second engine, runs a build step through dockscope-runtime (create, start,
    state, delete, as it drives runc) in the same store."""
    store = ["--root", str(podman.base / "graph"), "--runroot", str(podman.base / "run"),
             "--storage-driver", "overlay"]  # fmt: skip

    def buildah(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["buildah", *store, *args], env=podman.env, capture_output=True, text=True,
            timeout=120, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    made = buildah("from", "--name", name(), IMAGE)
    assert made.returncode == 0, made.stderr
    container = made.stdout.split()[-1]
    try:
        ran = buildah(
            "run", "--runtime", str(RUNTIME), "--isolation", "oci", "--network", "none",
            container, "--", "sh", "-c", "echo built; mkdir /made-here",
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == "built\n"
        mounted = buildah("mount", container).stdout.strip()
        assert os.path.isdir(os.path.join(mounted, "made-here"))
    finally:
        buildah("umount", container)
        buildah("rm", container)
