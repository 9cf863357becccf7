"""``dockscope ps|logs|stop|start|rm|cleanup``: the commands of a container's lifecycle (the
supervisor of detached containers is runtime_lab/lifecycle/supervisor.py)."""

from __future__ import annotations

import contextlib
import os
import sys
import time

import typer

from inspect_tool.cli._common import JSON_OPTION, handle_errors, write_json
from inspect_tool.errors import UsageError
from runtime_lab.cli.common import (
    NAME_ARGUMENT,
    NAMES_ARGUMENT,
    ROOT_OPTION,
    enter_if_rootless,
    need_root_or_rootless,
)
from runtime_lab.lifecycle.logs import LogReader, parse_tail
from runtime_lab.lifecycle.supervisor import start_detached
from runtime_lab.render import documents
from runtime_lab.storage.store import Store


def ps(
    all_: bool = typer.Option(False, "--all", "-a", help="Show exited containers too."),
    size: bool = typer.Option(
        False,
        "--size",
        "-s",
        help="Show the writable layer's size and the virtual size (image and writable layer).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the (short) IDs."),
    filter_: list[str] | None = typer.Option(
        None,
        "--filter",
        "-f",
        metavar="KEY=VALUE",
        help="Only containers that match, as docker's: id=, name= (regular expressions), "
        "status=created|restarting|running|paused|exited (lists stopped ones without -a), "
        "exited=CODE (with -a), label=KEY[=VALUE], ancestor=IMAGE|ID, before=|since=NAME, "
        "volume=NAME|PATH, network=MODE. Repeatable: the same key is any of its values, "
        "different keys all.",
    ),
    format_: str | None = typer.Option(
        None,
        "--format",
        metavar="TEMPLATE",
        help="docker's Go template subset: {{.ID}} {{.Names}} {{.Image}} {{.Command}} "
        "{{.Status}} {{.State}} {{.RunningFor}} {{.CreatedAt}} {{.Size}} {{.Labels}} "
        "{{.RestartCount}}, {{json .}}; a 'table' prefix adds headers and aligns columns.",
    ),
    last: int = typer.Option(
        -1, "--last", "-n", metavar="N", help="The N last created (all states)."
    ),
    latest: bool = typer.Option(
        False, "--latest", "-l", help="The last created container (all states)."
    ),
    no_trunc: bool = typer.Option(
        False, "--no-trunc", help="Full IDs, commands not cut at 20 characters."
    ),
    json_output: bool = JSON_OPTION,
    root: str | None = ROOT_OPTION,
) -> None:
    """List containers, as docker ps does.

    Examples:

      dockscope ps

      dockscope ps -as

      dockscope ps -aq

      dockscope ps --format '{{.ID}} {{.Names}} {{.Status}}'

      dockscope ps --format 'table {{.Names}}\t{{.Status}}'

      dockscope ps -a --filter status=exited --filter label=lab=5 -q

      dockscope ps -a --json
    """
    from runtime_lab.lifecycle.filters import PsFilter
    from runtime_lab.lifecycle.state import refresh
    from runtime_lab.render.ps import DEFAULT_TABLE, Template
    from runtime_lab.storage.records import Sizes

    with handle_errors():
        if json_output and (format_ is not None or quiet):
            raise UsageError("conflicting options: --json and --format/--quiet")
        if quiet and format_ is not None:  # docker's rule and its warning
            sys.stderr.write(
                "dockscope: WARNING: Ignoring custom format, because both --format and "
                "--quiet are set.\n"
            )
        chosen = PsFilter.parse(filter_ or [])
        template = Template.parse("{{.ID}}" if quiet else format_ or DEFAULT_TABLE)
        if size and template.table and format_ is None and not quiet:
            template = Template.parse(DEFAULT_TABLE + "\t{{.Size}}")
        store = Store(root)
        chosen.bind(lambda name: store.load_config(store.resolve(name)).created)
        rows = []
        newest = last if last > 0 else (1 if latest else -1)
        ids = store.ids()
        if newest > 0:  # docker's -n/-l: by creation time, newest first, whatever their state
            ids = sorted(ids, key=lambda i: store.load_config(i).created)[-newest:][::-1]
        for cid in ids:
            config = store.load_config(cid)
            state = refresh(store, cid)
            shown = all_ or chosen.lists_stopped or newest > 0
            if state.status not in ("running", "restarting") and not shown:
                continue
            if not chosen.matches(config, state):
                continue
            rows.append((config, state))  # restarting counts as running, as in docker ps
        measure = Sizes(store)
        sizes = {c.id: measure.container(c) if size else (None, None) for c, _ in rows}
        if json_output:
            write_json(documents.ps_document(rows, sizes))
            return
        fields = [documents.ps_fields(config, state, sizes[config.id]) for config, state in rows]
        if no_trunc:
            from runtime_lab.render.ps import command_cell

            for row, (config, _) in zip(fields, rows, strict=True):
                row.update(ID=config.id, Command=command_cell(config.command, trunc=False))
        sys.stdout.write(template.render(fields))


