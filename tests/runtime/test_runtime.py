"""``dockscope run`` for real, as root: isolation, privileges, docker's command semantics,
limits, the writable layer and the trace.

The image is the busybox sample (``make_samples.py --busybox``), built once per session. Every
container of this module lives in one state root (the layer is unpacked once); the host's
hostname, mounts and control groups are compared before and after.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from runtime_lab.kernel.hardening import MASKED_GLOBS, MASKED_PATHS, READONLY_PATHS
from runtime_lab.trace.steps import plan
from tests.image.test_busybox_image import load_generator
from tests.support.cli import DOCKSCOPE, dockscope, invoke, ok
from tests.support.paths import CORPUS
from tests.support.runtime import (
    ROOT_CAPABILITIES,
    events,
    groups_named,
    mounts_naming,
    my_groups,
    needs_root,
    processes_with,
    ps,
    status_fields,
    step,
)

pytestmark = needs_root

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def image(busybox_image: Path) -> Path:
    return busybox_image


@pytest.fixture(scope="module")
def app_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """busybox with an Entrypoint, a Cmd, Env, a WorkingDir and a User, as Dockerfiles set."""
    out = tmp_path_factory.mktemp("app") / "app.tar"
    runtime = {
        "User": "user",
        "Env": [PATH, "GREETING=hello"],
        "Entrypoint": ["echo", "entry"],
        "Cmd": ["default"],
        "WorkingDir": "/home/user",
    }
    load_generator("busybox").make_busybox(out, runtime=runtime, tag="dockscope/app:latest")
    return out


# the default network, bridge: /etc/hosts and /etc/resolv.conf are bind-mounted
NETWORK_FILES = {"/etc/hosts", "/etc/resolv.conf"}


def run(root: Path, image: Path, *command: str, opts: tuple[str, ...] = ()) -> tuple[int, str, str]:
    """``dockscope run --rm OPTS IMAGE COMMAND…``: exit code, stdout, stderr."""
    result = dockscope(root, "run", "--rm", *opts, image, *command)
    return result.code, result.out, result.err


# -- isolation ----------------------------------------------------------------------------------


def test_hostname_is_the_containers_own(root: Path, image: Path) -> None:
    host = socket.gethostname()
    code, out, _ = run(root, image, "sh", "-c", "hostname; cat /etc/hostname 2>/dev/null; true")
    assert code == 0
    assert len(out.split()[0]) == 12 and out.split()[0] != host  # the short container ID
    code, out, _ = run(
        root, image, "sh", "-c", "hostname; echo $HOSTNAME", opts=("--hostname", "lab")
    )
    assert out.split() == ["lab", "lab"]
    assert socket.gethostname() == host


def test_default_hostname_is_the_short_id(root: Path, image: Path) -> None:
    result = dockscope(root, "run", "--name", "named", image, "hostname")
    container = ps(root)["named"]
    assert ok(result).strip() == container["id"][:12]
    ok(dockscope(root, "rm", "named"))


def test_command_is_pid_1_and_sees_only_its_processes(root: Path, image: Path) -> None:
    script = "echo $$; for p in /proc/[0-9]*; do echo ${p#/proc/}; done; sleep 0.2 & ps -o pid,args"
    code, out, _ = run(root, image, "sh", "-c", script)
    assert code == 0
    lines = out.splitlines()
    assert lines[:2] == ["1", "1"]  # $$, and the only process in /proc
    assert lines[2].split() == ["PID", "COMMAND"]
    table = {int(line.split()[0]): line.split(None, 1)[1] for line in lines[3:]}
    assert "sh -c echo $$" in table[1]  # (busybox shows "{ps} sh -c…" if ps ran in PID 1)
    assert max(table) <= 3  # sh, the sleep it started, maybe ps: nothing of the host
    assert any("sleep 0.2" in args for args in table.values())


def test_mounts_stay_inside(root: Path, image: Path) -> None:
    before = mounts_naming(root)
    code, out, _ = run(root, image, "cat", "/proc/self/mountinfo")
    assert code == 0
    inside = {line.split()[4]: line for line in out.splitlines()}
    # the protections' mounts: docker's read-only and masked paths this kernel has
    protections = {p for p in (*READONLY_PATHS, *MASKED_PATHS) if os.path.exists(p)}
    protections |= set(glob.glob(MASKED_GLOBS[0]))
    expected = {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"} | NETWORK_FILES
    assert set(inside) == expected | protections
    assert all(inside[p].split()[5].startswith("ro") for p in READONLY_PATHS if p in inside)
    assert " - overlay " in inside["/"]
    assert " ro," in inside["/sys"] or inside["/sys"].split()[5].startswith("ro")
    assert mounts_naming(root) == before


def test_mounts_of_a_running_container_are_invisible_to_the_host(root: Path, image: Path) -> None:
    container_id = ok(dockscope(root, "run", "-d", image, "sleep", "30")).strip()
    try:
        merged = root / "containers" / container_id / "merged"
        assert not mounts_naming(merged)
        assert not list(merged.iterdir())  # the overlay is mounted in the container only
    finally:
        ok(dockscope(root, "rm", "-f", container_id))
    assert not (root / "containers" / container_id).exists()


def test_network_none_has_only_lo_and_it_is_up(root: Path, image: Path) -> None:
    script = "cat /proc/net/dev; ip -o link show lo"
    code, out, _ = run(root, image, "sh", "-c", script, opts=("--net", "none"))
    assert code == 0
    lines = out.splitlines()
    assert [line.split(":")[0].strip() for line in lines[2:-1]] == ["lo"]  # /proc/net/dev
    assert lines[-1].startswith("1: lo: <")  # ip -o link show lo
    assert "UP" in lines[-1].split("<")[1].split(">")[0].split(",")


def test_network_host_shares_the_hosts_interfaces(root: Path, image: Path) -> None:
    code, out, _ = run(root, image, "cat", "/proc/net/dev", opts=("--net", "host"))
    assert code == 0
    names = {line.split(":")[0].strip() for line in out.splitlines()[2:]}
    assert names == {name for _, name in socket.if_nameindex()}


# -- privileges ---------------------------------------------------------------------------------


def test_root_keeps_dockers_default_capabilities(root: Path, image: Path) -> None:
    code, out, _ = run(root, image, "cat", "/proc/self/status")
    assert code == 0
    fields = status_fields(out)
    assert fields["CapEff"] == ROOT_CAPABILITIES
    assert fields["CapPrm"] == ROOT_CAPABILITIES
    assert fields["CapBnd"] == ROOT_CAPABILITIES
    assert fields["CapInh"] == "0000000000000000"
    assert fields["CapAmb"] == "0000000000000000"
    assert fields["NoNewPrivs"] == "1"


def test_non_root_user_has_no_capabilities(root: Path, image: Path) -> None:
    code, out, _ = run(root, image, "cat", "/proc/self/status", opts=("-u", "nobody"))
    assert code == 0
    fields = status_fields(out)
    assert fields["Uid"].split() == ["65534"] * 4
    assert fields["CapEff"] == fields["CapPrm"] == fields["CapInh"] == "0000000000000000"
    assert fields["CapBnd"] == ROOT_CAPABILITIES
    assert fields["NoNewPrivs"] == "1"


def test_root_in_the_container_cannot_administer(root: Path, image: Path) -> None:
    """No CAP_SYS_ADMIN: root cannot rename the host it shares, nor mount."""
    script = "hostname other 2>&1; echo $?; mount -t tmpfs t /tmp 2>&1; echo $?; hostname"
    code, out, _ = run(root, image, "sh", "-c", script, opts=("--hostname", "inside"))
    assert code == 0
    assert out.splitlines() == [
        "hostname: sethostname: Operation not permitted",
        "1",
        "mount: permission denied (are you root?)",  # EPERM, as busybox words it
        "1",
        "inside",
    ]


def test_users_come_from_the_images_passwd(root: Path, image: Path) -> None:
    code, out, _ = run(root, image, "id", opts=("-u", "nobody"))
    assert out.strip() == "uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)"
    script = "id -u; id -g; echo $HOME; touch /root/x"
    code, out, _ = run(root, image, "sh", "-c", script, opts=("-u", "user"))
    assert code == 1
    assert out.split() == ["1000", "1000", "/home/user"]
    code, out, _ = run(root, image, "id", "-u", opts=("-u", "4321:4322"))
    assert (code, out.strip()) == (0, "4321")
    code, out, _ = run(root, image, "id", "-G", opts=("-u", "user:root"))
    assert (code, out.strip()) == (0, "0")


def test_unknown_user_fails_with_a_message(root: Path, image: Path) -> None:
    code, out, err = run(root, image, "id", opts=("-u", "nosuch"))
    assert code == 126
    assert out == ""
    assert "unable to find user nosuch" in err
    assert "Traceback" not in err


# -- docker's command semantics ---------------------------------------------------------------


def test_cmd_and_its_replacement(root: Path, image: Path) -> None:
    assert run(root, image) == (0, "", "")  # Cmd ["sh"] with stdin at /dev/null
    assert run(root, image, "echo", "hi")[:2] == (0, "hi\n")


def test_entrypoint_and_cmd(root: Path, app_image: Path) -> None:
    assert run(root, app_image)[:2] == (0, "entry default\n")
    assert run(root, app_image, "a", "b")[:2] == (0, "entry a b\n")  # args replace Cmd
    assert run(root, app_image, opts=("--entrypoint", "echo"))[:2] == (0, "\n")  # Cmd dropped too
    assert run(root, app_image, "echo", "only", opts=("--entrypoint", ""))[:2] == (0, "only\n")


def test_env_workdir_and_user_from_the_config(root: Path, app_image: Path) -> None:
    script = "pwd; id -un; echo $GREETING; echo $HOME; echo $PATH"
    code, out, _ = run(root, app_image, "-c", script, opts=("--entrypoint", "sh"))
    assert code == 0
    assert out.splitlines() == ["/home/user", "user", "hello", "/home/user", PATH[5:]]


def test_options_override_the_config(root: Path, app_image: Path) -> None:
    script = "echo $GREETING $NEW; pwd; id -u; echo $HOSTNAME"
    opts = ("-e", "GREETING=bye", "-e", "NEW=1", "-w", "/new/dir", "-u", "root", "--hostname", "h2")
    code, out, _ = run(root, app_image, "-c", script, opts=(*opts, "--entrypoint", "sh"))
    assert code == 0
    assert out.splitlines() == ["bye 1", "/new/dir", "0", "h2"]  # docker makes the workdir


def test_exit_status_is_passed_through(root: Path, image: Path) -> None:
    assert run(root, image, "sh", "-c", "exit 7")[0] == 7
    code, _, err = run(root, image, "nosuchcommand")
    assert code == 127
    assert "nosuchcommand" in err
    assert run(root, image, "/etc/passwd")[0] == 126  # not executable


def test_pid_1_ignores_a_signal_it_has_no_handler_for(root: Path, image: Path) -> None:
    """As in docker without --init: the kernel does not deliver SIGTERM to a namespace's init
    unless it handles it, so the shell goes on (a real crash still kills it: test_faults)."""
    code, out, _ = run(root, image, "sh", "-c", "kill -TERM $$; echo alive")
    assert (code, out) == (0, "alive\n")
    code, out, _ = run(root, image, "sh", "-c", "trap 'exit 143' TERM; kill -TERM $$; sleep 5")
    assert code == 143


# -- limits ---------------------------------------------------------------------------------


def test_memory_limit_kills_with_137_and_records_it(root: Path, image: Path) -> None:
    trace = root.parent / "oom.jsonl"
    result = dockscope(
        root,
        *("run", "--name", "oom", "--memory", "16m", "--trace-json", trace, image),
        *("sh", "-c", 'x=a; while :; do x="$x$x"; done'),
    )
    assert result.code == 137
    assert "killed by the memory limit" in result.err
    container = ps(root)["oom"]
    assert (container["exit_code"], container["oom_killed"]) == (137, True)
    found = events(trace)
    written = {
        Path(w["file"]).name: w["value"]
        for w in step(found, "cgroup-limits")["evidence"]["written"]
    }
    assert written["memory.limit_in_bytes"] == str(16 * 1024 * 1024)
    assert step(found, "exit")["evidence"]["oom_killed"] is True
    ok(dockscope(root, "rm", "oom"))


def test_pids_limit_contains_a_fork_bomb(root: Path, image: Path) -> None:
    marker = "1777.25"  # sleep's argument marks the bomb's processes
    trace = root.parent / "pids.jsonl"
    bomb = f"bomb() {{ sleep {marker} & bomb & }}; bomb; sleep 1; echo survived"
    started = time.monotonic()
    result = dockscope(
        root,
        *("run", "--rm", "--pids-limit", "20", "--trace-json", trace, image, "sh", "-c", bomb),
        timeout=30,
    )
    assert time.monotonic() - started < 20
    assert result.code in (0, 2)  # PID 1 finished, or could not fork its own sleep
    found = events(trace)
    assert step(found, "cgroup-limits")["evidence"]["written"] == []
    written = [
        (Path(w["file"]).name, w["value"])
        for w in step(found, "cgroup-release")["evidence"]["written"]
    ]
    assert written[-1] == ("pids.max", "20")  # once the shim has left the group
    at_exit = {Path(k).name: v for k, v in step(found, "exit")["evidence"]["cgroup"].items()}
    if "pids.peak" in at_exit:
        assert int(at_exit["pids.peak"]) <= 20
    assert int(at_exit["pids.events"].split()[1]) > 0  # forks refused
    assert not processes_with(f"sleep {marker}")  # every one went with PID 1
    assert subprocess.run(["true"], check=False).returncode == 0  # the host still forks


@pytest.mark.parametrize("limit", [1, 4])
def test_pids_limit_n_allows_exactly_n_processes(root: Path, image: Path, limit: int) -> None:
    """docker's --pids-limit N: N processes in the container (its shim is outside the
    group). PID 1 and N-1 sleeps fit; one more fork fails and the shell gives up (exit 2)."""
    script = (
        f"i=1; while [ $i -lt {limit} ]; do sleep 100 & i=$((i+1)); done; echo {limit} fit;"
        " sleep 100 & echo one more"
    )
    trace = root.parent / f"pids-{limit}.jsonl"
    result = dockscope(
        root,
        "run",
        "--rm",
        "--pids-limit",
        str(limit),
        "--trace-json",
        trace,
        image,
        "sh",
        "-c",
        script,
    )
    assert (result.code, result.out) == (2, f"{limit} fit\n")
    assert "can't fork: Resource temporarily unavailable" in result.err
    found = events(trace)
    shim = step(found, "fork-shim")["evidence"]["shim_pid"]
    released = step(found, "cgroup-release")["evidence"]
    init = step(found, "fork-init")["evidence"]["host_pid"]
    assert released["procs"] == [init]  # the shim is no longer in the group
    pids_group = Path(step(found, "cgroup-create")["evidence"]["paths"]["pids"])
    assert (str(pids_group.parent.parent / "cgroup.procs"), str(shim)) in [
        (w["file"], w["value"]) for w in released["written"]
    ]
    at_exit = {Path(k).name: v for k, v in step(found, "exit")["evidence"]["cgroup"].items()}
    assert at_exit["pids.max"] == str(limit)
    assert int(at_exit["pids.events"].split()[1]) >= 1


def test_cpus_sets_the_cfs_quota(root: Path, image: Path) -> None:
    trace = root.parent / "cpus.jsonl"
    ok(dockscope(root, "run", "--rm", "--cpus", "0.5", "--trace-json", trace, image, "true"))
    found = events(trace)
    written = step(found, "cgroup-limits")["evidence"]["written"]
    assert [(Path(w["file"]).name, w["value"]) for w in written] == [
        ("cpu.cfs_period_us", "100000"),
        ("cpu.cfs_quota_us", "50000"),
    ]
    assert all(Path(w["file"]).parent.parent.name == "dockscope" for w in written)
    values = {
        Path(k).name: v for k, v in step(found, "cgroup-limits")["evidence"]["values"].items()
    }
    assert values["cpu.cfs_quota_us"] == "50000"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--memory", "1k", "the minimum is 6m"),
        ("--memory", "lots", "not a memory size"),
        ("--cpus", "0.001", "from 0.01"),
        ("--cpus", "100000", "the CPUs this machine has"),
        ("--pids-limit", "0", "at least 1"),
    ],
)
def test_limits_out_of_range_are_refused(
    tmp_path: Path, image: Path, option: str, value: str, message: str
) -> None:
    state_root = tmp_path / "state"
    result = invoke("run", "--root", str(state_root), option, value, str(image))
    assert result.code == 2
    assert message in result.err
    assert not state_root.exists()


def test_cgroup_is_removed_at_exit(root: Path, image: Path) -> None:
    trace = root.parent / "cgroup.jsonl"
    ok(dockscope(root, "run", "--rm", "--memory", "32m", "--trace-json", trace, image, "true"))
    found = events(trace)
    paths = [Path(p) for p in step(found, "cgroup-create")["evidence"]["paths"].values()]
    assert paths and all(p.name == paths[0].name for p in paths)
    assert not any(p.exists() for p in paths)
    assert sorted(step(found, "cleanup")["evidence"]["removed"]) == sorted(map(str, paths))


# -- the writable layer -----------------------------------------------------------------------


def test_diff_of_the_writable_layer(root: Path, image: Path) -> None:
    script = (
        "echo x > /tmp/new; rm /etc/group; echo y >> /etc/passwd; mkdir /home/user/d;"
        " rm -r /var/spool; ln -s /tmp/new /root/link"
    )
    ok(dockscope(root, "run", "--name", "changes", image, "sh", "-c", script))
    assert ok(dockscope(root, "container", "diff", "changes")).splitlines() == [
        "C /etc",
        "D /etc/group",
        "C /etc/passwd",
        "C /home",
        "C /home/user",
        "A /home/user/d",
        "C /root",
        "A /root/link",
        "C /tmp",
        "A /tmp/new",
        "C /var",
        "D /var/spool",
    ]
    upper = root / "containers" / ps(root)["changes"]["id"] / "upper"
    whiteout = os.lstat(upper / "etc" / "group")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0  # overlay's deletion mark
    assert (upper / "tmp" / "new").read_text() == "x\n"
    ok(dockscope(root, "rm", "changes"))


def test_diff_of_a_container_on_a_copy_of_its_image(root: Path, image: Path) -> None:
    """Without overlayfs (DOCKSCOPE_ROOTFS=copy) the container writes into a plain copy: its
    diff compares that copy with the image's layers, entry by entry, and says the same as an
    overlay container's for the same writes."""
    script = "echo x > /tmp/new; rm /etc/group; echo y >> /etc/passwd; rm -r /var/spool"
    copy = {"DOCKSCOPE_ROOTFS": "copy"}
    ok(dockscope(root, "run", "--name", "copied", image, "sh", "-c", script, env=copy))
    ok(dockscope(root, "run", "--name", "layered", image, "sh", "-c", script))
    assert ps(root)["copied"]["id"] != ps(root)["layered"]["id"]
    expected = ["C /etc", "D /etc/group", "C /etc/passwd", "C /tmp", "A /tmp/new", "C /var"]
    expected.append("D /var/spool")
    for name in ("copied", "layered"):
        assert ok(dockscope(root, "container", "diff", name)).splitlines() == expected, name
    document = json.loads(ok(dockscope(root, "container", "diff", "--json", "copied")))
    assert (document["driver"], document["method"]) == ("copy", "naive")
    ok(dockscope(root, "rm", "copied", "layered"))


