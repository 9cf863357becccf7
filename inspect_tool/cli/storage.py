"""``dockscope storage ls|save``: a copy of Docker's or Podman's storage, read offline.

Also the ``container diff|export|inspect|logs`` commands on engine storage, as functions
(``container_diff_command`` …) that ``dockscope container … --storage ROOT`` calls (and, for
one release, ``--root ROOT`` when ROOT is engine storage, ``inspect_tool.storage.is_engine_root``).
Nothing under ROOT is written or mounted; output files are refused inside ROOT.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import typer

from inspect_tool.cli._common import JSON_OPTION, handle_errors, write_json
from inspect_tool.errors import UsageError

if TYPE_CHECKING:
    from inspect_tool.storage.export import ContainerExport

app = typer.Typer(
    name="storage",
    help=(
        "A copy of engine storage (/var/lib/docker, /var/lib/containers/storage), read offline: "
        "nothing under ROOT is written or mounted."
    ),
    no_args_is_help=True,
)

ROOT_ARGUMENT = typer.Argument(
    ...,
    metavar="ROOT",
    help="A Docker root (/var/lib/docker) or a containers/storage graph root "
    "(/var/lib/containers/storage), or a copy of one.",
    show_default=False,
)


@app.command("ls")
def ls(
    root: Path = ROOT_ARGUMENT,
    long: bool = typer.Option(
        False, "--long", "-l", help="Also the engine, the writable layer and the log of each."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """List the images and containers an engine's storage holds.

    The engine (Docker, or containers/storage for Podman and Buildah) and its storage
    drivers (overlay2, overlay, aufs, vfs) are detected from the files. "running" is what
    the state files said when the copy was made.

    Examples:

      dockscope storage ls /mnt/evidence/var/lib/docker

      dockscope storage ls --json /mnt/evidence/var/lib/containers/storage | jq '.containers[]'
    """
    from inspect_tool.storage import open_storage

    with handle_errors():
        storage = open_storage(root)
        with storage.evidence:
            images = storage.images()
            containers = storage.containers()
            from inspect_tool.render import storage as render

            if json_output:
                write_json(render.ls_document(storage, images, containers))
            else:
                render.render_ls(sys.stdout, storage, images, containers, long=long)


@app.command("save")
def save(
    root: Path = ROOT_ARGUMENT,
    image: str = typer.Argument(
        ..., metavar="IMAGE", help="Image ID (or unique prefix), name or name:tag."
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        metavar="DIR",
        help="The OCI image layout to create (must not exist, or be an empty directory).",
        show_default=False,
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Write an image from engine storage as an OCI image layout, every layer verified.

    Each layer is rebuilt byte for byte from the engine's tar-split record and the unpacked
    layer, and must hash to the diff_id the image config and the engine recorded. Any
    mismatch names the layer (and the files that changed) and exits 1, leaving no DIR.

    Examples:

      dockscope storage save /mnt/evidence/var/lib/docker busybox:latest -o busybox-oci

      skopeo inspect oci:busybox-oci
    """
    from inspect_tool.render import storage as render
    from inspect_tool.storage import LayerMismatchError, save_image

    with handle_errors():
        try:
            result = save_image(root, image, output)
        except LayerMismatchError as exc:
            if json_output and exc.result is not None:
                write_json(render.save_document(str(root), exc.result))
            raise
        if json_output:
            write_json(render.save_document(str(root), result))
        else:
            render.render_save(sys.stdout, result)


def register(root_app: typer.Typer) -> None:
    root_app.add_typer(app)


# -- `dockscope container … --storage ROOT` on engine storage ------------------------------------


