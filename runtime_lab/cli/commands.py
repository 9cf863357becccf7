"""The runtime's commands in the ``dockscope`` CLI: run, ps, logs, stop, start, rm, cleanup,
and ``dockscope container diff|export|commit|inspect``."""

from __future__ import annotations

from pathlib import Path

import typer

from inspect_tool.cli._common import PLATFORM_OPTION, REF_OPTION, handle_errors, image_location
from runtime_lab.cli.common import ROOT_OPTION

RUN_IMAGE = typer.Argument(
    ..., metavar="IMAGE", help="Any image dockscope inspect reads.", parser=image_location
)
RUN_COMMAND = typer.Argument(None, metavar="[COMMAND [ARG...]]", help="Replaces the image's Cmd.")
# as IMAGE_OPTION, without its short form: in run, -i is docker's --interactive
RUN_SELECT_IMAGE = typer.Option(
    None,
    "--image",
    metavar="NAME:TAG|N",
    help="Choose an image of a multi-image archive by tag or by 1-based position.",
)


def run(
    image_path: Path = RUN_IMAGE,
    command: list[str] | None = RUN_COMMAND,
    name: str | None = typer.Option(None, "--name", help="Name the container."),
    hostname: str | None = typer.Option(
        None,
        "--hostname",
        help="Hostname (default: the short container ID). Not -h, which is help here as in "
        "every dockscope command (docker run -h sets the hostname).",
    ),
    net: str | None = typer.Option(
        None,
        "--net",
        "--network",
        metavar="MODE",
        help="bridge (the default as root: eth0 on the dockscope0 bridge, NAT out, -p in), "
        "none (own namespace, only lo; the default for other users), host, or "
        "container:NAME (join its namespace).",
    ),
    publish: list[str] | None = typer.Option(
        None,
        "--publish",
        "-p",
        metavar="[IP:]HOST:CONTAINER[/tcp|udp]",
        help="Publish a container's port on the host (--network bridge; repeatable).",
    ),
    pid: str = typer.Option(
        "private", "--pid", help="private (own PID namespace), host, or container:NAME."
    ),
    ipc: str = typer.Option(
        "private", "--ipc", help="private (own IPC namespace), host, or container:NAME."
    ),
    memory: str | None = typer.Option(None, "--memory", "-m", help="Memory limit, e.g. 64m."),
    cpus: float | None = typer.Option(None, "--cpus", help="CPU limit, e.g. 0.5."),
    pids_limit: int | None = typer.Option(None, "--pids-limit", help="Process limit."),
    env: list[str] | None = typer.Option(None, "--env", "-e", help="KEY=VALUE (repeatable)."),
    env_file: list[Path] | None = typer.Option(
        None, "--env-file", metavar="FILE", help="KEY=VALUE lines (repeatable; -e wins)."
    ),
    label: list[str] | None = typer.Option(
        None, "--label", "-l", help="KEY=VALUE metadata (repeatable; over the image's)."
    ),
    volume: list[str] | None = typer.Option(
        None,
        "--volume",
        "-v",
        metavar="[HOST|NAME:]PATH[:ro]",
        help="Bind mount a host path, or a named volume (repeatable); PATH alone: an "
        "anonymous volume.",
    ),
    read_only: bool = typer.Option(
        False, "--read-only", help="Mount the root filesystem read-only."
    ),
    security_opt: list[str] | None = typer.Option(
        None,
        "--security-opt",
        metavar="OPT",
        help="seccomp=unconfined (no filter), seccomp=PROFILE.json (docker's profile format; "
        "default: docker's default profile), no-new-privileges (always set). Repeatable.",
    ),
    cap_add: list[str] | None = typer.Option(
        None,
        "--cap-add",
        metavar="CAP",
        help="Keep a capability beyond docker's default 14 (NET_ADMIN or CAP_NET_ADMIN; ALL). "
        "Repeatable.",
    ),
    cap_drop: list[str] | None = typer.Option(
        None,
        "--cap-drop",
        metavar="CAP",
        help="Drop a capability of the default set (NET_RAW; ALL: all but those added). "
        "Repeatable.",
    ),
    privileged: bool = typer.Option(
        False,
        "--privileged",
        help="Every capability, no seccomp filter, no masked or read-only paths, /sys "
        "writable, every host device: the host's root, as docker's --privileged.",
    ),
    workdir: str | None = typer.Option(None, "--workdir", "-w", help="Working directory."),
    user: str | None = typer.Option(None, "--user", "-u", help="name|uid[:group|gid]."),
    entrypoint: str | None = typer.Option(
        None, "--entrypoint", help="Replace the image's Entrypoint."
    ),
    detach: bool = typer.Option(
        False, "--detach", "-d", help="Run in the background; print the container ID."
    ),
    rm: bool = typer.Option(False, "--rm", help="Remove the container when it exits."),
    restart: str = typer.Option(
        "no",
        "--restart",
        metavar="POLICY",
        help="no, always or on-failure[:N]: the supervisor of a detached container starts it "
        "again when it exits.",
    ),
    interactive: bool = typer.Option(
        False, "--interactive", "-i", help="Keep stdin open (else the container's is closed)."
    ),
    tty: bool = typer.Option(
        False, "--tty", "-t", help="Allocate a terminal inside the container (with -i: -it)."
    ),
    attach: list[str] | None = typer.Option(
        None,
        "--attach",
        "-a",
        metavar="STREAM",
        help="Attach stdin, stdout or stderr (repeatable; default stdout and stderr, and "
        "stdin with -i).",
    ),
    trace: bool = typer.Option(False, "--trace", help="Narrate every step on stderr."),
    trace_json: Path | None = typer.Option(
        None, "--trace-json", metavar="FILE", help="Write every step as JSON lines to FILE."
    ),
    step: bool = typer.Option(False, "--step", help="Pause before each step."),
    explain: bool = typer.Option(
        False, "--explain", help="Print the plan; do nothing (no root needed)."
    ),
    image: str | None = RUN_SELECT_IMAGE,
    ref: str | None = REF_OPTION,
    platform: str | None = PLATFORM_OPTION,
    root: str | None = ROOT_OPTION,
) -> None:
    """Run a command in a new container, each kernel operation done for real (and traced).

    The container's exit status is passed through (128+N when signal N ended it; 137 when
    the memory limit killed it).

    As an ordinary user the run is rootless: a user namespace first (your /etc/subuid range,
    or your own uid alone), state in ~/.local/share/dockscope, no control group on cgroup v1.

    Examples:

      dockscope run --trace sample_images/busybox.tar echo hello

      dockscope run --step --hostname lab sample_images/busybox.tar hostname

      dockscope run -d --name web --memory 64m sample_images/busybox.tar sleep 600

      dockscope run -it sample_images/busybox.tar sh

      echo hello | dockscope run -i sample_images/busybox.tar cat

      dockscope run -v data:/data -v "$PWD":/src:ro sample_images/busybox.tar ls /data /src

      dockscope run --trace sample_images/busybox.tar unshare -U true   # EPERM: seccomp

      dockscope run --security-opt seccomp=unconfined sample_images/busybox.tar unshare -U true

      dockscope run --security-opt seccomp=profile.json sample_images/busybox.tar mkdir /x

      dockscope run --cap-drop NET_RAW sample_images/busybox.tar ping -c1 127.0.0.1

      dockscope run --cap-add SYS_ADMIN sample_images/busybox.tar mount -t tmpfs none /mnt

      dockscope run -d --name web --network bridge -p 8080:80 sample_images/busybox.tar httpd -f

      dockscope run --explain sample_images/busybox.tar
    """
    from runtime_lab.cli.run_container import run_container

    with handle_errors():
        code = run_container(
            image_path,
            command or [],
            name=name,
            hostname=hostname,
            net=net,
            publish=publish or [],
            pid=pid,
            ipc=ipc,
            memory=memory,
            cpus=cpus,
            pids_limit=pids_limit,
            env=env or [],
            env_file=env_file or [],
            label=label or [],
            volume=volume or [],
            read_only=read_only,
            security_opt=security_opt or [],
            cap_add=cap_add or [],
            cap_drop=cap_drop or [],
            privileged=privileged,
            workdir=workdir,
            user=user,
            entrypoint=entrypoint,
            detach=detach,
            rm=rm,
            restart=restart,
            interactive=interactive,
            tty=tty,
            attach=attach or [],
            trace=trace,
            trace_json=trace_json,
            step=step,
            explain=explain,
            image=image,
            ref=ref,
            platform=platform,
            root=root,
        )
    raise typer.Exit(code)


