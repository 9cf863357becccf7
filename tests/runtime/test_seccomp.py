"""runtime_lab/seccomp.py without containers: docker's profile as shipped, its conditions
resolved as moby resolves them, profiles checked, and filters loaded into the real kernel by a
forked child (no root needed: no_new_privs lets any process load one)."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime_lab.kernel import linux, seccomp
from runtime_lab.spec import DEFAULT_CAPABILITIES
from tests.support.cli import invoke

PROFILE = Path(seccomp.__file__).parent / "profiles" / "default.json"


def default_doc() -> dict[str, Any]:
    return seccomp.parse_profile(seccomp.default_profile_text(), "default")


def allowed_names(resolved: seccomp.Resolved) -> set[str]:
    return {
        name
        for rule in resolved.rules
        if rule.action == "SCMP_ACT_ALLOW" and not rule.args
        for name in rule.names
    }


def test_the_shipped_policy_is_dockscopes_own_grouped_and_commented() -> None:
    doc = default_doc()
    assert PROFILE.name == seccomp.DEFAULT_PROFILE_FILE and PROFILE.is_file()
    assert doc["defaultAction"] == "SCMP_ACT_ERRNO" and doc["defaultErrnoRet"] == errno.EPERM
    # every entry (a group of calls) says what its calls do and why: docker's "comment" field
    for entry in doc["syscalls"]:
        comment = entry.get("comment")
        assert isinstance(comment, str) and len(comment) > 40, entry["names"]
    # grouped by purpose: the calls allowed to everyone are spread over many groups
    plain = [e for e in doc["syscalls"] if not ({"args", "includes", "excludes"} & set(e))]
    assert len(plain) >= 12 and max(len(e["names"]) for e in plain) < 80
    names = [n for e in plain for n in e["names"]]
    assert len(names) == len(set(names))  # each call in one group only
    readme = (PROFILE.parent / "README.md").read_text()
    assert "0ec744f43b52dd0b3065b84e685b89a2ede1dd8e" in readme and "written anew" in readme


def test_the_default_policys_facts_on_x86_64() -> None:
    resolved = seccomp.resolve(
        default_doc(), capabilities=DEFAULT_CAPABILITIES, machine="x86_64", kernel="6.1.0"
    )
    assert resolved is not None
    assert len(allowed_names(resolved)) == 352
    assert resolved.default_action == "SCMP_ACT_ERRNO" and resolved.default_errno == errno.EPERM
    # personality: five values, each its own rule on argument 0; any other value is denied
    personality = sorted(
        (r.args[0].value, r.args[0].op) for r in resolved.rules if r.names == ("personality",)
    )
    assert personality == [
        (value, "SCMP_CMP_EQ") for value in (0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
    ]
    assert not [r for r in resolved.rules if "personality" in r.names and not r.args]
    # the calls that need CAP_SYS_ADMIN, or no capability at all, are in no rule
    named = {name for rule in resolved.rules for name in rule.names}
    for name in ("add_key", "keyctl", "request_key", "unshare", "setns", "mount", "bpf"):
        assert name not in named
    for name in ("init_module", "finit_module", "kcmp", "pidfd_getfd", "iopl", "acct"):
        assert name not in named
    for name in ("settimeofday", "clock_settime", "vhangup", "mbind", "reboot"):
        assert name not in named
    # chroot: docker keeps CAP_SYS_CHROOT; every address family; io_uring; adjtimex reads
    assert {"chroot", "socket", "io_uring_enter", "adjtimex", "capset"} <= allowed_names(resolved)


def test_docker_default_resolved_for_dockers_default_capabilities() -> None:
    resolved = seccomp.resolve(
        default_doc(), capabilities=DEFAULT_CAPABILITIES, machine="x86_64", kernel="6.1.0"
    )
    assert resolved is not None
    assert resolved.architectures == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")
    allowed = allowed_names(resolved)
    # reached only through the host's shared kernel state, or CAP_SYS_ADMIN's: not allowed
    for name in ("add_key", "keyctl", "request_key", "unshare", "setns", "mount", "umount2"):
        assert name not in allowed
    for name in ("bpf", "kexec_load", "reboot", "open_by_handle_at", "syslog", "kcmp"):
        assert name not in allowed
    # CAP_SYS_CHROOT is kept: chroot is allowed; arch_prctl on amd64; ptrace from kernel 4.8
    assert {"chroot", "arch_prctl", "modify_ldt", "read", "execve"} <= allowed
    assert {"ptrace", "process_vm_readv"} <= allowed
    assert "set_tls" not in allowed  # arm only
    clone = [r for r in resolved.rules if r.names == ("clone",)]
    assert clone == [
        seccomp.Rule(
            ("clone",),
            "SCMP_ACT_ALLOW",
            None,
            (seccomp.Arg(0, 0x7E020000, 0, "SCMP_CMP_MASKED_EQ"),),
        )
    ]  # no CLONE_NEW* flag: the s390 variant (argument 1) is left out
    clone3 = [r for r in resolved.rules if r.names == ("clone3",)]
    assert clone3 == [seccomp.Rule(("clone3",), "SCMP_ACT_ERRNO", errno.ENOSYS)]


def test_capabilities_change_the_rules_as_moby_does() -> None:
    caps = [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]
    resolved = seccomp.resolve(default_doc(), capabilities=caps, machine="x86_64", kernel="6.1")
    assert resolved is not None
    allowed = allowed_names(resolved)
    assert {"mount", "unshare", "setns", "clone", "clone3", "ptrace", "kcmp"} <= allowed
    assert not [r for r in resolved.rules if r.names in (("clone3",),) and r.errno_ret]
    assert "add_key" not in allowed  # no capability allows the keyrings


def test_architecture_and_kernel_conditions() -> None:
    arm = seccomp.resolve(
        default_doc(), capabilities=DEFAULT_CAPABILITIES, machine="aarch64", kernel="6.1"
    )
    assert arm is not None
    assert arm.architectures == ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM")
    assert {"set_tls", "cacheflush"} <= allowed_names(arm)
    assert "arch_prctl" not in allowed_names(arm)
    old = seccomp.resolve(
        default_doc(), capabilities=DEFAULT_CAPABILITIES, machine="x86_64", kernel="4.4.0-210"
    )
    assert old is not None
    assert not {"ptrace", "process_vm_readv"} & allowed_names(old)


def test_profile_without_default_action_or_syscalls_is_no_filter() -> None:
    assert seccomp.resolve({}, capabilities=()) is None


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ("[1, 2]", "a JSON object"),
        ("{", "not a JSON seccomp profile"),
        ('{"defaultAction": "SCMP_ACT_NOPE"}', "unknown action 'SCMP_ACT_NOPE'"),
        ('{"defaultAction": "SCMP_ACT_NOTIFY"}', "needs a listener"),
        (
            '{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86"], '
            '"archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}',
            "'architectures' and 'archMap' both given",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}',
            "syscalls[0]: 'names' must list",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], '
            '"action": "SCMP_ACT_ERRNO", '
            '"args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}',
            "argument index must be 0 to 5",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], '
            '"action": "SCMP_ACT_ERRNO", '
            '"args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}',
            "argument value must be a 64-bit unsigned number",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], '
            '"action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "EQ"}]}]}',
            "unknown operator 'EQ'",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}',
            "errnoRet must be a number from 0 to 65535",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], '
            '"action": "SCMP_ACT_ERRNO"}]}',
            "'name' and 'names' both given",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "mkdir", '
            '"action": "SCMP_ACT_ERRNO"}]}',
            "syscalls[0]: 'names' must list system call names",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], '
            '"action": "SCMP_ACT_ERRNO", "includes": {"caps": "CAP_SYS_ADMIN"}}]}',
            "syscalls[0]: includes.caps must be a list of names",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], '
            '"action": "SCMP_ACT_ERRNO", "args": [{"index": true, "value": 1, '
            '"op": "SCMP_CMP_EQ"}]}]}',
            "argument index must be 0 to 5",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": '
            '"SCMP_ARCH_X86_64", "subArchitectures": "SCMP_ARCH_X86"}]}',
            "archMap subArchitectures must list architectures",
        ),
        (
            '{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}',
            "unknown architecture 'SCMP_ARCH_VAX'",
        ),
    ],
)
def test_bad_profiles_are_one_clear_line_with_exit_2(
    tmp_path: Path, profile: str, message: str
) -> None:
    path = tmp_path / "profile.json"
    path.write_text(profile)
    with pytest.raises(seccomp.ProfileError) as caught:
        seccomp.read_profile(str(path))
    assert message in str(caught.value)
    result = invoke("run", "--security-opt", f"seccomp={path}", "--explain", "image.tar")
    assert result.code == 2
    assert result.output.count("\n") == 1 and str(path) in result.output
    assert message in result.output


def test_security_opt_values(tmp_path: Path) -> None:
    assert seccomp.security_options([]).seccomp == "default"
    assert seccomp.security_options(["seccomp=unconfined"]).seccomp == "unconfined"
    assert seccomp.security_options(["seccomp:unconfined"]).seccomp == "unconfined"
    assert seccomp.security_options(["no-new-privileges"]).seccomp == "default"
    assert seccomp.security_options(["no-new-privileges=true"]).seccomp == "default"
    path = tmp_path / "p.json"
    path.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    custom = seccomp.security_options([f"seccomp={path}"])
    assert custom.seccomp == str(path) and custom.profile == {"defaultAction": "SCMP_ACT_ALLOW"}
    for bad, message in (
        ("no-new-privileges=false", "always sets no_new_privs"),
        ("apparmor=unconfined", "not supported"),
        ("whatever", "use seccomp=unconfined"),
        (f"seccomp={tmp_path / 'missing.json'}", "cannot read the seccomp profile"),
    ):
        with pytest.raises(seccomp.UsageError, match=message):
            seccomp.security_options([bad])


def test_explain_lists_the_seccomp_step_unless_unconfined(busybox_image: Path) -> None:
    confined = invoke("run", "--explain", str(busybox_image))
    assert confined.code == 0, confined.output
    assert "Load the seccomp filter" in confined.output
    assert "docker's default profile" in confined.output
    plain = invoke("run", "--explain", "--security-opt", "seccomp=unconfined", str(busybox_image))
    assert plain.code == 0, plain.output
    assert "Load the seccomp filter" not in plain.output
    assert "unconfined (no filter)" in plain.output


def test_the_default_profile_compiles_for_this_machine() -> None:
    compiled = seccomp.prepare(seccomp.Options(), DEFAULT_CAPABILITIES, log=True)
    assert compiled is not None
    try:
        summary = compiled.summary()
    finally:
        compiled.release()
    assert summary["log_flag"] is True
    assert summary["default_action"] == "SCMP_ACT_ERRNO(EPERM)"
    assert summary["syscalls_allowed"] > 300
    assert summary["syscalls_with_other_actions"] == ["clone3"]
    assert summary["syscalls_allowed_by_argument"] == ["clone", "personality"]
    assert summary["bpf_instructions"] > 100  # measured for traced runs
    untraced = seccomp.prepare(seccomp.Options(), DEFAULT_CAPABILITIES)
    assert untraced is not None
    untraced.release()
    assert untraced.instructions is None and untraced.log is False
    assert seccomp.prepare(seccomp.Options("unconfined"), DEFAULT_CAPABILITIES) is None


def in_child_with_filter(doc: dict[str, Any], probe: Callable[[], object]) -> str:
    """Load ``doc``'s filter in a forked child, run ``probe`` there: ``ok`` or the errno's
    name."""
    resolved = seccomp.resolve(doc, capabilities=DEFAULT_CAPABILITIES)
    assert resolved is not None
    compiled = seccomp.compile_filter(resolved, "test")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (reported through the pipe)
        answer = "ok"
        try:
            linux.set_no_new_privs()
            compiled.load()
            probe()
        except OSError as exc:
            answer = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        except BaseException as exc:
            answer = repr(exc)
        os.write(write_end, answer.encode())
        os._exit(0)
    os.close(write_end)
    compiled.release()
    answer = os.read(read_end, 200).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    return answer


def test_a_loaded_filter_answers_with_the_profiles_errno(tmp_path: Path) -> None:
    doc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"},  # skipped, as runc does
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},  # the default: skipped
        ],
    }
    assert in_child_with_filter(doc, lambda: os.mkdir(tmp_path / "x")) == "EACCES"
    assert not (tmp_path / "x").exists()
    assert in_child_with_filter(doc, os.getpid) == "ok"


def test_the_cached_program_is_libseccomps_and_loads_the_same(tmp_path: Path) -> None:
    cache = tmp_path / "seccomp"
    first = seccomp.prepare(seccomp.Options(), DEFAULT_CAPABILITIES, cache=cache)
    again = seccomp.prepare(seccomp.Options(), DEFAULT_CAPABILITIES, log=True, cache=cache)
    assert first is not None and again is not None
    assert (first.cached, again.cached) == (False, True)
    assert first.context == 0 and first.program is not None  # libseccomp's context released
    # the exact bytes libseccomp exports for the same rules, read back from the cache
    compiled = seccomp.prepare(seccomp.Options(), DEFAULT_CAPABILITIES)
    assert compiled is not None
    try:
        exported = seccomp._export(seccomp.library(), compiled.context)
        assert again.program == first.program == exported
        assert again.summary() | {"program_from_cache": False, "log_flag": False} == (
            first.summary()
        )
    finally:
        compiled.release()
    assert again.instructions == len(exported) // 8 and again.log is True
    # other rules (a capability that allows more calls): another key, another file
    more = seccomp.prepare(seccomp.Options(), [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"], cache=cache)
    assert more is not None and more.cached is False and more.program != first.program
    assert len(list(cache.glob("*.json"))) == 2
    # a damaged or foreign file is never loaded: made again from the rules
    (path,) = [
        p for p in cache.glob("*.json") if json.loads(p.read_text())["program"] == (exported.hex())
    ]
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "key": "0" * 64}))
    rebuilt = seccomp.prepare(seccomp.Options(), DEFAULT_CAPABILITIES, cache=cache)
    assert rebuilt is not None and rebuilt.cached is False and rebuilt.program == exported
    path.write_text("{")
    assert seccomp.prepare(seccomp.Options(), DEFAULT_CAPABILITIES, cache=cache).cached is False
    assert seccomp.prepare(seccomp.Options(), DEFAULT_CAPABILITIES, cache=cache).cached is True
    # a file or directory others may write is not trusted (its program would be the filter)
    path.chmod(0o622)
    assert seccomp.prepare(seccomp.Options(), DEFAULT_CAPABILITIES, cache=cache).cached is False
    path.chmod(0o600)
    cache.chmod(0o777)
    assert seccomp.prepare(seccomp.Options(), DEFAULT_CAPABILITIES, cache=cache).cached is False


def test_a_cached_program_denies_as_the_profile_says(tmp_path: Path) -> None:
    doc = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    }
    resolved = seccomp.resolve(doc, capabilities=DEFAULT_CAPABILITIES)
    assert resolved is not None
    seccomp.cached_filter(resolved, "test", tmp_path, log=False)
    cached = seccomp.cached_filter(resolved, "test", tmp_path, log=False)
    assert cached.cached is True
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (reported through the pipe)
        answer = "ok"
        try:
            linux.set_no_new_privs()
            cached.load()
            os.mkdir(tmp_path / "x")
        except OSError as exc:
            answer = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        os.write(write_end, answer.encode())
        os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 200).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert answer == "EACCES" and not (tmp_path / "x").exists()


def test_the_log_marker_comes_through_the_kernel_log() -> None:
    """--trace reads the container's denials until a marker of dockscope's own is logged
    behind them: a child's call that its own filter logs (SECCOMP_RET_LOG)."""
    import time

    log = seccomp.KernelLog.open()
    if log is None:
        pytest.skip("/dev/kmsg cannot be read here (root, or dmesg_restrict=0)")
    try:
        marker = seccomp.log_marker()
        assert marker is not None and marker[0] != os.getpid()
        records: list[str] = []
        deadline = time.monotonic() + 5
        while not any(seccomp._is_marker(r, marker) for r in records):
            assert time.monotonic() < deadline, records
            time.sleep(0.005)
            records += log.records()
        (record,) = [r for r in records if seccomp._is_marker(r, marker)]
        assert f"type={seccomp.AUDIT_SECCOMP} " in record and "code=0x7ffc0000" in record
        # a session of no process: nothing is read as a denial, the marker left out
        assert log.denials(session=-1) == []
    finally:
        log.close()


