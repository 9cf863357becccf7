"""What the runtime's command modules share: --root, the container name arguments, and the
one check (and message) that a command needs root."""

from __future__ import annotations

import os

import typer

from inspect_tool.errors import UsageError

ROOT_OPTION = typer.Option(
    None,
    "--root",
    metavar="DIR",
    envvar="DOCKSCOPE_ROOT",
    help="dockscope's state directory: its containers and volumes (default /var/lib/dockscope; "
    "also DOCKSCOPE_ROOT). Engine storage is --storage.",
)
NAME_ARGUMENT = typer.Argument(..., metavar="NAME", help="Container name or ID (prefix).")
NAMES_ARGUMENT = typer.Argument(..., metavar="NAME...", help="Container names or IDs.")


def need_root() -> None:
    """Refuse, as a usage error, a command that makes namespaces, mounts or cgroups as a user
    other than root."""
    if os.geteuid() != 0:
        raise UsageError(
            "this needs root (namespaces, mounts and cgroups): run it with sudo "
            "(dockscope run --explain shows what a run would do, without root)"
        )
