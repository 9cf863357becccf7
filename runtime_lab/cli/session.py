"""``dockscope attach`` and ``dockscope exec``: a terminal connected to a running container."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import typer

from inspect_tool.cli._common import handle_errors
from inspect_tool.errors import UsageError
from runtime_lab.cli.common import NAME_ARGUMENT, ROOT_OPTION, need_root_or_rootless
from runtime_lab.storage.store import Store


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
    from runtime_lab.lifecycle.state import refresh
    from runtime_lab.streams import attach as attach_streams

    with handle_errors():
        store = Store(root)
        cid = store.resolve(name)
        config = store.load_config(cid)
        if refresh(store, cid).status != "running":
            raise UsageError(f"container {config.name} is not running: start it first")
        stdin = 0 if config.interactive and not no_stdin else None
        try:
            result = attach_streams(
                store.run_dir(cid), stdin=stdin, stdout=1, stderr=2, tty=config.tty
            )
        except OSError as exc:
            raise UsageError(
                f"cannot attach to container {config.name}: {exc.strerror or exc}"
            ) from None
        if result.detached:
            sys.stderr.write("\r\nread escape sequence\r\n")
            return
        raise typer.Exit(result.exit_code if result.exit_code is not None else 0)


def exec_command(
    name: str = NAME_ARGUMENT,
    command: list[str] = typer.Argument(..., metavar="COMMAND [ARG...]", show_default=False),
    interactive: bool = typer.Option(False, "--interactive", "-i", help="Keep stdin open."),
    tty: bool = typer.Option(False, "--tty", "-t", help="Allocate a terminal (with -i: -it)."),
    env: list[str] | None = typer.Option(None, "--env", "-e", help="KEY=VALUE (repeatable)."),
    user: str | None = typer.Option(
        None, "--user", "-u", help="name|uid[:group|gid] (default: the container's)."
    ),
    workdir: str | None = typer.Option(
        None, "--workdir", "-w", help="Working directory (default: the container's)."
    ),
    trace: bool = typer.Option(False, "--trace", help="Narrate every step on stderr."),
    trace_json: Path | None = typer.Option(
        None, "--trace-json", metavar="FILE", help="Write every step as JSON lines to FILE."
    ),
    root: str | None = ROOT_OPTION,
) -> None:
    """Run a command in a running container: setns into each of its namespaces (traced step
    by step, like run) and its control group, as docker exec does.

    The new process is not PID 1: the container's command still is. Its exit status is
    passed through (126 when a step failed, 127 when the command is not found).

    Examples:

      dockscope exec web ps

      dockscope exec -it web sh

      dockscope exec --trace -u nobody web id
    """
    from runtime_lab.lifecycle.session import (
        add_trace_sinks,
        local_streams,
        open_trace_file,
        terminal_size,
    )
    from runtime_lab.lifecycle.start import StartIO
    from runtime_lab.process.exec import ExecOptions, exec_in
    from runtime_lab.trace.events import Tracer

    with handle_errors():
        if tty and interactive and not os.isatty(0):
            raise UsageError("the input device is not a TTY: -it needs a terminal on stdin")
        need_root_or_rootless(enter=False)  # rootless: the helper joins its user namespace
        store = Store(root)
        cid = store.resolve(name)
        streams = ["stdin", "stdout", "stderr"] if interactive else ["stdout", "stderr"]
        tracer = Tracer()
        json_file = open_trace_file(trace_json)
        try:
            add_trace_sinks(tracer, trace=trace, json_file=json_file)
            io = StartIO(
                local=local_streams(streams, interactive=interactive, tty=tty),
                window=terminal_size() if tty else None,
            )
            options = ExecOptions(
                argv=list(command),
                env=list(env or []),
                user=user,
                workdir=workdir,
                interactive=interactive,
                tty=tty,
            )
            result = exec_in(store, cid, options, tracer, io)
        finally:
            if json_file is not None:
                with contextlib.suppress(OSError):
                    json_file.close()
        if result.error:
            from inspect_tool.render.text import visible

            sys.stderr.write(f"dockscope: exec in {visible(name)}: {visible(result.error)}\n")
        raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command()(attach)
    app.command(name="exec", context_settings={"allow_interspersed_args": False})(exec_command)