def test_diff_json_has_engine_storages_shape(root: Path, image: Path, tmp_path: Path) -> None:
    """One shape for container diff --json: a dockscope container's document is engine
    storage's (RFC 3339 times, "0644" modes, deletions timed by their whiteout)."""
    script = "echo x > /tmp/new; rm /etc/group; ln -s /tmp/new /root/link"
    ok(dockscope(root, "run", "--name", "shape", image, "sh", "-c", script))
    ours = json.loads(ok(dockscope(root, "container", "diff", "--json", "shape")))
    upper = root / "containers" / ps(root)["shape"]["id"] / "upper"
    whiteout = os.lstat(upper / "etc" / "group")
    ok(dockscope(root, "rm", "shape"))
    subprocess.run(
        ["tar", "xzf", str(CORPUS / "docker-root-overlay2.tgz"), "-C", str(tmp_path)], check=True
    )
    engine = json.loads(
        ok(
            dockscope(
                root,
                "container",
                "diff",
                "--json",
                "--root",
                tmp_path / "docker",
                "festive_perlman",
            )
        )
    )
    assert set(ours) - {"volumes"} == set(engine)
    assert ours["engine"] == "dockscope" and ours["container"]["name"] == "shape"
    assert ours["summary"] == {"added": 2, "changed": 3, "deleted": 1, "engine": 0, "hidden": 0}
    rfc3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
    for change in ours["changes"] + engine["changes"]:
        assert set(change) == set(engine["changes"][0])
        assert rfc3339.fullmatch(change["mtime"])
        assert change["mode"] is None or re.fullmatch(r"[0-7]{4}", change["mode"])
    by_path = {c["path"]: c for c in ours["changes"]}
    new = by_path["/tmp/new"]
    assert (new["kind"], new["type"], new["size"], new["mode"]) == ("A", "file", 2, "0644")
    assert (new["uid"], new["gid"], new["evidence"]) == (0, 0, str(upper / "tmp" / "new"))
    assert by_path["/root/link"]["link"] == "/tmp/new"
    gone = by_path["/etc/group"]
    assert (gone["kind"], gone["change"], gone["type"], gone["mode"]) == (
        "D",
        "deleted",
        None,
        None,
    )
    ns = whiteout.st_mtime_ns
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9))
    assert gone["mtime"].startswith(seconds)  # the whiteout's time: when it was deleted


