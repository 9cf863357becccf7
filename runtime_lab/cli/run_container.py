"""``dockscope run``, carried out: the options parsed by typer (``commands.run``) or, for a
plain command line, without it (``run_args.py``), then the same steps. Free of typer."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from runtime_lab.cli.privilege import need_root_or_rootless
from runtime_lab.lifecycle.session import (
    add_trace_sinks,
    local_streams,
    open_trace_file,
    terminal_size,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runtime_lab.run_options import RunOptions
    from runtime_lab.storage.store import ContainerConfig, Store
    from runtime_lab.trace.events import Tracer


def run_container(
    image_path: Path,
    command: list[str],
    *,
    name: str | None = None,
    hostname: str | None = None,
    net: str | None = None,
    publish: list[str],
    pid: str = "private",
    ipc: str = "private",
    memory: str | None = None,
    cpus: float | None = None,
    pids_limit: int | None = None,
    env: list[str],
    env_file: list[Path],
    label: list[str],
    volume: list[str],
    read_only: bool = False,
    security_opt: list[str],
    cap_add: list[str],
    cap_drop: list[str],
    privileged: bool = False,
    workdir: str | None = None,
    user: str | None = None,
    entrypoint: str | None = None,
    detach: bool = False,
    rm: bool = False,
    restart: str = "no",
    interactive: bool = False,
    tty: bool = False,
    attach: list[str],
    trace: bool = False,
    trace_json: Path | None = None,
    step: bool = False,
    explain: bool = False,
    image: str | None = None,
    ref: str | None = None,
    platform: str | None = None,
    root: str | None = None,
) -> int:
    """Run the container as ``dockscope run`` was told to (each argument is the option of
    the same name); the exit code to end with. Library errors are the caller's to map."""
    from inspect_tool.sources import ImageSelection
    from runtime_lab.lifecycle.create import create as create_container
    from runtime_lab.lifecycle.create import platform_warning_for
    from runtime_lab.run_options import RunOptions
    from runtime_lab.trace.events import Tracer

    options = RunOptions.parse(
        image_path,
        command,
        selection=ImageSelection(image, ref, platform),
        entrypoint=entrypoint,
        name=name,
        hostname=hostname,
        network=net,
        pid_mode=pid,
        ipc_mode=ipc,
        memory=memory,
        cpus=cpus,
        pids_limit=pids_limit,
        env=env,
        env_files=env_file,
        labels=label,
        volumes=volume,
        read_only=read_only,
        security_opt=security_opt,
        cap_add=cap_add,
        cap_drop=cap_drop,
        privileged=privileged,
        publish=publish,
        workdir=workdir,
        user=user,
        detach=detach,
        auto_remove=rm,
        restart=restart,
        interactive=interactive,
        tty=tty,
        attach=attach,
        step=step,
        explain=explain,
    )
    if explain:
        _explain(options, traced=trace or trace_json is not None)
        return 0
    need_root_or_rootless()  # an ordinary user: into a user namespace first
    tracer = Tracer()
    json_file = open_trace_file(trace_json)
    try:
        add_trace_sinks(tracer, trace=trace, json_file=json_file)
        store = _store(root)
        config = create_container(store, options, tracer)
        _warn_limits(options)
        warning = platform_warning_for(config.image_config, platform)
        if warning is not None:  # docker's, before the container starts
            sys.stderr.write(f"dockscope: WARNING: {warning}\n")
        if detach:
            from runtime_lab.lifecycle.supervisor import start_detached

            start_detached(store, config.id, trace_json=trace_json)
            sys.stdout.write(config.id + "\n")
            return 0
        code = _run_attached(store, config, options, tracer, step=step)
    finally:
        if json_file is not None:
            with contextlib.suppress(OSError):  # reported already, as the run stopped
                json_file.close()
    return code


def _store(root: str | None) -> Store:
    from runtime_lab.storage.store import Store

    return Store(root)


def _warn_limits(options: RunOptions) -> None:
    from runtime_lab.lifecycle.rootless import limits_warning

    warning = limits_warning(options.memory, options.cpus, options.pids)
    if warning is not None:  # podman's warning; the limits are not recorded
        sys.stderr.write(f"dockscope: WARNING: {warning}\n")


def _run_attached(
    store: Store, config: ContainerConfig, options: RunOptions, tracer: Tracer, *, step: bool
) -> int:
    """A foreground run: started with the local streams attached (paused before each step
    with --step), what ended it told on stderr, removed with --rm; its exit code."""
    from inspect_tool.render.text import visible
    from runtime_lab.lifecycle.start import StartIO
    from runtime_lab.lifecycle.start import start as start_container
    from runtime_lab.lifecycle.state import step_event
    from runtime_lab.lifecycle.stop import remove as remove_container

    stepper = None
    if step:
        from runtime_lab.trace.narrate import Stepper

        stepper = Stepper()
        tracer.add_sink(stepper.note)
    io = StartIO(
        local=local_streams(list(options.attach), interactive=options.interactive, tty=options.tty),
        stepper=stepper,
        window=terminal_size() if options.tty else None,
    )
    try:
        code = start_container(store, config.id, tracer, io)
    except Exception:
        if options.auto_remove:  # a container that could not start is not kept either
            with contextlib.suppress(Exception):
                remove_container(store, config.id, force=True, volumes=True)
        raise
    state = store.load_state(config.id)
    if state.error:
        sys.stderr.write(f"dockscope: container {visible(config.name)}: {visible(state.error)}\n")
    if state.oom_killed:
        sys.stderr.write(
            f"dockscope: container {visible(config.name)} was killed by the memory "
            f"limit (exit {code})\n"
        )
    if options.auto_remove:  # start removed the group and released the network itself
        removed = remove_container(store, config.id, force=True, volumes=True, leftovers=False)
        tracer.emit(step_event("remove", evidence=removed))
    return code


def _explain(options: RunOptions, *, traced: bool) -> None:
    from inspect_tool.cli._common import stdout_console
    from inspect_tool.sources import open_image
    from runtime_lab.render import documents
    from runtime_lab.spec import command_line, platform_mismatch
    from runtime_lab.storage.layerstore import overlay_available
    from runtime_lab.storage.store import rootless
    from runtime_lab.trace.narrate import explain
    from runtime_lab.trace.steps import plan

    source, image = open_image(options.image, options.selection)
    with source:
        config = dict(image.config.config)
        argv = command_line(config, options.args, options.entrypoint)
        mismatch = platform_mismatch(image.config.data)
    limits = any(v is not None for v in (options.memory, options.cpus, options.pids))
    mode = "overlay" if overlay_available() else "copy"
    details = documents.explain_details(options, image, argv, mismatch, mode)
    explain(
        stdout_console(),
        plan(
            network=options.network,
            limits=limits,
            rootfs_mode=mode,
            tty=options.tty,
            volumes=len(options.volumes),
            read_only=options.read_only,
            seccomp=options.security.seccomp != "unconfined" and not options.caps.privileged,
            privileged=options.caps.privileged,
            traced=traced,
            auto_remove=options.auto_remove,
            rootless=rootless(),
            ports=len(options.publish),
            joined=[
                kind
                for kind, mode in (
                    ("ipc", options.ipc_mode),
                    ("net", options.network),
                    ("pid", options.pid_mode),
                )
                if mode.startswith("container:")
            ],
        ),
        details,
    )
