"""--cap-add, --cap-drop and --privileged, probed from inside real containers (as root), with
the rules (names, ALL, the kernel's list) checked without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspect_tool.errors import UsageError
from runtime_lab.kernel.capabilities import CapabilityOptions, known_capabilities, mask
from runtime_lab.spec import DEFAULT_CAPABILITIES
from tests.support.cli import dockscope, ok
from tests.support.runtime import events, needs_root, status_fields, step

pytestmark = needs_root

DOCKER_DEFAULT_CAPEFF = "00000000a80425fb"  # what docker's containers show in /proc/self/status


def cap_eff(root: Path, image: Path, *opts: str) -> str:
    out = ok(dockscope(root, "run", "--rm", *opts, image, "grep", "CapEff", "/proc/self/status"))
    return out.split()[1]


# -- the rules, as moby's TweakCapabilities -------------------------------------------------------


def test_names_with_or_without_cap_and_in_any_case() -> None:
    options = CapabilityOptions.parse(["net_admin", "CAP_SYS_TIME"], ["Net_Raw"])
    assert options.add == ("CAP_NET_ADMIN", "CAP_SYS_TIME")
    assert options.drop == ("CAP_NET_RAW",)
    caps = options.capabilities()
    assert "CAP_NET_RAW" not in caps and {"CAP_NET_ADMIN", "CAP_SYS_TIME"} <= set(caps)
    assert len(caps) == len(DEFAULT_CAPABILITIES) + 1


def test_all_on_either_side() -> None:
    every = known_capabilities()
    assert CapabilityOptions.parse(["ALL"], ["NET_RAW"]).capabilities() == [
        c for c in every if c != "CAP_NET_RAW"
    ]
    assert CapabilityOptions.parse(["CHOWN"], ["all"]).capabilities() == ["CAP_CHOWN"]
    assert CapabilityOptions.parse([], ["ALL"]).capabilities() == []
    assert CapabilityOptions.parse([], [], privileged=True).capabilities() == every
    assert CapabilityOptions.parse([], ["ALL"], privileged=True).capabilities() == every


def test_unknown_names_are_refused() -> None:
    with pytest.raises(UsageError, match="unknown capability: 'NET_FOO'"):
        CapabilityOptions.parse(["NET_FOO"])
    with pytest.raises(UsageError, match="does not know CAP_CHECKPOINT_RESTORE"):
        # a kernel whose cap_last_cap is 39 (before 5.9) has no CAP_CHECKPOINT_RESTORE
        from runtime_lab.kernel.capabilities import normalize

        normalize(["CHECKPOINT_RESTORE"], "--cap-add", last=39)


def test_default_mask_is_dockers() -> None:
    assert f"{mask(DEFAULT_CAPABILITIES):016x}" == DOCKER_DEFAULT_CAPEFF


def test_bad_name_is_a_usage_error_before_anything_is_made(tmp_path: Path) -> None:
    result = dockscope(tmp_path / "state", "run", "--cap-add", "BOGUS", "x.tar", "true")
    assert result.code == 2
    assert "unknown capability: 'BOGUS'" in result.err
    assert not (tmp_path / "state").exists()


def test_explain_says_what_changed(tmp_path: Path, busybox_image: Path) -> None:
    out = ok(
        dockscope(
            tmp_path,
            "run",
            "--explain",
            "--cap-drop",
            "NET_RAW",
            "--cap-add",
            "sys_admin",
            busybox_image,
        )
    )
    assert "14 kept, added CAP_SYS_ADMIN, dropped CAP_NET_RAW" in out
    out = ok(dockscope(tmp_path, "run", "--explain", "--privileged", busybox_image))
    assert "all (--privileged)" in out
    assert "Turn the protections off" in out
    assert "Mask what leaks about the host" not in out
    assert "Load the seccomp filter" not in out


# -- in real containers --------------------------------------------------------------------------


def test_capeff_follows_the_options(root: Path, busybox_image: Path) -> None:
    assert cap_eff(root, busybox_image) == DOCKER_DEFAULT_CAPEFF
    dropped = cap_eff(root, busybox_image, "--cap-drop", "NET_RAW")
    assert int(dropped, 16) == int(DOCKER_DEFAULT_CAPEFF, 16) & ~(1 << 13)
    added = cap_eff(root, busybox_image, "--cap-add", "CAP_SYS_ADMIN")
    assert int(added, 16) == int(DOCKER_DEFAULT_CAPEFF, 16) | (1 << 21)
    assert cap_eff(root, busybox_image, "--cap-drop", "ALL") == "0000000000000000"
    # every capability this kernel knows that dockscope itself holds (a sandbox may lack some)
    held = int(status_fields(Path("/proc/self/status").read_text())["CapPrm"], 16)
    assert (
        int(cap_eff(root, busybox_image, "--privileged"), 16) == mask(known_capabilities()) & held
    )


def test_cap_drop_net_raw_makes_ping_fail(root: Path, busybox_image: Path) -> None:
    ping = ("ping", "-c", "1", "-W", "1", "127.0.0.1")
    ok(dockscope(root, "run", "--rm", busybox_image, *ping))
    result = dockscope(root, "run", "--rm", "--cap-drop", "NET_RAW", busybox_image, *ping)
    assert result.code == 1
    assert "permission denied" in result.err.lower(), result.err


def test_cap_add_sys_admin_allows_mounting_tmpfs(root: Path, busybox_image: Path) -> None:
    script = "mkdir -p /mnt && mount -t tmpfs none /mnt && grep ' /mnt ' /proc/mounts"
    denied = dockscope(root, "run", "--rm", busybox_image, "sh", "-c", script)
    assert denied.code != 0
    assert "permission denied" in denied.err, denied.err
    out = ok(
        dockscope(root, "run", "--rm", "--cap-add", "SYS_ADMIN", busybox_image, "sh", "-c", script)
    )
    assert out.startswith("none /mnt tmpfs")


def test_privileged_turns_the_protections_off(
    root: Path, busybox_image: Path, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    script = (
        "grep -c . /proc/keys >/dev/null 2>&1; wc -c < /proc/keys; "
        "grep -E ' /(sys|proc/sys) ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1; "
        "ls /dev | grep -c ."
    )
    out = ok(
        dockscope(
            root,
            "run",
            "--rm",
            "--privileged",
            "--trace-json",
            trace,
            busybox_image,
            "sh",
            "-c",
            script,
        )
    )
    lines = out.splitlines()
    assert "/sys rw" in lines  # sysfs writable; /proc/sys not bound read-only
    assert not any(line.startswith("/proc/sys ") for line in lines)
    found = events(trace)
    steps = [e["step"] for e in found if e.get("phase", "done") == "done"]
    assert "privileged" in steps
    assert "masked-paths" not in steps and "readonly-paths" not in steps
    assert "seccomp" not in steps
    turned_off = step(found, "privileged")["evidence"]["turned_off"]
    assert any(line.startswith("seccomp") for line in turned_off)
    devices = step(found, "cgroup-devices")["evidence"]
    assert devices["devices.list"] == ["a *:* rwm"]
    dev = step(found, "mount-dev")["evidence"]
    assert dev["host_devices"], "no host device made in the container's /dev"
    assert int(lines[-1]) > 20


def test_exec_gets_the_containers_capabilities(root: Path, busybox_image: Path) -> None:
    name = "caps-exec"
    opts = ("--cap-drop", "NET_RAW", "--cap-add", "SYS_ADMIN")
    ok(dockscope(root, "run", "-d", "--name", name, *opts, busybox_image, "sleep", "600"))
    try:
        out = ok(dockscope(root, "exec", name, "grep", "CapEff", "/proc/self/status"))
        expected = int(DOCKER_DEFAULT_CAPEFF, 16) & ~(1 << 13) | (1 << 21)
        assert int(out.split()[1], 16) == expected
        inspected = dockscope(root, "container", "inspect", name).json()["config"]
        assert inspected["cap_add"] == ["CAP_SYS_ADMIN"]
        assert inspected["cap_drop"] == ["CAP_NET_RAW"]
        assert "CAP_NET_RAW" not in inspected["capabilities"]
    finally:
        dockscope(root, "rm", "-f", name)