# -- the trace --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traced(root: Path, image: Path) -> list[dict[str, Any]]:
    trace = root.parent / "trace.jsonl"
    ok(
        dockscope(
            root,
            *("run", "--rm", "--memory", "32m", "--cpus", "0.5", "--pids-limit", "50"),
            *("--trace-json", trace, image, "true"),
        )
    )
    return events(trace)


def test_trace_has_every_planned_step(traced: list[dict[str, Any]]) -> None:
    done = [e["step"] for e in traced if e["phase"] == "done"]
    planned = plan(
        network="bridge", limits=True, rootfs_mode="overlay", traced=True, auto_remove=True
    )
    assert set(done) == {s.id for s in planned}
    assert all(e["result"] == "ok" for e in traced)
    outside = ("fork-init", "cgroup-release", "exit", "cleanup", "remove")
    in_container = [s for s in done if s not in outside]
    assert in_container.index("unshare") < in_container.index("mount-rootfs")
    assert in_container.index("mount-rootfs") < in_container.index("pivot_root")
    assert in_container.index("pivot_root") < in_container.index("user")
    assert done[-3:] == ["exit", "cleanup", "remove"]


def test_trace_says_what_becomes_of_the_writable_layer(root: Path, image: Path) -> None:
    """--rm removes the container: the narration says so and shows the removal as a step;
    without --rm it says the writable layer stays until 'dockscope rm'."""
    result = dockscope(root, "run", "--rm", "--trace", image, "true")
    ok(result)
    assert "stays until" not in result.err
    assert "--rm removes the container and its writable layer next" in result.err
    assert "Remove the container (--rm)" in result.err
    removed = [line.split(": ", 1)[1] for line in result.err.splitlines() if "removed: " in line]
    containers = [Path(p) for p in removed if "/containers/" in p]
    assert len(containers) == 1 and not containers[0].exists()
    result = dockscope(root, "run", "--name", "kept", "--trace", image, "true")
    ok(result)
    assert "Remove the container" not in result.err
    upper = root / "containers" / ps(root)["kept"]["id"] / "upper"
    assert f"writable_layer: kept in {upper} until 'dockscope rm kept'" in result.err
    assert upper.is_dir()
    ok(dockscope(root, "rm", "kept"))
    explained = ok(dockscope(root, "run", "--rm", "--explain", image))
    assert "Remove the container (--rm)" in explained and "stays until" not in explained
    assert "stays until 'dockscope rm'" in ok(dockscope(root, "run", "--explain", image))


