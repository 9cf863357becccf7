"""dockscope-runtime on bundles made here (runc spec's template, busybox rootfs): the
lifecycle create → start → state → kill → delete, the state document against the runtime
spec's state schema, hooks, exec, and the refusal of fields it does not implement."""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.oci.conftest import MakeBundle, Runtime, wait_for
from tests.support.runtime import needs_root

pytestmark = needs_root

STATUSES = {"creating", "created", "running", "stopped"}
# the runtime spec's own JSON schemas, as Debian's golang-github-opencontainers-specs-dev
# installs them (the Makefile's DEBS_TEST)
SPEC_SCHEMAS = Path("/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema")


@functools.cache
def official_state_validator() -> Any:
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    defs = json.loads((SPEC_SCHEMAS / "defs.json").read_text())
    state = json.loads((SPEC_SCHEMAS / "state-schema.json").read_text())
    registry: Any = Registry().with_resource(
        "defs.json", Resource(contents=defs, specification=DRAFT4)
    )
    return Draft4Validator(state, registry=registry)


def check_state_schema(doc: dict[str, Any]) -> None:
    """Validated against the runtime spec's schema/state-schema.json itself, then the rules
    of runtime.md the schema does not state: pid a uint32, required when created or running;
    ociVersion a semantic version; bundle an absolute path."""
    errors = [e.message for e in official_state_validator().iter_errors(doc)]
    assert errors == [], errors
    for key in ("ociVersion", "id", "status", "bundle"):
        assert key in doc, f"{key} is required"
    assert isinstance(doc["ociVersion"], str) and re.fullmatch(
        r"\d+\.\d+\.\d+(-.+)?", doc["ociVersion"]
    )
    assert isinstance(doc["id"], str) and doc["id"]
    assert doc["status"] in STATUSES
    if doc["status"] in ("created", "running"):
        assert "pid" in doc
    if "pid" in doc:
        assert isinstance(doc["pid"], int) and 0 <= doc["pid"] < 1 << 32
    assert isinstance(doc["bundle"], str) and doc["bundle"].startswith("/")
    if "annotations" in doc:
        assert isinstance(doc["annotations"], dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in doc["annotations"].items())


