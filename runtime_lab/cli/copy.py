"""``dockscope cp``: files between a container and the host, as docker cp copies them (the
work: runtime_lab/lifecycle/copy.py)."""

from __future__ import annotations

import os
import sys

import typer

from inspect_tool.cli._common import handle_errors
from inspect_tool.errors import UsageError
from runtime_lab.cli.common import ROOT_OPTION, need_root
from runtime_lab.storage.store import Store


def _split(text: str) -> tuple[str | None, str]:
    """``NAME:PATH`` → (NAME, PATH); a host path (``./a:b``, ``/x``, ``-``) → (None, it).
    As docker's: a colon before any slash names a container."""
    if text == "-" or text.startswith(("/", ".")):
        return None, text
    name, sep, path = text.partition(":")
    if sep and "/" not in name and name:
        return name, path
    return None, text


def _host_path(path: str) -> str:
    """Absolute, with docker's trailing ``/`` and ``/.`` kept (they change the rules)."""
    absolute = os.path.abspath(path)
    if path.endswith("/.") or path == ".":
        return absolute.rstrip("/") + "/."
    if path.endswith("/") and absolute != "/":
        return absolute + "/"
    return absolute


def cp(
    source: str = typer.Argument(..., metavar="SRC", help="NAME:PATH, a host path, or -."),
    destination: str = typer.Argument(..., metavar="DEST", help="NAME:PATH, a host path, or -."),
    archive: bool = typer.Option(
        False, "--archive", "-a", help="Keep the owners (uid, gid) of what is copied."
    ),
    follow_link: bool = typer.Option(
        False, "--follow-link", "-L", help="Follow SRC when it is a symbolic link."
    ),
    trace: bool = typer.Option(False, "--trace", help="Say on stderr where the files were."),
    root: str | None = ROOT_OPTION,
) -> None:
    """Copy files between a container (running or stopped) and the host, as docker cp does.

    A path in the container is resolved inside its root (symlinks never lead out); a
    running container's files are read and written where it sees them (volumes too), a
    stopped one's through its layers mounted again in a private mount namespace (the
    writable layer gets what is written). - as SRC reads a tar from stdin (extracted into
    the directory DEST); as DEST writes SRC as a tar to stdout. SRC/. copies a directory's
    contents. Owners become root's unless -a.

    Examples:

      dockscope cp web:/etc/hostname .

      dockscope cp ./site web:/srv/

      dockscope cp web:/var/log - | tar -tvf -

      tar -cf - notes.txt | dockscope cp - web:/tmp
    """
    from runtime_lab.lifecycle.copy import Endpoint, copy
    from runtime_lab.lifecycle.copy_root import with_container_root

    with handle_errors():
        src_name, src_path = _split(source)
        dest_name, dest_path = _split(destination)
        if (src_name is None) == (dest_name is None):
            raise UsageError(
                "copying between containers or between host paths is not supported: "
                "give one NAME:PATH, as docker cp"
            )
        need_root()
        store = Store(root)
        name = src_name if src_name is not None else dest_name
        assert name is not None
        cid = store.resolve(name)
        inside = src_path if src_name is not None else dest_path
        if not inside:
            raise UsageError(f"{name}:: give a path in the container")
        host = dest_path if src_name is not None else src_path

        def act(container_root: str, how: str) -> dict[str, object]:
            inner = Endpoint(container_root, "/" + inside.lstrip("/"), name)
            if inside.endswith("/") and not inner.path.endswith("/"):
                inner = Endpoint(container_root, inner.path + "/", name)
            outer = None if host == "-" else Endpoint("/", _host_path(host))
            src, dest = (inner, outer) if src_name is not None else (outer, inner)
            done = copy(
                src,
                dest,
                stdin=sys.stdin.buffer,
                stdout=sys.stdout.buffer,
                follow=follow_link,
                archive=archive,
            )
            sys.stdout.flush()
            return {**done, "container_root": how}

        result = with_container_root(store, cid, act)
        if trace:
            from inspect_tool.render.text import visible

            detail = "; ".join(f"{k}: {v}" for k, v in result.items())
            sys.stderr.write(f"dockscope: cp: {visible(detail)}\n")


def register(app: typer.Typer) -> None:
    app.command()(cp)