def test_trace_unshare_names_the_flags_and_the_namespaces_change(
    traced: list[dict[str, Any]],
) -> None:
    event = step(traced, "unshare")
    assert event["syscall"] == "unshare"
    assert set(event["args"]["flags"]) == {
        "CLONE_NEWNS",
        "CLONE_NEWUTS",
        "CLONE_NEWIPC",
        "CLONE_NEWPID",
        "CLONE_NEWNET",
        "CLONE_NEWCGROUP",
    }
    before = event["evidence"]["namespaces_before"]
    after = event["evidence"]["namespaces_after"]
    host = {name: os.stat(f"/proc/self/ns/{name}").st_ino for name in before}
    assert before == host
    for name in ("mnt", "uts", "ipc", "net", "cgroup"):
        assert after[name] != before[name], name
    assert after["pid"] == before["pid"]  # a new PID namespace is for the children…
    fork = step(traced, "fork-init")["evidence"]
    assert fork["pid_namespace"] != before["pid"]  # …the first one is its PID 1
    assert fork["container_pid"] == 1
    assert after["user"] == before["user"]


def test_trace_pivot_root_and_mounts(traced: list[dict[str, Any]]) -> None:
    event = step(traced, "pivot_root")
    assert event["syscall"] == "pivot_root"
    mounts = {line.split()[4] for line in event["evidence"]["mountinfo"]}
    assert mounts == {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"} | NETWORK_FILES
    rootfs = step(traced, "mount-rootfs")
    assert rootfs["args"]["fstype"] == "overlay"
    assert " - overlay overlay " in rootfs["evidence"]["mountinfo"][0]


def test_trace_names_each_cgroup_file_written(traced: list[dict[str, Any]]) -> None:
    created = step(traced, "cgroup-create")["evidence"]["paths"]
    limits = step(traced, "cgroup-limits")["evidence"]["written"]
    expected = [
        ("memory", "memory.limit_in_bytes", str(32 * 1024 * 1024)),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
    ]
    if Path(created["memory"], "memory.memsw.limit_in_bytes").exists() or any(
        w["file"].endswith("memsw.limit_in_bytes") for w in limits
    ):
        expected.insert(1, ("memory", "memory.memsw.limit_in_bytes", str(32 * 1024 * 1024)))
    assert [(w["file"], w["value"]) for w in limits] == [
        (str(Path(created[c]) / name), value) for c, name, value in expected
    ]
    shim = step(traced, "fork-shim")["evidence"]["shim_pid"]
    attach = step(traced, "cgroup-attach")["evidence"]["written"]
    assert sorted(w["file"] for w in attach) == sorted(
        str(Path(p) / "cgroup.procs") for p in created.values()
    )
    assert {w["value"] for w in attach} == {str(shim)}
    released = step(traced, "cgroup-release")["evidence"]["written"]
    assert released[-1] == {"file": str(Path(created["pids"]) / "pids.max"), "value": "50"}
    assert {w["value"] for w in released[:-1]} == {str(shim)}
    assert sorted(w["file"] for w in released[:-1]) == sorted(
        str(Path(p).parent.parent / "cgroup.procs") for p in created.values()
    )
    # the kernel's wait, taken early: dockscope's own PID into its own pids group, so nothing
    # moved (runtime_lab/kernel/warmup.py)
    warmup = step(traced, "cgroup-attach")["evidence"]["warmup"]
    assert warmup["file"] == str(Path(created["pids"]).parent.parent / "cgroup.procs")
    assert warmup["value"] == str(step(traced, "cgroup-attach")["pid"])
    assert warmup["writes"] >= 1 and "refused" not in warmup


def test_trace_capabilities_user_and_exec(traced: list[dict[str, Any]]) -> None:
    caps = step(traced, "capabilities")["evidence"]
    assert caps["status"]["CapEff"] == ROOT_CAPABILITIES
    assert 21 in caps["dropped"]  # CAP_SYS_ADMIN
    user = step(traced, "user")["evidence"]
    assert (user["uid"], user["gid"]) == (0, 0)
    exec_event = step(traced, "exec")
    assert exec_event["args"]["argv"] == ["true"]
    assert any(v.startswith("HOSTNAME=") for v in exec_event["evidence"]["env"])
    # the default network, bridge: eth0 is in place before PID 1 brings lo up
    assert step(traced, "loopback")["evidence"]["interfaces"] == ["eth0", "lo"]


# -- --explain ----------------------------------------------------------------------------------


# The interpreter may live where uid 65534 cannot read (pyenv under /root): this runs
# dockscope's CLI once as root with its output thrown away, so that every module it imports is
# loaded, then drops to uid/gid 65534 for good and runs the command that counts.
AS_NOBODY = """
import contextlib, io, os, sys
from inspect_tool.cli import app
args = sys.argv[1:]
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    with contextlib.suppress(SystemExit):
        app(args=["run", "--explain", *args[-3:]], prog_name="dockscope")
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
assert os.geteuid() == 65534 and os.getuid() == 65534
app(args=args, prog_name="dockscope")
"""


def test_explain_needs_no_root_and_changes_nothing(image: Path) -> None:
    shared = Path(tempfile.mkdtemp(prefix="dockscope-explain-"))
    try:
        shared.chmod(0o755)
        copy = shared / "busybox.tar"
        shutil.copyfile(image, copy)
        copy.chmod(0o644)
        state_root = shared / "state"
        groups = my_groups()
        env = dict(os.environ, HOME=str(shared), NO_COLOR="1", DOCKSCOPE_ROOT=str(state_root))

        def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [DOCKSCOPE[0], "-c", AS_NOBODY, "run", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
                cwd=shared,
            )

        explained = as_nobody("--explain", "--memory", "16m", str(copy), "echo", "hi")
        assert explained.returncode == 0, explained.stderr
        for title in ("Unshare the namespaces", "Switch to the container's root", "Drop"):
            assert title in explained.stdout
        assert '["echo", "hi"]' in explained.stdout
        # an ordinary user's plan is rootless: a user namespace first, no control group
        assert "Enter a user namespace (rootless)" in explained.stdout
        assert "No control group (rootless)" in explained.stdout
        assert "Create the control group" not in explained.stdout
        # an ordinary user's run goes rootless (test_rootless.py); here the state root it is
        # given is not its own to make: one line, exit 3, nothing made
        refused = as_nobody(str(copy), "echo", "hi")
        assert refused.returncode == 3, refused.stderr
        assert "cannot create the state directory" in refused.stderr
        assert not state_root.exists()
        assert my_groups() == groups
        assert not mounts_naming(shared)
    finally:
        shutil.rmtree(shared)


def test_no_group_left_by_this_module(root: Path) -> None:
    assert not groups_named(p.name for p in (root / "containers").iterdir())


def test_names_and_hostnames_follow_dockers_rules(root: Path, image: Path) -> None:
    for name in ("a", "-lead", "has space", "slash/y", "é"):
        refused = dockscope(root, "run", "--rm", "--name", name, image, "true")
        assert refused.code == 2 and "invalid container name" in refused.err, (name, refused)
    for hostname in ("x" * 65, "two words", ""):
        refused = dockscope(root, "run", "--rm", "--hostname", hostname, image, "true")
        assert refused.code == 2 and "invalid hostname" in refused.err, (hostname, refused)
    out = ok(
        dockscope(
            root, "run", "--rm", "--name", "ok_1.x-y", "--hostname", "h" * 64, image, "hostname"
        )
    )
    assert out.strip() == "h" * 64
