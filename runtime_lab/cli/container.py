"""``dockscope container diff|export|commit|inspect``: a container's filesystem as evidence."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn

import typer

from inspect_tool.cli._common import (
    JSON_OPTION,
    TAR_OUTPUT_OPTION,
    handle_errors,
    tar_to_stdout,
    write_json,
)
from inspect_tool.errors import UsageError
from inspect_tool.storage.evidence import StorageError
from runtime_lab.cli.common import NAME_ARGUMENT, ROOT_OPTION, enter_if_rootless
from runtime_lab.render import documents
from runtime_lab.storage.store import Store

if TYPE_CHECKING:
    from inspect_tool.layers.tarwrite import TarStats

STORAGE_OPTION = typer.Option(
    None,
    "--storage",
    metavar="DIR",
    help="Read the container from engine storage: a Docker root (/var/lib/docker) or a "
    "containers/storage graph root, or a copy of one (never written, never mounted).",
)

app = typer.Typer(
    name="container",
    help="A container's filesystem: what it changed, as evidence, a tar or a new image.",
    no_args_is_help=True,
)


@app.command()
def diff(
    name: str = NAME_ARGUMENT,
    json_output: bool = JSON_OPTION,
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="TIME",
        help="Engine storage: only changes at or after TIME, as a timeline.",
    ),
    show_all: bool = typer.Option(
        False, "--all", help="Engine storage: show the entries the engine wrote itself too."
    ),
    storage: Path | None = STORAGE_OPTION,
    root: str | None = ROOT_OPTION,
) -> None:
    """What the container changed: A added, C changed, D deleted (as docker diff prints it).

    Changed parent directories show as C. --json adds type, size, mode, mtime and the
    sha256 of each regular file. With --storage naming /var/lib/docker or
    /var/lib/containers/storage (or a copy), the container is read from that engine's storage
    (never written, never mounted); IDs, short IDs and names resolve.

    Examples:

      dockscope container diff web

      dockscope container diff --json web | jq '.changes[] | select(.kind == "A")'

      dockscope container diff --storage /evidence/var/lib/docker 3f2a --since 2024-05-01
    """
    engine = _engine(storage, root, "diff")
    if engine is not None:
        from inspect_tool.cli.storage import container_diff_command

        container_diff_command(
            engine, name, json_output=json_output, since=since, show_all=show_all
        )
        return
    with handle_errors():
        if since is not None or show_all:
            raise UsageError("--since and --all read engine storage: give --storage DIR")
        store = Store(root)
        cid = store.resolve(name)
        enter_if_rootless(store, [cid])  # rootless: the writable layer's owners via the map
        config = store.load_config(cid)
        state = store.load_state(cid)
        from runtime_lab.storage.driver import container_diff
        from runtime_lab.storage.volumes import diff_notes

        result = container_diff(store, config, state, hashes=json_output)
        result.notes += diff_notes(config.volumes)
        if json_output:
            write_json(documents.diff_document(result, config.volumes))
            return
        from inspect_tool.render.text import visible

        for change in result.entries:  # paths escaped (docs/TERMINAL.md)
            sys.stdout.write(f"{change.kind.value} {visible(change.path)}\n")
        for note in result.notes:  # stdout stays docker diff's lines
            sys.stderr.write(f"dockscope: note: {visible(note)}\n")


@app.command()
def inspect(
    name: str = NAME_ARGUMENT,
    size: bool = typer.Option(
        False, "--size", "-s", help="Add the sizes ps -s shows (a dockscope container)."
    ),
    format_: str | None = typer.Option(
        None,
        "--format",
        "-f",
        metavar="TEMPLATE",
        help="A Go template on the document, as docker inspect -f: {{.State.Pid}}, "
        '{{json .Config.Labels}}, {{index .Config.Labels "k"}}, {{range .Config.Volumes}}'
        "…{{end}} (names match without regard to case or underscores).",
    ),
    storage: Path | None = STORAGE_OPTION,
    root: str | None = ROOT_OPTION,
) -> None:
    """The container's recorded config and state, as JSON (for engine storage given with
    --storage: the engine's own config files, decoded).

    Examples:

      dockscope container inspect web

      dockscope container inspect -f '{{.State.Pid}} {{.State.Status}}' web

      dockscope container inspect -f '{{json .Config.Labels}}' web

      dockscope container inspect --storage /evidence/var/lib/docker 3f2a
    """
    from runtime_lab.lifecycle.state import refresh

    engine = _engine(storage, root, "inspect")
    if engine is not None:
        from inspect_tool.cli.storage import container_inspect_command

        container_inspect_command(engine, name)
        return
    with handle_errors():
        from runtime_lab.storage.records import inspect_document

        template = None
        if format_ is not None:
            from runtime_lab.render.gotemplate import GoTemplate

            template = GoTemplate.parse(format_)
        store = Store(root)
        cid = store.resolve(name)
        config = store.load_config(cid)
        state = refresh(store, cid)
        document = inspect_document(store, config, state, size=size)
        if template is not None:
            sys.stdout.write(template.render(document) + "\n")
            return
        write_json(document)


@app.command()
def export(
    name: str = NAME_ARGUMENT,
    output: str = TAR_OUTPUT_OPTION,
    writable_layer: bool = typer.Option(
        False,
        "--writable-layer",
        help="Only the writable layer, as an OCI layer tar (.wh. whiteouts, opaque markers).",
    ),
    json_output: bool = JSON_OPTION,
    storage: Path | None = STORAGE_OPTION,
    root: str | None = ROOT_OPTION,
    old_layer: bool = typer.Option(False, "--layer", hidden=True),
) -> None:
    """Write the container's filesystem as one tar, as docker export does.

    Without --writable-layer: the merged filesystem the container saw (the image's layers
    with the writable layer on top; deletions honoured; mount points included). With it: only
    what the container changed, as an OCI layer (an overlay whiteout becomes .wh.NAME, an
    opaque directory gets .wh..wh..opq; the runtime's mount points are left out). Entries are
    sorted, owners numeric, hard links kept as links, symlinks as written, device nodes
    kept: the same container always gives the same bytes. Nothing in the container is
    written or even has its access time changed. A running container is refused: stop it
    first. With -o -, --json is not available.

    Examples:

      dockscope container export web -o web.tar

      dockscope container export --writable-layer web -o - | tar -tvf -

      dockscope container export --json web -o web.tar | jq .summary
    """
    from runtime_lab.storage.commit import export as run_export

    layer = writable_layer
    if old_layer:  # its name in 0.1; --layer N means one image layer everywhere else
        sys.stderr.write(
            "dockscope: container export --layer is now --writable-layer; the old name goes "
            "in the next release\n"
        )
        layer = True
    engine = _engine(storage, root, "export")
    if engine is not None:
        from inspect_tool.cli.storage import container_export_command

        container_export_command(engine, name, output, layer=layer, json_output=json_output)
        return
    with handle_errors():
        to_stdout = tar_to_stdout(output, json_output=json_output)
        store = Store(root)
        cid = store.resolve(name)
        enter_if_rootless(store, [cid])

        def write(out: BinaryIO) -> TarStats:
            return run_export(store, cid, out, layer=layer)

        stats = write(sys.stdout.buffer) if to_stdout else _to_file(Path(output), write)
        from inspect_tool.render.text import visible

        for path, reason in stats.skipped:
            sys.stderr.write(f"dockscope: {visible(path)}: left out: {visible(reason)}\n")
        if json_output:
            write_json(
                documents.export_document(cid, store.load_config(cid).name, output, layer, stats)
            )


def _to_file(output: Path, write: Callable[[BinaryIO], TarStats]) -> TarStats:
    """Write to ``output``: a file appears only once complete; a device such as /dev/null is
    written in place, never replaced."""
    from inspect_tool.cli._common import output_stream

    with output_stream(output) as out:
        return write(out)


@app.command()
def commit(
    name: str = NAME_ARGUMENT,
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        metavar="DIR",
        help="The OCI image layout to write (missing, or an empty directory).",
        show_default=False,
    ),
    tag: str | None = typer.Option(
        None, "--tag", "-t", metavar="NAME[:TAG]", help="Name the image in index.json."
    ),
    message: str | None = typer.Option(
        None, "--message", "-m", help="The history entry's comment."
    ),
    author: str | None = typer.Option(None, "--author", "-a", help="The image's author."),
    json_output: bool = JSON_OPTION,
    root: str | None = ROOT_OPTION,
) -> None:
    """Write the container as a new image (an OCI image layout), as docker commit does.

    The image's layers are copied byte for byte (each checked against its digest and
    diff_id as it is copied) and the writable layer added on top as a gzip layer (what
    container export --writable-layer writes). The config gets the new diff_id, a history entry
    created_by "dockscope commit" and a new created time; the image's Cmd, Env and the rest
    stay the image's. --tag sets org.opencontainers.image.ref.name (the TAG) and
    io.containerd.image.name (NAME:TAG). Prints the new image ID. The result runs with
    dockscope run DIR, skopeo and podman load read it.

    Examples:

      dockscope container commit web -o web-image --tag example.org/web:1

      dockscope run web-image cat /etc/motd

      skopeo inspect oci:web-image:1

      dockscope container commit --json web -o web-image | jq .image_id
    """
    from runtime_lab.storage.commit import CommitOptions, Reference
    from runtime_lab.storage.commit import commit as run_commit

    with handle_errors():
        reference = Reference.parse(tag) if tag is not None else None
        store = Store(root)
        cid = store.resolve(name)
        enter_if_rootless(store, [cid])
        options = CommitOptions(tag=reference, message=message, author=author)
        result = run_commit(store, cid, output, options)
        if not json_output:
            sys.stdout.write(f"{result.image_id}\n")
            return
        write_json(documents.commit_document(cid, store.load_config(cid).name, result))


@app.command()
def logs(
    name: str = NAME_ARGUMENT,
    timestamps: bool = typer.Option(False, "--timestamps", "-t", help="Show each line's time."),
    since: str | None = typer.Option(
        None, "--since", metavar="TIME", help="Only lines at or after TIME."
    ),
    tail: int | None = typer.Option(None, "--tail", metavar="N", help="Only the last N lines."),
    json_output: bool = JSON_OPTION,
    storage: Path | None = STORAGE_OPTION,
    root: str | None = ROOT_OPTION,
) -> None:
    """The container's output: from engine storage (docker's json-file, podman's k8s-file)
    with --storage DIR, else a dockscope container's log (as dockscope logs).

    Examples:

      dockscope container logs --storage /evidence/var/lib/docker 3f2a --tail 20

      dockscope container logs web
    """
    engine = _engine(storage, root, "logs")
    if engine is not None:
        from inspect_tool.cli.storage import container_logs_command

        container_logs_command(
            engine,
            name,
            timestamps=timestamps,
            since=since,
            tail=tail,
            json_output=json_output,
        )
        return
    with handle_errors():
        if json_output:
            raise UsageError("--json reads engine storage: give --storage DIR")
    from runtime_lab.cli.lifecycle import logs as runtime_logs

    runtime_logs(
        name,
        follow=False,
        tail="all" if tail is None else str(tail),
        since=since,
        until=None,
        timestamps=timestamps,
        root=root,
    )


def _engine(storage: Path | None, root: str | None, command: str) -> Path | None:
    """The engine storage to read (--storage), or None for a dockscope container (--root).

    In 0.1 --root named engine storage too, told apart by its files: that still works for one
    release, with a line naming --storage."""
    if storage is None and not root:
        return None
    from inspect_tool.storage import is_engine_root
    from inspect_tool.storage.detect import unreadable_engine_root

    if storage is None:
        assert root is not None
        if not is_engine_root(Path(root)):
            denied = unreadable_engine_root(Path(root))
            if denied is None:
                return None  # dockscope's own state
            _denied(denied)
        sys.stderr.write(
            f"dockscope: container {command} --root ENGINE_ROOT is now --storage ENGINE_ROOT; "
            "the old form goes in the next release\n"
        )
        storage = Path(root)
    denied = unreadable_engine_root(storage)
    if denied is not None:  # one line, exit 3, rather than an error deep in the reader
        _denied(denied)
    return storage


def _denied(path: Path) -> NoReturn:
    with handle_errors():
        raise StorageError(
            "cannot read this engine storage: permission denied (the engine's files "
            "belong to root: run this with sudo, or read a copy you own)",
            subject=str(path),
        )


def register(root_app: typer.Typer) -> None:
    root_app.add_typer(app)