def test_argument_conditions_all_hold_or_each_alone() -> None:
    def rule(*args: dict[str, Any]) -> dict[str, Any]:
        return {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22, "args": [*args]}
            ],
        }

    one = rule({"index": 0, "value": 1, "op": "SCMP_CMP_EQ"})
    assert in_child_with_filter(one, lambda: os.getpgid(1)) == "EINVAL"
    assert in_child_with_filter(one, lambda: os.getpgid(0)) == "ok"
    # two conditions on the same argument: one rule each (either denies), as runc makes them
    either = rule(
        {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
    )
    assert in_child_with_filter(either, lambda: os.getpgid(0)) == "EINVAL"
    assert in_child_with_filter(either, lambda: os.getpgid(1)) == "EINVAL"
    assert in_child_with_filter(either, lambda: os.getpgid(os.getpid())) == "ok"
    odd = rule({"index": 0, "value": 1, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"})
    assert in_child_with_filter(odd, lambda: os.getpgid(1)) == "EINVAL"
    assert in_child_with_filter(odd, lambda: os.getpgid(0)) == "ok"


def test_docker_default_denies_the_keyrings_and_user_namespaces() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def call(number: int, *args: object) -> Callable[[], None]:
        def run() -> None:
            if libc.syscall(number, *args) < 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))

        return run

    doc = default_doc()
    add_key, keyctl, clone3 = 248, 250, 435  # x86_64
    if os.uname().machine != "x86_64":
        pytest.skip("system call numbers of x86_64")
    assert in_child_with_filter(doc, call(add_key, b"user", b"k", b"v", 1, -3)) == "EPERM"
    assert in_child_with_filter(doc, call(keyctl, 0, -3, 0)) == "EPERM"
    assert in_child_with_filter(doc, lambda: linux.unshare(linux.Clone.NEWUSER)) == "EPERM"
    assert in_child_with_filter(doc, call(clone3, 0, 0)) == "ENOSYS"
    assert json.dumps(doc)  # the document stays plain JSON (it is kept in config.json)