def container_diff_command(
    root: Path,
    ident: str,
    *,
    json_output: bool = False,
    since: str | None = None,
    show_all: bool = False,
) -> None:
    """``container diff``: A/C/D lines as docker/podman diff prints them (``show_all``: also
    what the engine wrote itself, marked); ``since``: a timeline of changes at or after it;
    ``json_output``: the container-diff document, with sizes, times and sha256."""
    from inspect_tool.render import storage as render
    from inspect_tool.storage import container_diff
    from inspect_tool.storage.times import parse_since

    with handle_errors():
        since_ns = parse_since(since) if since is not None else None
        result = container_diff(root, ident, hashes=json_output, since_ns=since_ns)
        if json_output:
            write_json(render.diff_document(result))
            return
        render.write_diff(sys.stdout, result, show_all=show_all)
        sys.stdout.flush()
        for line in render.diff_footnote(result, show_all=show_all):
            sys.stderr.write(f"dockscope: {line}\n")


def container_export_command(
    root: Path, ident: str, output: str, *, layer: bool = False, json_output: bool = False
) -> None:
    """``container export``: the merged filesystem (``layer``: the writable layer as an OCI
    layer tar) to the file ``output`` (replaced once complete) or ``-`` (stdout)."""
    from inspect_tool.render import storage as render
    from inspect_tool.storage import container_export
    from inspect_tool.storage.export import check_outside

    with handle_errors():
        if output == "-":
            if json_output:
                raise UsageError("--json needs -o FILE: with -o - stdout carries the tar")
            if sys.stdout.isatty():
                raise UsageError("refusing to write a tar to a terminal: use -o FILE or redirect")
            sys.stdout.flush()
            result = container_export(root, ident, sys.stdout.buffer, layer=layer)
            return
        target = Path(output)
        check_outside(root, target)
        with _replaced(target) as out:
            result = container_export(root, ident, out, layer=layer)
        if json_output:
            write_json(render.export_document(str(root), output, result))
        else:
            _export_summary(result, output)


def _export_summary(result: ContainerExport, output: str) -> None:
    from inspect_tool.render.text import visible

    stats = result.stats
    what = "writable layer" if result.layer else "filesystem"
    sys.stderr.write(
        f"dockscope: {visible(result.container.name)}'s {what} → {visible(output)}: "
        f"{stats.files} files, "
        f"{stats.directories} directories, {stats.symlinks} symlinks, {stats.hardlinks} hard "
        f"links, {stats.whiteouts} whiteouts, {stats.bytes} bytes\n"
    )
    for path, reason in stats.skipped:
        sys.stderr.write(f"dockscope: skipped {visible(path)}: {visible(reason)}\n")


def _replaced(target: Path) -> contextlib.AbstractContextManager[BinaryIO]:
    """The output file: complete or absent, a device such as /dev/null written in place."""
    from inspect_tool.cli._common import output_stream

    return output_stream(target)


def container_inspect_command(root: Path, ident: str) -> None:
    """``container inspect``: the container's record and the engine's files about it,
    decoded, as one JSON document."""
    from inspect_tool.render import storage as render
    from inspect_tool.storage import container_inspect

    with handle_errors():
        container, files = container_inspect(root, ident)
        write_json(render.inspect_document(str(root), container.engine, container, files))


def container_logs_command(
    root: Path,
    ident: str,
    *,
    timestamps: bool = False,
    since: str | None = None,
    tail: int | None = None,
    json_output: bool = False,
) -> None:
    """``logs``: what the container printed, stdout to stdout and stderr to stderr, from its
    json-file (Docker) or k8s-file (Podman) log."""
    from inspect_tool.render import storage as render
    from inspect_tool.storage import container_logs
    from inspect_tool.storage.times import parse_since

    with handle_errors():
        since_ns = parse_since(since) if since is not None else None
        container, entries = container_logs(root, ident, since_ns=since_ns, tail=tail)
        if json_output:
            write_json(render.logs_document(str(root), container, entries))
            return
        render.write_logs(sys.stdout, sys.stderr, entries, timestamps=timestamps)
        sys.stdout.flush()


DISPATCH: dict[str, Callable[..., None]] = {
    "diff": container_diff_command,
    "export": container_export_command,
    "inspect": container_inspect_command,
    "logs": container_logs_command,
}
