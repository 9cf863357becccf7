"""The registry access options (--creds, --authfile, --cert-dir, --tls-verify), added to every
command that takes an IMAGE, and the RegistryAccess value they make."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from inspect_tool.registry.access import RegistryAccess, use_access

# The commands whose IMAGE may be a docker:// reference: every one with an IMAGE argument
# (tests/registry/test_registry_fake.py checks the list against the commands' parameters).
IMAGE_COMMANDS = frozenset(
    {
        "inspect",
        "verify",
        "layers",
        "ls",
        "cat",
        "find",
        "diff",
        "efficiency",
        "types",
        "history",
        "packages",
        "secrets",
        "unpack",
        "export",
        "graph",
        "tree",
        "report",
        "run",
        "copy",
        "pull",
        "explore",
    }
)


def _tls_verify(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise typer.BadParameter("expected true or false")


CREDS_OPTION = typer.Option(
    None,
    "--creds",
    metavar="USER[:PASS]",
    help="Registry credentials for docker:// images (never shown or stored).",
    show_default=False,
)
AUTHFILE_OPTION = typer.Option(
    None,
    "--authfile",
    metavar="FILE",
    help="Read registry credentials from this auth.json only (default: $REGISTRY_AUTH_FILE, "
    "containers' auth.json, ~/.docker/config.json).",
    show_default=False,
)
CERT_DIR_OPTION = typer.Option(
    None,
    "--cert-dir",
    metavar="DIR",
    help="CA certificates (*.crt) and client pairs (*.cert, *.key) for the registry's TLS.",
    show_default=False,
)
TLS_VERIFY_OPTION = typer.Option(
    None,
    "--tls-verify",
    metavar="true|false",
    help="Verify the registry's TLS certificate (default true; false also allows plain HTTP).",
    callback=_tls_verify,
    show_default=False,
)

_PARAMETERS = (
    ("registry_creds", CREDS_OPTION, str | None),
    ("registry_authfile", AUTHFILE_OPTION, Path | None),
    ("registry_cert_dir", CERT_DIR_OPTION, Path | None),
    ("registry_tls_verify", TLS_VERIFY_OPTION, str | None),
)


def with_registry_access(command: Callable[..., Any]) -> Callable[..., Any]:
    """The command with the four access options; while it runs, the access they give is the
    default of every docker:// reference it opens (registry.access.use_access)."""
    signature = inspect.signature(command, eval_str=True)
    if any(name in signature.parameters for name, _, _ in _PARAMETERS):
        return command
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for name, default, kind in _PARAMETERS
    ]
    parameters = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        else p
        for p in signature.parameters.values()
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        creds = kwargs.pop("registry_creds", None)
        authfile = kwargs.pop("registry_authfile", None)
        cert_dir = kwargs.pop("registry_cert_dir", None)
        tls_verify = kwargs.pop("registry_tls_verify", None)
        access = RegistryAccess(creds, authfile, cert_dir, tls_verify)
        with use_access(access):
            return command(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*parameters, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*parameters, *extra]}
    return wrapper


def add_access_options(application: typer.Typer) -> None:
    """Wrap every registered command of IMAGE_COMMANDS (cli/__init__.py calls it)."""
    for info in application.registered_commands:
        callback = info.callback
        if callback is None:
            continue
        name = info.name or callback.__name__.replace("_", "-")
        if name in IMAGE_COMMANDS:
            info.callback = with_registry_access(callback)
