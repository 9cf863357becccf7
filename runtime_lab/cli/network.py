"""``dockscope port``: a container's published ports (``-p``), as docker port prints them."""

from __future__ import annotations

import sys

import typer

from inspect_tool.cli._common import handle_errors
from inspect_tool.errors import UsageError
from runtime_lab.cli.common import NAME_ARGUMENT, ROOT_OPTION


def port(
    name: str = NAME_ARGUMENT,
    private: str | None = typer.Argument(
        None, metavar="[PRIVATE_PORT[/PROTO]]", help="Only this container port (tcp unless /udp)."
    ),
    root: str | None = ROOT_OPTION,
) -> None:
    """List a running container's port mappings: CONTAINER/PROTO -> HOST_IP:HOST_PORT.

    Examples:

      dockscope port web

      dockscope port web 80/tcp
    """
    from runtime_lab.kernel.network import PortMapping
    from runtime_lab.lifecycle.state import refresh
    from runtime_lab.storage.store import Store

    with handle_errors():
        store = Store(root)
        container_id = store.resolve(name)
        config = store.load_config(container_id)
        if refresh(store, container_id).status != "running":  # as docker: nothing is bound
            return
        mappings = [PortMapping(**p) for p in config.ports]
        if private is None:
            for mapping in mappings:
                sys.stdout.write(f"{mapping}\n")
            return
        number, _, protocol = private.partition("/")
        protocol = protocol or "tcp"
        if not number.isdigit() or protocol not in ("tcp", "udp"):
            raise UsageError(f"invalid port {private!r}: PORT or PORT/tcp or PORT/udp")
        chosen = [m for m in mappings if m.container_port == int(number) and m.protocol == protocol]
        if not chosen:
            raise UsageError(f"no public port '{number}/{protocol}' published for {name}")
        for mapping in chosen:
            sys.stdout.write(f"{mapping.host_ip or '0.0.0.0'}:{mapping.host_port}\n")


def register(app: typer.Typer) -> None:
    app.command()(port)