def status_line(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(name)


def test_state_schema_check_fails_on_bad_documents() -> None:
    good = {"ociVersion": "1.0.2", "id": "a", "status": "running", "pid": 5, "bundle": "/b"}
    check_state_schema(good)
    for bad in (
        {**good, "status": "paused-ish"},
        {k: v for k, v in good.items() if k != "pid"},
        {**good, "bundle": "relative"},
        {**good, "annotations": {"a": 1}},
    ):
        with pytest.raises(AssertionError):
            check_state_schema(bad)


def test_lifecycle_create_start_kill_delete(
    runtime: Runtime, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"

    def edit(doc: dict[str, Any]) -> None:
        doc["annotations"] = {"org.dockscope.trace": str(trace), "org.example": "yes"}
        doc["hostname"] = "ocitest"

    bundle = make_bundle(["sleep", "1000"], edit)
    cid = runtime.new_id()
    pid_file = tmp_path / "pid"
    runtime("create", "--bundle", bundle, "--pid-file", pid_file, cid)
    pid = int(pid_file.read_text())
    created = runtime.state(cid)
    check_state_schema(created)
    assert created["status"] == "created" and created["pid"] == pid
    assert created["bundle"] == str(bundle) and created["annotations"]["org.example"] == "yes"
    # created: PID 1 exists but has not executed the process yet (it is still the runtime)
    assert "sleep" not in Path(f"/proc/{pid}/cmdline").read_text()
    assert os.readlink(f"/proc/{pid}/root") == "/"  # as the process sees itself after pivot
    runtime("start", cid)
    assert wait_for(lambda: Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep"))
    running = runtime.state(cid)
    check_state_schema(running)
    assert running["status"] == "running"
    assert json.loads(runtime("list", "--format", "json").stdout)[0]["id"] == cid
    assert runtime("ps", "--format", "json", cid).stdout.strip() == f"[{pid}]"
    # second start is refused
    again = runtime("start", cid, check=False)
    assert again.returncode != 0 and "running" in again.stderr
    # delete without --force refuses a running container
    refused = runtime("delete", cid, check=False)
    assert refused.returncode != 0 and "not stopped" in refused.stderr
    runtime("kill", cid, "KILL")
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped")
    stopped = runtime.state(cid)
    check_state_schema(stopped)
    runtime("delete", cid)
    gone = runtime("state", cid, check=False)
    assert gone.returncode != 0 and "does not exist" in gone.stderr
    steps = [json.loads(line)["step"] for line in trace.read_text().splitlines()]
    for step in (
        "bundle",
        "cgroup-create",
        "unshare",
        "hostname",
        "mount",
        "pivot_root",
        "masked-paths",
        "created",
        "start",
        "capabilities",
        "exec",
        "kill",
        "delete",
    ):
        assert step in steps, step
    assert steps.index("created") < steps.index("start") < steps.index("exec")


def test_process_as_config_says(runtime: Runtime, make_bundle: MakeBundle, tmp_path: Path) -> None:
    """user, additionalGids, capabilities, rlimits, noNewPrivileges, cwd, env, hostname,
    oomScoreAdj, readonly root, masked paths: as /proc shows the process."""
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # written by uid 1000

    def edit(doc: dict[str, Any]) -> None:
        p = doc["process"]
        p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 0o077}
        doc["linux"]["devices"] = [
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640,
             "uid": 1000, "gid": 0}
        ]  # fmt: skip
        doc["linux"]["sysctl"] = {"kernel.msgmax": "4096"}
        p["cwd"] = "/tmp"
        p["env"] = ["PATH=/bin", "HELLO=world"]
        p["oomScoreAdj"] = 123
        p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 600}]
        # a non-root process keeps a capability across execve only as an ambient one
        sets = ("bounding", "effective", "permitted", "inheritable", "ambient")
        p["capabilities"] = {k: ["CAP_KILL"] for k in sets}
        doc["hostname"] = "spec-host"
        doc["mounts"].append(
            {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind", "rw"]}
        )
        doc["mounts"].append(
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}
        )

    script = (
        "cd /tmp; { pwd; id; hostname; echo $HELLO; ulimit -n; cat /proc/self/oom_score_adj; "
        "grep -E '^(Cap|NoNewPrivs)' /proc/self/status; cat /proc/kcore | wc -c; "
        "touch /rootfile 2>&1 || echo ro; umask; ls -ln /dev/mynull; cat /proc/sys/kernel/msgmax; "
        "} > /out/result"
    )
    bundle = make_bundle(["sh", "-c", script], edit)
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid)
    runtime("start", cid)
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped")
    runtime("delete", cid)
    lines = (out / "result").read_text().splitlines()
    assert lines[0] == "/tmp"
    assert re.fullmatch(r"uid=1000(\(\w+\))? gid=1000(\(\w+\))? groups=10,20", lines[1])
    assert lines[2:6] == ["spec-host", "world", "512", "123"]
    caps = dict(line.split(":\t") for line in lines[6:12])
    assert caps["CapBnd"] == "0000000000000020"  # CAP_KILL only
    assert caps["CapEff"] == caps["CapAmb"] == caps["CapInh"] == "0000000000000020"
    assert caps["NoNewPrivs"] == "1"  # runc's template sets noNewPrivileges
    assert lines[12] == "0"  # /proc/kcore masked by /dev/null
    assert "Read-only file system" in lines[13] and lines[14] == "ro"
    assert lines[15] == "0077"
    assert re.match(r"crw-r----- +1 1000 +0 +1, +3 ", lines[16]), lines[16]
    assert lines[17] == "4096"  # linux.sysctl, in the container's IPC namespace


