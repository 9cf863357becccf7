"""seccomp in real containers, as root: docker's default profile denies what docker denies
(the keyrings, user namespaces and mounts in them), ``--security-opt seccomp=unconfined``
lifts it, a custom profile's errno reaches the command, exec gets the container's filter, and
the trace shows the filter loaded.

The probes are a small static C program (``tests/data/syscall_probe.c``, built with the host's
gcc) bind-mounted read-only into the busybox image's containers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from runtime_lab.kernel.seccomp import KernelLog
from tests.support.cli import dockscope, ok
from tests.support.paths import DATA
from tests.support.runtime import events, needs_root, ps, status_fields, step, wait_until

pytestmark = needs_root

PROBES = ("add_key", "keyctl", "unshare-user", "mount-in-userns", "clone3", "chroot", "mkdir")


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the static probe, to bind-mount at /probe."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is missing: apt-get install gcc libc6-dev (make debs-test)")
    out = tmp_path_factory.mktemp("probe")
    source = DATA / "syscall_probe.c"
    subprocess.run(
        [gcc, "-static", "-O2", "-o", str(out / "probe"), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    out.chmod(0o755)
    return out


def probe_run(root: Path, image: Path, probe: Path, *opts: str) -> dict[str, str]:
    """Each probe's answer in a container run with ``opts``: ``ok`` or ``errno=E``."""
    out = ok(
        dockscope(
            root, "run", "--rm", *opts, "-v", f"{probe}:/probe:ro", image, "/probe/probe", *PROBES
        )
    )
    answers = dict(line.split(" ", 1) for line in out.splitlines())
    assert set(answers) == set(PROBES), out
    return answers


def seccomp_status(root: Path, image: Path, *opts: str) -> dict[str, str]:
    out = ok(dockscope(root, "run", "--rm", *opts, image, "cat", "/proc/self/status"))
    return status_fields(out)


def test_docker_default_denies_what_docker_denies(
    root: Path, busybox_image: Path, probe: Path
) -> None:
    answers = probe_run(root, busybox_image, probe)
    assert answers == {
        "add_key": "errno=EPERM",  # the keyrings are the host's: no namespace isolates them
        "keyctl": "errno=EPERM",
        "unshare-user": "errno=EPERM",
        "mount-in-userns": "errno=EPERM",
        "clone3": "errno=ENOSYS",  # docker's own answer: glibc then falls back to clone
        "chroot": "ok",  # CAP_SYS_CHROOT is kept, so its rule applies
        "mkdir": "ok",
    }
    fields = seccomp_status(root, busybox_image)
    assert fields["Seccomp"] == "2"  # SECCOMP_MODE_FILTER
    assert fields["Seccomp_filters"] == "1"
    assert fields["NoNewPrivs"] == "1"


def test_busybox_unshare_fails_with_eperm(root: Path, busybox_image: Path) -> None:
    result = dockscope(root, "run", "--rm", busybox_image, "unshare", "-U", "true")
    assert result.code == 1
    assert "Operation not permitted" in result.err


def test_unconfined_lifts_the_filter(root: Path, busybox_image: Path, probe: Path) -> None:
    opts = ("--security-opt", "seccomp=unconfined")
    answers = probe_run(root, busybox_image, probe, *opts)
    assert answers["add_key"] == "ok"
    assert answers["keyctl"] == "ok"
    assert answers["unshare-user"] == "ok"
    assert answers["mount-in-userns"] == "ok"
    assert answers["clone3"] == "errno=EINVAL"  # the kernel's own answer to a NULL argument
    fields = seccomp_status(root, busybox_image, *opts)
    assert fields["Seccomp"] == "0"
    assert fields["NoNewPrivs"] == "1"  # no_new_privileges stays, as before


def test_custom_profile_errno_reaches_the_command(
    root: Path, busybox_image: Path, probe: Path, tmp_path: Path
) -> None:
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
                ],
            }
        )
    )
    answers = probe_run(root, busybox_image, probe, "--security-opt", f"seccomp={profile}")
    assert answers["mkdir"] == "errno=EACCES"
    assert answers["add_key"] == "ok"  # this profile allows the rest
    result = dockscope(
        root, "run", "--rm", "--security-opt", f"seccomp={profile}", busybox_image, "mkdir", "/x"
    )
    assert result.code == 1
    assert "Permission denied" in result.err
    # the profile is read once, at create, and kept in the container's config (as docker
    # keeps it): a later start does not depend on the file
    opts = ("--name", "kept", "--security-opt", f"seccomp={profile}")
    ok(dockscope(root, "run", *opts, busybox_image, "sh", "-c", "mkdir /x 2>&1; true"))
    profile.unlink()
    ok(dockscope(root, "start", "kept"))
    wait_until(lambda: ps(root)["kept"]["status"] == "exited", what="the second run to end")
    assert ok(dockscope(root, "logs", "kept")).count("Permission denied") == 2
    config = json.loads((root / "containers" / _id(root, "kept") / "config.json").read_text())
    assert config["seccomp"] == str(profile)
    assert config["seccomp_profile"]["syscalls"][0]["errnoRet"] == 13
    ok(dockscope(root, "rm", "kept"))


def _id(root: Path, name: str) -> str:
    for directory in (root / "containers").iterdir():
        config = json.loads((directory / "config.json").read_text())
        if config["name"] == name:
            return directory.name
    raise AssertionError(name)


def test_exec_gets_the_containers_filter(root: Path, busybox_image: Path) -> None:
    ok(dockscope(root, "run", "-d", "--name", "filtered", busybox_image, "sleep", "60"))
    try:
        status = status_fields(ok(dockscope(root, "exec", "filtered", "cat", "/proc/self/status")))
        assert status["Seccomp"] == "2"
        denied = dockscope(root, "exec", "filtered", "unshare", "-U", "true")
        assert denied.code == 1 and "Operation not permitted" in denied.err
    finally:
        ok(dockscope(root, "rm", "-f", "filtered"))


