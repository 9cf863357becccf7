"""runtime_lab/spec.py without containers: the user a container runs as (runc's rules)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inspect_tool.errors import UsageError
from runtime_lab.spec import User, platform_mismatch, resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
1000:x:4000:4000:a name that looks like a number:/weird:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
"""
GROUP = """root:x:0:
wheel:x:10:user,other
staff:x:50:user
"""


@pytest.mark.parametrize(
    ("spec", "passwd", "group", "expected"),
    [
        # no User at all: root, with its entry when the image has one
        ("", PASSWD, GROUP, User(0, 0, (0,), "/root", "root")),
        # an image without /etc/passwd (or an empty one) runs as uid 0, gid 0, as docker's
        ("", "", "", User(0, 0, (0,), "/", None)),
        # a number is a uid, without an entry too (gid 0, as docker gives it)
        ("1234", "", "", User(1234, 0, (0,), "/", None)),
        ("1234:5678", "", "", User(1234, 5678, (5678,), "/", None)),
        ("1234", PASSWD, GROUP, User(1234, 0, (0,), "/", None)),
        # a number is never a name: "1000" is uid 1000 (user), not the entry named "1000"
        ("1000", PASSWD, GROUP, User(1000, 1000, (10, 50, 1000), "/home/user", "user")),
        # by name: its groups too; a group given replaces them
        ("user", PASSWD, GROUP, User(1000, 1000, (10, 50, 1000), "/home/user", "user")),
        ("user:wheel", PASSWD, GROUP, User(1000, 10, (10,), "/home/user", "user")),
        ("user:77", PASSWD, GROUP, User(1000, 77, (77,), "/home/user", "user")),
        ("root", PASSWD, GROUP, User(0, 0, (0,), "/root", "root")),
    ],
)
def test_user_resolution_follows_runc(spec: str, passwd: str, group: str, expected: User) -> None:
    assert resolve_user(spec, passwd, group) == expected


@pytest.mark.parametrize(
    ("spec", "passwd", "group", "message"),
    [
        # docker refuses a name with no entry, root included, when /etc/passwd is missing
        ("root", "", "", "unable to find user root: no matching entries in passwd file"),
        ("nosuch", PASSWD, GROUP, "unable to find user nosuch"),
        ("user:nosuch", PASSWD, GROUP, "unable to find group nosuch"),
        ("4294967296", "", "", "uids and gids must be in range 0-2147483647"),
        ("1:-1", "", "", "uids and gids must be in range"),
    ],
)
def test_users_docker_refuses(spec: str, passwd: str, group: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        resolve_user(spec, passwd, group)


def test_platform_of_the_config() -> None:
    """The comparison itself: os, architecture, and arm's variants."""
    config: dict[str, Any] = {"os": "linux", "architecture": "amd64"}
    assert platform_mismatch(config, "x86_64") is None
    assert platform_mismatch(config, "aarch64") == ("linux/amd64", "linux/arm64")
    assert platform_mismatch({**config, "os": "windows"}, "x86_64") == (
        "windows/amd64",
        "linux/amd64",
    )
    arm = {"os": "linux", "architecture": "arm", "variant": "v7"}
    assert platform_mismatch(arm, "aarch64") is None  # 64-bit arm runs 32-bit arm
    assert platform_mismatch(arm, "armv7l") is None
    assert platform_mismatch(arm, "armv6l") == ("linux/arm/v7", "linux/arm/v6")
    assert platform_mismatch({"os": "linux"}, "x86_64") is None  # nothing claimed
    assert json.dumps(platform_mismatch(arm, "x86_64")) == '["linux/arm/v7", "linux/amd64"]'