def test_hooks_run_with_the_state_on_stdin(
    runtime: Runtime, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    log = tmp_path / "hooks.log"
    out = tmp_path / "out"
    out.mkdir()
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\n{{ echo "$1"; cat; echo; }} >> {log}\n')
    hook.chmod(0o755)

    def edit(doc: dict[str, Any]) -> None:
        doc["hooks"] = {
            kind: [{"path": str(hook), "args": ["hook.sh", kind]}]
            for kind in ("prestart", "createRuntime", "poststart", "poststop")
        }
        doc["hooks"]["poststop"].append({"path": "/nonexistent/hook"})  # a warning only
        # in the container's namespaces: before pivot_root (a host path), after start (a
        # path of the container, which sees /out)
        doc["hooks"]["createContainer"] = [
            {"path": str(hook), "args": ["hook.sh", "createContainer"]}
        ]
        doc["hooks"]["startContainer"] = [
            {
                "path": "/bin/sh",
                "args": ["sh", "-c", "cat > /out/start.json; hostname > /out/start.host"],
            }
        ]
        doc["hostname"] = "hooked"
        doc["mounts"].append(
            {"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]}
        )

    bundle = make_bundle(["true"], edit)
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid)
    runtime("start", cid)
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped")
    runtime("delete", cid)
    lines = log.read_text().splitlines()
    kinds = lines[0::2]
    assert kinds == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    assert json.loads((out / "start.json").read_text())["id"] == cid
    assert (out / "start.host").read_text() == "hooked\n"  # ran in the container's UTS
    states = [json.loads(line) for line in lines[1::2]]
    assert all(s["id"] == cid and s["bundle"] == str(bundle) for s in states)
    assert states[0]["pid"] > 0 and states[-1]["status"] == "stopped"


def test_failing_prestart_hook_stops_create(
    runtime: Runtime, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    log = tmp_path / "runtime.log"
    bundle = make_bundle(["true"], lambda d: d.update(hooks={"prestart": [{"path": "/bin/false"}]}))
    cid = runtime.new_id()
    proc = runtime(
        "--log", log, "--log-format", "json", "create", "--bundle", bundle, cid, check=False
    )
    assert proc.returncode != 0
    assert "hooks.prestart[0]: /bin/false exited 1" in proc.stderr
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "hooks.prestart[0]" in entry["msg"] and entry["time"]
    assert not (runtime.root / cid).exists()


def test_exec_joins_the_container(
    runtime: Runtime, make_bundle: MakeBundle, tmp_path: Path
) -> None:
    bundle = make_bundle(["sleep", "1000"], lambda d: d.update(hostname="execbox"))
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid)
    runtime("start", cid)
    process = tmp_path / "process.json"
    process.write_text(
        json.dumps(
            {
                "args": ["sh", "-c", "hostname; echo $$; exit 7"],
                "cwd": "/",
                "env": ["PATH=/bin"],
                "user": {"uid": 0, "gid": 0},
            }
        )
    )
    proc = runtime("exec", "--process", process, cid, check=False)
    assert proc.returncode == 7
    lines = proc.stdout.splitlines()
    assert lines[0] == "execbox"
    assert lines[1] == "2"  # PID 2 of the container's PID namespace
    pid_file = tmp_path / "exec.pid"
    runtime("exec", "--detach", "--pid-file", pid_file, cid, "sleep", "30")
    exec_pid = int(pid_file.read_text())
    assert exec_pid in json.loads(runtime("ps", "--format", "json", cid).stdout)
    runtime("kill", "--all", cid, "KILL")
    assert wait_for(lambda: runtime.state(cid)["status"] == "stopped")
    runtime("delete", cid)


def test_delete_force_kills_a_created_container(runtime: Runtime, make_bundle: MakeBundle) -> None:
    bundle = make_bundle(["sleep", "1000"])
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle, cid)
    pid = runtime.state(cid)["pid"]
    runtime("delete", "--force", cid)
    assert wait_for(
        lambda: (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
        )
    )
    assert runtime("delete", "--force", cid).returncode == 0  # gone already: fine with --force


REFUSALS = [
    ("linux.namespaces[user]", lambda d: d["linux"]["namespaces"].append({"type": "user"})),
    (
        "linux.uidMappings",
        lambda d: d["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]),
    ),
    ("process.apparmorProfile", lambda d: d["process"].update(apparmorProfile="docker-default")),
    (
        "process.selinuxLabel",
        lambda d: d["process"].update(selinuxLabel="system_u:system_r:container_t:s0"),
    ),
    ("linux.intelRdt", lambda d: d["linux"].update(intelRdt={"closID": "x"})),
    ("linux.personality", lambda d: d["linux"].update(personality={"domain": "LINUX32"})),
    ("linux.resources.blockIO", lambda d: d["linux"]["resources"].update(blockIO={"weight": 10})),
    (
        "linux.resources.hugepageLimits",
        lambda d: d["linux"]["resources"].update(hugepageLimits=[{"pageSize": "2MB", "limit": 1}]),
    ),
    (
        "linux.seccomp.flags",
        lambda d: d["linux"].update(
            seccomp={"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]}
        ),
    ),
    (
        "mounts[7].options",
        lambda d: d["mounts"].append(
            {"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}
        ),
    ),
    ("domainname", lambda d: d.update(domainname="example.org")),
    ("process.scheduler", lambda d: d["process"].update(scheduler={"policy": "SCHED_OTHER"})),
]


@pytest.mark.parametrize(("field", "edit"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_unsupported_fields_are_refused_by_name(
    runtime: Runtime, make_bundle: MakeBundle, tmp_path: Path, field: str, edit: Any
) -> None:
    bundle = make_bundle(["true"], edit)
    cid = runtime.new_id()
    log = tmp_path / "log.json"
    proc = runtime(
        "--log", log, "--log-format", "json", "create", "--bundle", bundle, cid, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert field in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert field in json.loads(log.read_text())["msg"]
    assert not (runtime.root / cid).exists()


def test_systemd_cgroup_is_refused(runtime: Runtime) -> None:
    proc = runtime("--systemd-cgroup", "state", "x", check=False)
    assert proc.returncode == 2 and "no systemd" in proc.stderr


def test_features_document() -> None:
    from runtime_lab.oci.features import features

    doc = features()
    assert doc["ociVersionMin"] == "1.0.0"
    assert "user" not in doc["linux"]["namespaces"] and "mount" in doc["linux"]["namespaces"]
    assert doc["linux"]["cgroup"]["systemd"] is False
    assert "SCMP_ACT_ERRNO" in doc["linux"]["seccomp"]["actions"]
    assert set(doc["hooks"]) == {
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    }
