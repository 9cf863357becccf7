"""``dockscope container diff|inspect`` (and export and commit): a container's writable layer."""

from __future__ import annotations

import sys
from dataclasses import asdict

import typer

from inspect_tool.cli._common import JSON_OPTION, handle_errors, write_json
from runtime_lab.lifecycle import NAME_ARGUMENT, ROOT_OPTION
from runtime_lab.store import Store

app = typer.Typer(
    name="container",
    help="A container's writable layer: what it changed, as evidence.",
    no_args_is_help=True,
)


@app.command()
def diff(
    name: str = NAME_ARGUMENT,
    json_output: bool = JSON_OPTION,
    root: str | None = ROOT_OPTION,
) -> None:
    """What the container changed: A added, C changed, D deleted (as docker diff prints it).

    Changed parent directories show as C. --json adds type, size, mode, mtime and the
    sha256 of each regular file.

    Examples:

      dockscope container diff web

      dockscope container diff --json web | jq '.changes[] | select(.kind == "A")'
    """
    from runtime_lab.writable import changes

    with handle_errors():
        store = Store(root)
        cid = store.resolve(name)
        config = store.load_config(cid)
        state = store.load_state(cid)
        directory = store.container_dir(cid)
        found = changes(
            directory / "upper",
            [store.layer_dir(d) for d in config.diff_ids],
            ignore=set(state.runtime_paths),
            hashes=json_output,
        )
        if json_output:
            write_json(
                {
                    "schema_version": 1,
                    "kind": "container-diff",
                    "id": cid,
                    "name": config.name,
                    "changes": [{k: v for k, v in asdict(c).items()} for c in found],
                }
            )
            return
        for change in found:
            sys.stdout.write(f"{change.kind} {change.path}\n")


@app.command()
def inspect(
    name: str = NAME_ARGUMENT,
    root: str | None = ROOT_OPTION,
) -> None:
    """The container's recorded config and state, as JSON.

    Example:

      dockscope container inspect web
    """
    from runtime_lab import container as rt

    with handle_errors():
        store = Store(root)
        cid = store.resolve(name)
        config = store.load_config(cid)
        state = rt.refresh(store, cid)
        directory = store.container_dir(cid)
        write_json(
            {
                "schema_version": 1,
                "kind": "container",
                "id": cid,
                "name": config.name,
                "config": asdict(config),
                "state": asdict(state),
                "paths": {
                    "upperdir": str(directory / "upper"),
                    "workdir": str(directory / "work"),
                    "merged": str(directory / "merged"),
                    "log": str(directory / "container.log"),
                    "lowerdirs": [str(store.layer_dir(d)) for d in config.diff_ids],
                },
            }
        )


def register(root_app: typer.Typer) -> None:
    root_app.add_typer(app)
