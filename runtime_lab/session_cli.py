"""``dockscope attach`` and ``dockscope exec``: a terminal connected to a running container."""

from __future__ import annotations

import os
import sys

import typer

from inspect_tool.cli._common import handle_errors
from inspect_tool.errors import UsageError
from runtime_lab.lifecycle import NAME_ARGUMENT, ROOT_OPTION
from runtime_lab.store import Store


def attach(
    name: str = NAME_ARGUMENT,
    no_stdin: bool = typer.Option(False, "--no-stdin", help="Do not send this terminal's input."),
    root: str | None = ROOT_OPTION,
) -> None:
    """Connect this terminal to a running container's streams, as docker attach does.

    Its stdout and stderr are shown from now on (earlier output: dockscope logs). Input is
    sent only if it was started with -i; with -t the terminal goes raw and its size follows
    this one. Ctrl-P Ctrl-Q detaches (with -t) and leaves it running; otherwise attach ends
    when the container does, with its exit status.

    Examples:

      dockscope run -dit --name box sample_images/busybox.tar sh

      dockscope attach box
    """
    from runtime_lab import container as rt
    from runtime_lab.streams import attach as attach_streams

    with handle_errors():
        store = Store(root)
        cid = store.resolve(name)
        config = store.load_config(cid)
        if rt.refresh(store, cid).status != "running":
            raise UsageError(f"container {config.name} is not running: start it first")
        stdin = 0 if config.interactive and not no_stdin else None
        try:
            result = attach_streams(
                store.container_dir(cid), stdin=stdin, stdout=1, stderr=2, tty=config.tty
            )
        except OSError as exc:
            raise UsageError(
                f"cannot attach to container {config.name}: {exc.strerror or exc}"
            ) from None
        if result.detached:
            sys.stderr.write("\r\nread escape sequence\r\n")
            return
        raise typer.Exit(result.exit_code if result.exit_code is not None else 0)


def _need_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("this needs root: run it with sudo")


def register(app: typer.Typer) -> None:
    app.command()(attach)