def oci_runtime(ctx: typer.Context) -> None:
    """The OCI runtime command line (runc's), as dockscope-runtime: create, start, state,
    kill, delete, exec, features, list, ps. Engines call dockscope-runtime by path
    (docs/OCI-RUNTIME.md).

    Examples:

      dockscope runtime --root /tmp/state create --bundle BUNDLE ID

      dockscope runtime state ID

      podman --runtime $(command -v dockscope-runtime) run --rm IMAGE echo hi
    """
    from runtime_lab.cli.oci_runtime import main

    raise typer.Exit(main(list(ctx.args), prog="dockscope runtime"))


def register(app: typer.Typer, *, only: str | None = None) -> None:
    """Add the runtime's commands; ``only="run"`` adds just ``run`` (a container's start-up is
    measured against podman's: the other command modules are not imported for it)."""
    app.command(context_settings={"allow_interspersed_args": False})(run)
    if only == "run":
        return
    from runtime_lab.cli import container, copy, habits, lifecycle, network, session, volume

    lifecycle.register(app)
    network.register(app)
    app.command(
        "runtime",
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "help_option_names": [],
        },
        add_help_option=False,
    )(oci_runtime)
    habits.register(app)
    copy.register(app)
    session.register(app)
    container.register(app)
    volume.register(app)
