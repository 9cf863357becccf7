"""The runtime's commands in the ``dockscope`` CLI: run, ps, logs, stop, start, rm, cleanup,
and ``dockscope container diff|export|commit|inspect``."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from inspect_tool.cli._common import IMAGE_OPTION, PLATFORM_OPTION, REF_OPTION, handle_errors
from inspect_tool.errors import UsageError

if TYPE_CHECKING:
    from runtime_lab.store import Store
    from runtime_lab.trace import Tracer

ROOT_OPTION = typer.Option(
    None,
    "--root",
    metavar="DIR",
    envvar="DOCKSCOPE_ROOT",
    help="State directory (default /var/lib/dockscope; also DOCKSCOPE_ROOT).",
)
RUN_IMAGE = typer.Argument(..., metavar="IMAGE", help="Any image dockscope inspect reads.")
RUN_COMMAND = typer.Argument(None, metavar="[COMMAND [ARG...]]", help="Replaces the image's Cmd.")


def _need_root() -> None:
    if os.geteuid() != 0:
        raise UsageError(
            "this needs root (namespaces, mounts and cgroups): run it with sudo, or use "
            "--explain to see what it would do"
        )


def _store(root: str | None) -> Store:
    from runtime_lab.store import Store

    return Store(root)


def run(
    image_path: Path = RUN_IMAGE,
    command: list[str] | None = RUN_COMMAND,
    name: str | None = typer.Option(None, "--name", help="Name the container."),
    hostname: str | None = typer.Option(
        None, "--hostname", "-h", help="Hostname (default: the short container ID)."
    ),
    net: str = typer.Option(
        "none", "--net", "--network", help="none (own namespace, only lo) or host."
    ),
    memory: str | None = typer.Option(None, "--memory", "-m", help="Memory limit, e.g. 64m."),
    cpus: float | None = typer.Option(None, "--cpus", help="CPU limit, e.g. 0.5."),
    pids_limit: int | None = typer.Option(None, "--pids-limit", help="Process limit."),
    env: list[str] | None = typer.Option(None, "--env", "-e", help="KEY=VALUE (repeatable)."),
    workdir: str | None = typer.Option(None, "--workdir", "-w", help="Working directory."),
    user: str | None = typer.Option(None, "--user", "-u", help="name|uid[:group|gid]."),
    entrypoint: str | None = typer.Option(
        None, "--entrypoint", help="Replace the image's Entrypoint."
    ),
    detach: bool = typer.Option(
        False, "--detach", "-d", help="Run in the background; print the container ID."
    ),
    rm: bool = typer.Option(False, "--rm", help="Remove the container when it exits."),
    interactive: bool = typer.Option(False, "--interactive", "-i", help="Keep stdin open."),
    trace: bool = typer.Option(False, "--trace", help="Narrate every step on stderr."),
    trace_json: Path | None = typer.Option(
        None, "--trace-json", metavar="FILE", help="Write every step as JSON lines to FILE."
    ),
    step: bool = typer.Option(False, "--step", help="Pause before each step."),
    explain: bool = typer.Option(
        False, "--explain", help="Print the plan; do nothing (no root needed)."
    ),
    image: str | None = IMAGE_OPTION,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    root: str | None = ROOT_OPTION,
) -> None:
    """Run a command in a new container, each kernel operation done for real (and traced).

    The container's exit status is passed through (128+N when signal N ended it; 137 when
    the memory limit killed it).

    Examples:

      dockscope run --trace sample_images/busybox.tar echo hello

      dockscope run --step --hostname lab sample_images/busybox.tar hostname

      dockscope run -d --name web --memory 64m sample_images/busybox.tar sleep 600

      dockscope run --explain sample_images/busybox.tar
    """
    from runtime_lab import container as rt
    from runtime_lab.cgroups import parse_memory
    from runtime_lab.trace import Tracer

    with handle_errors():
        try:
            memory_bytes = parse_memory(memory) if memory else None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        # docker's bounds: below them the kernel refuses the value (a CFS quota under 1 ms)
        # or the container cannot even start
        if memory_bytes is not None and memory_bytes < 6 * 1024 * 1024:
            raise UsageError("--memory: the minimum is 6m")
        available = os.cpu_count() or 1
        if cpus is not None and not 0.01 <= cpus <= available:
            raise UsageError(f"--cpus: from 0.01 to {available} (the CPUs this machine has)")
        if pids_limit is not None and pids_limit < 1:
            raise UsageError("--pids-limit must be at least 1")
        if detach and (step or interactive):
            raise UsageError("--detach cannot be combined with --step or --interactive")
        options = rt.RunOptions(
            image=image_path,
            args=list(command or []),
            select_image=image,
            select_ref=ref,
            select_platform=platform,
            entrypoint=entrypoint,
            name=name,
            hostname=hostname,
            network=net,
            memory=memory_bytes,
            cpus=cpus,
            pids=pids_limit,
            env=list(env or []),
            workdir=workdir,
            user=user,
            detach=detach,
            auto_remove=rm,
            interactive=interactive,
        )
        if explain:
            _explain(options)
            return
        _need_root()
        tracer = Tracer()
        try:
            json_file = open(trace_json, "w") if trace_json else None  # noqa: SIM115
        except OSError as exc:
            raise UsageError(
                f"cannot write the trace: {exc.strerror}", subject=str(trace_json)
            ) from None
        try:
            _add_sinks(tracer, trace=trace, json_file=json_file)
            store = _store(root)
            config = rt.create(store, options, tracer)
            if detach:
                from runtime_lab.lifecycle import start_detached

                start_detached(store, config.id, trace_json=trace_json)
                sys.stdout.write(config.id + "\n")
                return
            stepper = None
            if step:
                from runtime_lab.narrate import Stepper

                stepper = Stepper()
                tracer.add_sink(stepper.note)
            io = rt.StartIO(stdin="inherit" if interactive else "null", stepper=stepper)
            code = rt.start(store, config.id, tracer, io)
            state = store.load_state(config.id)
            if state.error:
                sys.stderr.write(f"dockscope: container {config.name}: {state.error}\n")
            if state.oom_killed:
                sys.stderr.write(
                    f"dockscope: container {config.name} was killed by the memory "
                    f"limit (exit {code})\n"
                )
            if rm:
                rt.remove(store, config.id, force=True)
        finally:
            if json_file is not None:
                with contextlib.suppress(OSError):  # reported already, as the run stopped
                    json_file.close()
        raise typer.Exit(code)


def _add_sinks(tracer: Tracer, *, trace: bool, json_file: object) -> None:
    if trace:
        from runtime_lab.narrate import Narrator

        tracer.add_sink(Narrator())
    if json_file is not None:
        from runtime_lab.trace import JsonLinesSink

        tracer.add_sink(JsonLinesSink(json_file))  # type: ignore[arg-type]


def _explain(options: object) -> None:
    from rich.console import Console

    from inspect_tool.cli._common import open_one_image
    from runtime_lab.container import RunOptions
    from runtime_lab.layerstore import overlay_available
    from runtime_lab.narrate import explain
    from runtime_lab.spec import command_line
    from runtime_lab.steps import plan

    assert isinstance(options, RunOptions)
    source, image = open_one_image(
        options.image, options.select_image, options.select_ref, options.select_platform
    )
    with source:
        config = dict(image.config.config)
        argv = command_line(config, options.args, options.entrypoint)
    limits = any(v is not None for v in (options.memory, options.cpus, options.pids))
    mode = "overlay" if overlay_available() else "copy"
    details = {
        "image": f"{image.display_name} ({image.image_id.short}), {len(image.layers)} layers",
        "command": json.dumps(argv),
        "user": options.user or str(config.get("User") or "root"),
        "network": options.network,
        "limits": ", ".join(
            f"{k}={v}"
            for k, v in (("memory", options.memory), ("cpus", options.cpus), ("pids", options.pids))
            if v is not None
        )
        or "none",
        "root filesystem": mode,
    }
    explain(
        Console(highlight=False),
        plan(network=options.network, limits=limits, rootfs_mode=mode),
        details,
    )


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_interspersed_args": False})(run)
    from runtime_lab import container_cli, lifecycle

    lifecycle.register(app)
    container_cli.register(app)
