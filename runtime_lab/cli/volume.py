"""``dockscope volume ls|inspect|rm``: the named volumes under the state root."""

from __future__ import annotations

import sys

import typer

from inspect_tool.cli._common import JSON_OPTION, handle_errors, stdout_console, write_json
from runtime_lab.cli.common import ROOT_OPTION
from runtime_lab.render import documents
from runtime_lab.storage.store import Store

app = typer.Typer(
    name="volume",
    help="Named volumes: directories under the state root that outlive containers (-v).",
    no_args_is_help=True,
)
VOLUME_NAMES = typer.Argument(..., metavar="NAME...", help="Volume names.")


@app.command("ls")
def ls(json_output: bool = JSON_OPTION, root: str | None = ROOT_OPTION) -> None:
    """List volumes, with the containers that use them.

    Examples:

      dockscope volume ls

      dockscope volume ls --json | jq '.volumes[].mountpoint'
    """
    from runtime_lab.storage import volumes

    with handle_errors():
        store = Store(root)
        found = [(v, volumes.users(store, v.name)) for v in volumes.all_volumes(store)]
        if json_output:
            write_json(documents.volume_ls_document(found))
            return
        stdout_console().print(documents.volume_table(found))


@app.command()
def inspect(names: list[str] = VOLUME_NAMES, root: str | None = ROOT_OPTION) -> None:
    """Where each volume's files are, when it was made, who uses it (JSON).

    Example:

      dockscope volume inspect data
    """
    from runtime_lab.storage import volumes

    with handle_errors():
        store = Store(root)
        found = [volumes.load(store, name) for name in names]
        write_json(
            documents.volume_inspect_document(
                [(v, volumes.users(store, v.name), volumes.size(v.data)) for v in found]
            )
        )


@app.command()
def rm(names: list[str] = VOLUME_NAMES, root: str | None = ROOT_OPTION) -> None:
    """Remove volumes and their files (refused while a container, even stopped, uses one).

    Example:

      dockscope volume rm data
    """
    from runtime_lab.storage import volumes

    with handle_errors():
        store = Store(root)
        for name in names:
            volumes.remove(store, name)
            sys.stdout.write(name + "\n")


def register(root_app: typer.Typer) -> None:
    root_app.add_typer(app)