def test_trace_shows_the_filter_loaded_last(root: Path, busybox_image: Path) -> None:
    trace = root.parent / "seccomp-trace.jsonl"
    ok(dockscope(root, "run", "--rm", "--trace-json", trace, busybox_image, "true"))
    found = events(trace)
    event = step(found, "seccomp")
    assert event["syscall"] == "seccomp(SECCOMP_SET_MODE_FILTER)"
    assert event["result"] == "ok"
    evidence = event["evidence"]
    assert evidence["profile"] == "default"
    assert evidence["default_action"] == "SCMP_ACT_ERRNO(EPERM)"
    assert evidence["syscalls_allowed"] > 300
    assert evidence["status"]["Seccomp"] == "2"
    assert evidence["status"]["Seccomp_filters"] == "1"
    if os.uname().machine == "x86_64":
        assert evidence["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    order = [e["step"] for e in found if e["phase"] == "done"]
    assert order.index("no_new_privs") < order.index("seccomp") == order.index("exec") - 1
    unconfined = root.parent / "unconfined-trace.jsonl"
    ok(
        dockscope(
            root,
            *("run", "--rm", "--security-opt", "seccomp=unconfined"),
            *("--trace-json", unconfined, busybox_image, "true"),
        )
    )
    assert "seccomp" not in {e["step"] for e in events(unconfined)}


def test_trace_names_the_calls_the_filter_denied(root: Path, busybox_image: Path) -> None:
    trace = root.parent / "denied-trace.jsonl"
    script = "unshare -U true; unshare -U true; mount -t tmpfs none /mnt; mkdir /ok; true"
    ok(dockscope(root, "run", "--rm", "--trace-json", trace, busybox_image, "sh", "-c", script))
    found = events(trace)
    loaded = step(found, "seccomp")
    session = loaded["evidence"]["audit_session"]
    assert isinstance(session, int)
    report = step(found, "seccomp-denied")
    assert report["args"] == {"session": session}
    assert report["evidence"]["counts"] == {"unshare": 2, "mount": 1}
    assert {d["comm"] for d in report["evidence"]["denied"]} == {"unshare", "mount"}
    assert {d["action"] for d in report["evidence"]["denied"]} == {"errno"}
    order = [e["step"] for e in found if e["phase"] == "done"]
    assert order.index("seccomp-denied") == order.index("exit") - 1
    # the records are this container's only: another traced container's session differs
    other = root.parent / "other-trace.jsonl"
    ok(dockscope(root, "run", "--rm", "--trace-json", other, busybox_image, "true"))
    again = events(other)
    assert step(again, "seccomp")["evidence"]["audit_session"] != session
    assert step(again, "seccomp-denied")["evidence"]["denied"] == []


def test_an_untraced_run_leaves_no_record(root: Path, busybox_image: Path) -> None:
    log = KernelLog.open()
    assert log is not None
    try:
        ok(dockscope(root, "run", "--rm", busybox_image, "sh", "-c", "unshare -U true; true"))
        time.sleep(0.2)  # the kernel's audit thread writes a moment after the call
        records = [r for r in log.records() if "type=1326" in r and 'comm="unshare"' in r]
    finally:
        log.close()
    assert records == []  # no SECCOMP_FILTER_FLAG_LOG without a trace


def test_trace_narrates_the_filter_and_its_denials(root: Path, busybox_image: Path) -> None:
    result = dockscope(root, "run", "--rm", "--trace", busybox_image, "sh", "-c", "unshare -U true")
    assert result.code == 1
    assert "Load the seccomp filter  seccomp(SECCOMP_SET_MODE_FILTER)(profile=default)" in (
        result.err
    )
    assert "default_action: SCMP_ACT_ERRNO(EPERM)" in result.err
    assert "Seccomp: 2" in result.err
    assert "denied: unshare (#" in result.err and "'unshare': errno" in result.err


def test_a_log_rule_allows_and_is_reported(root: Path, busybox_image: Path, tmp_path: Path) -> None:
    profile = tmp_path / "log-mkdir.json"
    rule = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"}
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]}))
    trace = tmp_path / "trace.jsonl"
    opts = ("--security-opt", f"seccomp={profile}", "--trace-json", trace)
    out = ok(
        dockscope(
            root, "run", "--rm", *opts, busybox_image, "sh", "-c", "mkdir /logged && echo made"
        )
    )
    assert out == "made\n"  # SCMP_ACT_LOG allows the call…
    found = events(trace)
    assert step(found, "seccomp")["evidence"]["profile"] == str(profile)
    logged = step(found, "seccomp-denied")["evidence"]["denied"]
    assert [(d["action"], d["comm"]) for d in logged] == [("log", "mkdir")]  # …and logs it
    assert logged[0]["syscall"] in ("mkdir", "mkdirat")


def test_a_profile_that_stops_pid_1_before_execve_is_named(
    root: Path, busybox_image: Path, tmp_path: Path
) -> None:
    profile = tmp_path / "execve-only.json"
    rule = {"names": ["execve"], "action": "SCMP_ACT_ALLOW"}
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule]}))
    result = dockscope(
        root, "run", "--rm", "--security-opt", f"seccomp={profile}", busybox_image, "true"
    )
    # even exit_group is denied: glibc's _exit then ends in SIGSEGV
    assert result.code == 139
    assert "Load the seccomp filter: PID 1 ended (signal 11) before execve" in result.err
    assert "Traceback" not in result.err
