"""dockscope-runtime's parts that need no root: config.json into typed values and its
refusals, linux.seccomp converted for libseccomp, runc's device rules, signals, IDs, and the
command line's grammar."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from inspect_tool.errors import UsageError
from runtime_lab.cli.oci_runtime import _normalise, main
from runtime_lab.oci import config as oci_config
from runtime_lab.oci.cgroup import effective_device_rules
from runtime_lab.oci.container import parse_signal
from runtime_lab.oci.seccomp_spec import resolve_spec
from runtime_lab.oci.state import check_id

BASE: dict[str, Any] = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": ["PATH=/bin"],
        "cwd": "/",
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "h",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/data",
            "type": "bind",
            "source": "/srv",
            "options": ["rbind", "ro", "rprivate"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "mode=755"],
        },
    ],
    "linux": {
        "namespaces": [
            {"type": "pid"},
            {"type": "mount"},
            {"type": "network", "path": "/run/netns/x"},
        ],
        "resources": {"memory": {"limit": 1048576}, "pids": {"limit": 10}},
        "maskedPaths": ["/proc/kcore"],
    },
}


def parse(edit: Any = None) -> oci_config.Config:
    doc = copy.deepcopy(BASE)
    if edit is not None:
        edit(doc)
    return oci_config.parse(doc, "/bundle")


def test_a_config_becomes_typed_values() -> None:
    c = parse()
    assert c.root_path == "/bundle/rootfs" and c.root_readonly
    assert c.process.capabilities.bounding == (5,) and c.process.capabilities.permitted == ()
    assert c.process.rlimits[0].number == 7 and c.process.no_new_privileges
    bind = c.mounts[1]
    assert (
        bind.bind
        and bind.flags & 1
        and bind.flags & 16384
        and bind.propagation == (1 << 18) | 16384
    )
    assert c.mounts[2].data == "mode=755" and c.mounts[2].flags == 2
    assert c.namespace("network") == oci_config.Namespace("network", "/run/netns/x")
    assert c.resources.memory_limit == 1048576 and c.resources.pids_limit == 10
    assert c.masked_paths == ("/proc/kcore",)


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("linux.namespaces[user]", lambda d: d["linux"]["namespaces"].append({"type": "user"})),
        ("linux.namespaces[time]", lambda d: d["linux"]["namespaces"].append({"type": "time"})),
        ("linux.namespaces: without a mount namespace", lambda d: d["linux"].update(namespaces=[])),
        ("linux.gidMappings", lambda d: d["linux"].update(gidMappings=[{"size": 1}])),
        ("process.rlimits[0].type", lambda d: d["process"]["rlimits"][0].update(type="RLIMIT_X")),
        (
            "process.ioPriority",
            lambda d: d["process"].update(ioPriority={"class": "IOPRIO_CLASS_RT"}),
        ),
        (
            "linux.resources.memory.kernel",
            lambda d: d["linux"]["resources"]["memory"].update(kernel=1),
        ),
        ("linux.resources.unified", lambda d: d["linux"]["resources"].update(unified={"a": "b"})),
        (
            "linux.seccomp.syscalls[0].args[0].op",
            lambda d: d["linux"].update(
                seccomp={
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [
                        {
                            "names": ["x"],
                            "action": "SCMP_ACT_ERRNO",
                            "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ODD"}],
                        }
                    ],
                }
            ),
        ),
        (
            "linux.seccomp.listenerPath",
            lambda d: d["linux"].update(
                seccomp={"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}
            ),
        ),
        (
            "mounts[3].type",
            lambda d: d["mounts"].append({"destination": "/o", "type": "overlay", "source": "o"}),
        ),
        ("windows", lambda d: d.update(windows={"layerFolders": ["x"]})),
        ("ociVersion", lambda d: d.update(ociVersion="2.0.0")),
    ],
)
def test_what_is_not_implemented_is_refused_by_name(field: str, edit: Any) -> None:
    with pytest.raises(oci_config.Unsupported) as caught:
        parse(edit)
    assert field in str(caught.value)


def test_empty_values_of_unknown_fields_are_accepted() -> None:
    c = parse(lambda d: d.update(domainname="") or d["process"].update(apparmorProfile=""))
    assert c.hostname == "h"


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(oci_config.ConfigError, match=r"process\.cwd"):
        parse(lambda d: d["process"].update(cwd="relative"))
    with pytest.raises(oci_config.ConfigError, match=r"mounts\[0\]\.destination"):
        parse(lambda d: d["mounts"][0].update(destination="proc"))
    with pytest.raises(oci_config.ConfigError, match="additionalGids"):
        parse(lambda d: d["process"]["user"].update(additionalGids=["wheel"]))
    with pytest.raises(oci_config.ConfigError, match="unknown capability"):
        parse(lambda d: d["process"]["capabilities"].update(ambient=["CAP_NOPE"]))


def test_seccomp_of_the_spec_becomes_a_resolved_profile() -> None:
    resolved = resolve_spec(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            ],
        }
    )  # fmt: skip
    assert resolved.default_action == "SCMP_ACT_ERRNO" and resolved.default_errno == 38
    assert resolved.rules[0].names == ("read", "write")
    arg = resolved.rules[1].args[0]
    assert (arg.index, arg.value, arg.value_two, arg.op) == (0, 8, 0, "SCMP_CMP_EQ")


def test_device_rules_as_runc_writes_them() -> None:
    rules = [
        (False, "a"),
        (True, "c 1:3 rw"),
        (True, "c *:* m"),
        (True, "c 1:3 rwm"),
        (True, "b *:* m"),
    ]
    assert effective_device_rules(rules) == [
        (False, "a"),
        (True, "b *:* m"),
        (True, "c *:* m"),
        (True, "c 1:3 rwm"),
    ]
    assert effective_device_rules([(True, "a")]) == [(True, "a")]


def test_signals_and_ids() -> None:
    assert parse_signal("KILL") == parse_signal("SIGKILL") == parse_signal("9") == 9
    assert parse_signal("term") == 15
    for bad in ("SIGNOPE", "0", "99"):
        with pytest.raises(UsageError):
            parse_signal(bad)
    assert check_id("libpod-abc_1.2") == "libpod-abc_1.2"
    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(UsageError):
            check_id(bad)


def test_go_single_dash_flags() -> None:
    assert _normalise(["-root", "/x", "--log-format=json", "create", "-bundle", "b", "id"]) == [
        "--root", "/x", "--log-format=json", "create", "--bundle", "b", "id",
    ]  # fmt: skip


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nope"]) == 2
    assert capsys.readouterr().err == (
        "dockscope-runtime: no such option: --nope (see dockscope-runtime --help)\n"
    )
    assert main(["--systemd-cgroup", "state", "x"]) == 2
    assert "no systemd" in capsys.readouterr().err
    assert main(["create", "--no-pivot", "x"]) == 2
    assert "--no-pivot" in capsys.readouterr().err


def test_version_and_features(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "dockscope-runtime version 0.1.0\nspec: 1.0.2\n"
    assert main(["features"]) == 0
    assert '"ociVersionMin": "1.0.0"' in capsys.readouterr().out
