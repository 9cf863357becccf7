"""``dockscope login`` and ``dockscope logout``: registry credentials in containers'
auth.json, as podman writes them."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from inspect_tool.cli._access import AUTHFILE_OPTION, CERT_DIR_OPTION, TLS_VERIFY_OPTION
from inspect_tool.cli._common import handle_errors
from inspect_tool.errors import UsageError

REGISTRY_ARGUMENT = typer.Argument(
    ...,
    metavar="REGISTRY",
    help="HOST[:PORT] of the registry (docker.io for Docker Hub).",
    show_default=False,
)


def login(
    registry: str = REGISTRY_ARGUMENT,
    username: str | None = typer.Option(
        None, "--username", "-u", metavar="USER", help="The user name (asked when omitted)."
    ),
    password: str | None = typer.Option(
        None,
        "--password",
        "-p",
        metavar="PASS",
        help="The password (visible to other users in the process list: prefer --password-stdin).",
        show_default=False,
    ),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
    authfile: Path | None = AUTHFILE_OPTION,
    cert_dir: Path | None = CERT_DIR_OPTION,
    tls_verify: str | None = TLS_VERIFY_OPTION,
) -> None:
    """Check credentials against a registry, then store them in the auth file.

    The file is --authfile, else $REGISTRY_AUTH_FILE, else
    ${XDG_RUNTIME_DIR}/containers/auth.json (~/.config/containers/auth.json without
    XDG_RUNTIME_DIR), written atomically with mode 0600. Every command reading docker://
    images finds the credentials there.

    Examples:

      dockscope login -u me registry.example.com

      printf %s "$TOKEN" | dockscope login -u me --password-stdin ghcr.io
    """
    with handle_errors():
        from inspect_tool.registry.access import RegistryAccess
        from inspect_tool.registry.auth import Credentials, store, write_target
        from inspect_tool.registry.client import RegistryClient
        from inspect_tool.registry.reference import RegistryReference, registry_host

        host = registry_host(registry)
        if password is not None and password_stdin:
            raise UsageError("--password and --password-stdin: give one")
        if password_stdin:
            if username is None:
                raise UsageError("--password-stdin needs --username")
            password = sys.stdin.read().rstrip("\r\n")
        if username is None:
            username = typer.prompt("Username")
        if password is None:
            password = typer.prompt("Password", hide_input=True)
        if not username:
            raise UsageError("the user name is empty")
        credentials = Credentials(username, password)
        access = RegistryAccess(
            f"{username}:{password}",
            authfile,
            cert_dir,
            tls_verify,  # type: ignore[arg-type]  # the option's callback made it a bool
        )
        client = RegistryClient(
            RegistryReference(host, "library/login", None, None), access, label=host
        )
        try:
            client.check_login()
        finally:
            client.close()
        target = write_target(RegistryAccess(authfile=authfile))
        store(target, host, credentials)
        sys.stdout.write("Login Succeeded!\n")


def logout(
    registry: str = REGISTRY_ARGUMENT,
    authfile: Path | None = AUTHFILE_OPTION,
) -> None:
    """Remove a registry's credentials from the auth file (exit 1 when it holds none).

    Example:

      dockscope logout registry.example.com
    """
    with handle_errors():
        from inspect_tool.registry.access import RegistryAccess
        from inspect_tool.registry.auth import remove, write_target
        from inspect_tool.registry.reference import registry_host

        host = registry_host(registry)
        remove(write_target(RegistryAccess(authfile=authfile)), host)
        sys.stdout.write(f"Removed login credentials for {host}\n")


def register(app: typer.Typer) -> None:
    for command in (login, logout):
        app.command()(command)