def logs(
    name: str = NAME_ARGUMENT,
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Go on printing what it writes, until it exits."
    ),
    tail: str = typer.Option(
        "all", "--tail", "-n", metavar="N", help="Only the last N lines (default: all)."
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="TIME",
        help="Only lines at or after TIME: RFC 3339 (2024-05-01T10:00:00Z), a date, Unix "
        "seconds, or a duration before now (10m, 1h30m).",
    ),
    until: str | None = typer.Option(
        None, "--until", metavar="TIME", help="Only lines at or before TIME (as --since)."
    ),
    timestamps: bool = typer.Option(
        False, "--timestamps", "-t", help="Each line after the time it was written (RFC 3339)."
    ),
    root: str | None = ROOT_OPTION,
) -> None:
    """Print a container's output (stdout to stdout, stderr to stderr), as docker logs does.

    The output is the container's own bytes, written as they are (as docker logs does):
    escape sequences in it reach the terminal. Pipe it through cat -v to see them. Each
    line's time is the one its json-file record got when the line was read from the
    container (docker's log driver does the same).

    Examples:

      dockscope logs web

      dockscope logs --tail 20 -f web

      dockscope logs --since 10m -t web
    """
    from runtime_lab.lifecycle.logs import TimeWindow
    from runtime_lab.lifecycle.state import refresh

    with handle_errors():
        last = parse_tail(tail)
        window = TimeWindow(since, until)
        store = Store(root)
        cid = store.resolve(name)
        path = store.container_dir(cid) / "container.log"
        reader = LogReader(path)
        lines = [r for r in reader.read_timed() if not window or window.keeps(r[2])]
        if last is not None:  # docker: --tail counts the lines --since/--until left
            lines = lines[len(lines) - last :] if last else []
        _write_log(lines, timestamps=timestamps)
        while follow:
            running = path.parent.exists() and refresh(store, cid).status in (
                "running",
                "restarting",
            )
            # after the status: nothing the container wrote is lost
            more = [r for r in reader.read_timed() if not window or window.keeps(r[2])]
            _write_log(more, timestamps=timestamps)
            if not running:
                break
            if not more:
                time.sleep(0.1)


def _write_log(records: list[tuple[str, str, str]], *, timestamps: bool = False) -> None:
    for stream, text, stamp in records:
        out = sys.stderr if stream == "stderr" else sys.stdout
        out.write(f"{stamp} {text}" if timestamps else text)
    if records:
        sys.stdout.flush()
        sys.stderr.flush()


def stop(
    names: list[str] = NAMES_ARGUMENT,
    time_: float = typer.Option(10.0, "--time", "-t", help="Seconds before SIGKILL."),
    root: str | None = ROOT_OPTION,
) -> None:
    """Stop running containers: SIGTERM to PID 1, then SIGKILL after --time seconds.

    Example:

      dockscope stop -t 2 web
    """
    from runtime_lab.lifecycle.stop import stop as stop_container

    with handle_errors():
        need_root_or_rootless(enter=False)  # rootless: the user may signal its containers
        store = Store(root)
        for name in names:
            stop_container(store, store.resolve(name), timeout=time_)
            sys.stdout.write(name + "\n")


def start(
    names: list[str] = NAMES_ARGUMENT,
    root: str | None = ROOT_OPTION,
) -> None:
    """Start stopped containers again, in the background, on their preserved writable layer.

    Example:

      dockscope start web
    """
    with handle_errors():
        need_root_or_rootless()
        store = Store(root)
        for name in names:
            start_detached(store, store.resolve(name))
            sys.stdout.write(name + "\n")


def rm(
    names: list[str] = NAMES_ARGUMENT,
    force: bool = typer.Option(False, "--force", "-f", help="Stop a running container first."),
    volumes: bool = typer.Option(
        False, "--volumes", "-v", help="Remove its anonymous volumes too (named ones stay)."
    ),
    root: str | None = ROOT_OPTION,
) -> None:
    """Remove containers and their writable layers.

    Example:

      dockscope rm -f web
    """
    from runtime_lab.lifecycle.stop import remove as remove_container

    with handle_errors():
        store = Store(root)
        ids = _resolvable(store, names)
        if force and os.geteuid() != 0:  # rootless: stopped from outside, where the user
            _stop_running(store, ids)  # may signal any id of its containers' namespaces
        enter_if_rootless(store, ids)  # rootless: owners via the map
        for name in names:
            remove_container(store, store.resolve(name), force=force, volumes=volumes)
            sys.stdout.write(name + "\n")


def _stop_running(store: Store, ids: list[str]) -> None:
    from runtime_lab.lifecycle.state import refresh
    from runtime_lab.lifecycle.stop import stop as stop_container

    for cid in ids:
        if refresh(store, cid).status in ("running", "restarting"):
            stop_container(store, cid, timeout=0)


def _resolvable(store: Store, names: list[str]) -> list[str]:
    """The IDs of the names that resolve (the others fail in their turn, as before)."""
    found = []
    for name in names:
        with contextlib.suppress(UsageError):
            found.append(store.resolve(name))
    return found


def cleanup(root: str | None = ROOT_OPTION) -> None:
    """Recover from crashes: stale states, leftover control groups, half-unpacked layers,
    records of image files gone or changed since they ran, leaked mounts.

    Example:

      dockscope cleanup
    """
    from runtime_lab.lifecycle.recovery import recover

    with handle_errors():
        need_root_or_rootless()
        report = recover(Store(root))
        from inspect_tool.render.text import visible

        for line in report:
            sys.stdout.write(visible(line) + "\n")


def register(app: typer.Typer) -> None:
    app.command()(ps)
    app.command()(logs)
    app.command()(stop)
    app.command()(start)
    app.command()(rm)
    app.command()(cleanup)
