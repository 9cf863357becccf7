"""What the runtime's command modules share: --root, the container name arguments, and the
checks that a command needs root (``privilege.py``)."""

from __future__ import annotations

import typer

from runtime_lab.cli.privilege import enter_if_rootless, need_root, need_root_or_rootless

__all__ = [
    "NAMES_ARGUMENT",
    "NAME_ARGUMENT",
    "ROOT_OPTION",
    "enter_if_rootless",
    "need_root",
    "need_root_or_rootless",
]

ROOT_OPTION = typer.Option(
    None,
    "--root",
    metavar="DIR",
    envvar="DOCKSCOPE_ROOT",
    help="dockscope's state directory: its containers and volumes (default /var/lib/dockscope, "
    "~/.local/share/dockscope for an ordinary user: rootless; also DOCKSCOPE_ROOT). Engine "
    "storage is --storage.",
)
NAME_ARGUMENT = typer.Argument(..., metavar="NAME", help="Container name or ID (prefix).")
NAMES_ARGUMENT = typer.Argument(..., metavar="NAME...", help="Container names or IDs.")
