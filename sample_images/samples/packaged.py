"""The packaged sample: the base file system, two Debian packages installed by apt (their dpkg
status and file lists, as dpkg writes them), an application's ``.env`` holding a token copied
in, then a step that upgrades one package and deletes the ``.env``: for ``dockscope
packages`` (which layer installed and upgraded what) and ``dockscope secrets`` (a secret a
later layer deleted, still in the image)."""

from __future__ import annotations

from samples.basics import DEFAULT_PATH_ENV, Instant
from samples.filesystem import (
    BASE_MTIME,
    T_BASE_ADD,
    base_layer,
    content_hash,
    directory,
    make_layer,
    regular,
)
from samples.recipes import Recipe, Step, base_steps, nop
from samples.tarbuild import TarEntry

T_INSTALL = Instant.at("2024-04-02T10:00:03", 120557130)
T_COPY_ENV = Instant.at("2024-04-02T10:00:04", 348210967)
T_UPGRADE = Instant.at("2024-04-02T10:00:07", 901442085)
T_PACKAGED_CMD = Instant.at("2024-04-02T10:00:08", 77310442)
assert T_BASE_ADD.seconds < T_INSTALL.seconds

INSTALL_COMMAND = "apt-get install -y greeter libtiny1"
UPGRADE_COMMAND = "apt-get install -y libtiny1=1.5-1 && rm /opt/app/.env"
# a made-up session token: random-looking, so the secrets rules take it for a real one
ENV_FILE = b"APP_ENV=production\nSESSION_TOKEN=q8Zf2LwR7nVx4KpT9mHs3bYc\n"


def _status(libtiny: str) -> bytes:
    """/var/lib/dpkg/status with greeter and libtiny1 at ``libtiny``'s version."""
    return (
        "Package: greeter\n"
        "Status: install ok installed\n"
        "Priority: optional\n"
        "Section: misc\n"
        "Installed-Size: 36\n"
        "Maintainer: dockscope maintainers <maintainers@dockscope.invalid>\n"
        "Architecture: amd64\n"
        "Version: 2.10-3\n"
        "Depends: libtiny1 (>= 1.4)\n"
        "Description: prints a friendly greeting\n"
        "\n"
        "Package: libtiny1\n"
        "Status: install ok installed\n"
        "Priority: optional\n"
        "Section: libs\n"
        "Installed-Size: 12\n"
        "Maintainer: dockscope maintainers <maintainers@dockscope.invalid>\n"
        "Architecture: amd64\n"
        "Multi-Arch: same\n"
        "Source: tiny\n"
        f"Version: {libtiny}\n"
        "Description: a tiny shared library\n"
        "\n"
    ).encode()


def _lists(t: int) -> list[TarEntry]:
    return [
        regular(
            "var/lib/dpkg/info/greeter.list",
            b"/.\n/usr\n/usr/bin\n/usr/bin/greeter\n/usr/share\n/usr/share/doc\n"
            b"/usr/share/doc/greeter\n/usr/share/doc/greeter/copyright\n",
            t,
        ),
        regular(
            "var/lib/dpkg/info/libtiny1:amd64.list",
            b"/.\n/usr\n/usr/lib\n/usr/lib/libtiny.so.1\n",
            t,
        ),
    ]


def install_layer() -> list[TarEntry]:
    t = T_INSTALL.seconds
    return [
        directory("usr", t),
        directory("usr/bin", t),
        regular("usr/bin/greeter", b"#!/bin/sh\necho 'Hello from greeter'\n", t, 0o755),
        directory("usr/lib", t),
        regular("usr/lib/libtiny.so.1", b"libtiny 1.4\n", t),
        directory("usr/share", BASE_MTIME),
        directory("usr/share/doc", t),
        directory("usr/share/doc/greeter", t),
        regular("usr/share/doc/greeter/copyright", b"Public domain.\n", t),
        directory("var", t),
        directory("var/lib", t),
        directory("var/lib/dpkg", t),
        directory("var/lib/dpkg/info", t),
        *_lists(t),
        regular("var/lib/dpkg/status", _status("1.4-1"), t),
    ]


def env_layer() -> list[TarEntry]:
    t = T_COPY_ENV.seconds
    return [
        directory("opt", t),
        directory("opt/app", t),
        regular("opt/app/.env", ENV_FILE, t, 0o600),
    ]


def upgrade_layer() -> list[TarEntry]:
    t = T_UPGRADE.seconds
    return [
        directory("opt", T_COPY_ENV.seconds),
        directory("opt/app", t),
        TarEntry("opt/app/.wh..env", mode=0o600, mtime=t),
        directory("usr", T_INSTALL.seconds),
        directory("usr/lib", t),
        regular("usr/lib/libtiny.so.1", b"libtiny 1.5\n", t),
        directory("var", T_INSTALL.seconds),
        directory("var/lib", T_INSTALL.seconds),
        directory("var/lib/dpkg", t),
        regular("var/lib/dpkg/status", _status("1.5-1"), t),
    ]


def packaged_recipe() -> Recipe:
    """4 layers: the base, apt installing two packages, a COPY of a .env, an upgrade that
    also deletes the .env."""
    base_entries = base_layer()
    env = env_layer()
    steps = [
        *base_steps(make_layer(base_entries), base_entries),
        Step(
            T_INSTALL,
            f"/bin/sh -c {INSTALL_COMMAND}",
            f"RUN /bin/sh -c {INSTALL_COMMAND} # buildkit",
            make_layer(install_layer()),
        ),
        Step(
            T_COPY_ENV,
            f"/bin/sh -c #(nop) COPY file:{content_hash(env)} in /opt/app/.env ",
            "COPY .env /opt/app/.env # buildkit",
            make_layer(env),
        ),
        Step(
            T_UPGRADE,
            f"/bin/sh -c {UPGRADE_COMMAND}",
            f"RUN /bin/sh -c {UPGRADE_COMMAND} # buildkit",
            make_layer(upgrade_layer()),
        ),
        Step(T_PACKAGED_CMD, nop('CMD ["greeter"]'), 'CMD ["greeter"]'),
    ]
    runtime = {"Env": [DEFAULT_PATH_ENV], "Cmd": ["greeter"]}
    return Recipe(tuple(steps), runtime)
