"""docker's everyday commands on a running container: ``top``, ``stats``, ``kill -s``,
``pause``/``unpause``, ``wait``, ``rename`` (and ``cp``: runtime_lab/cli/copy.py). Each says
what it did to the kernel on stderr with ``--explain``-like ``--trace``: the file written, the
signal sent."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import typer

from inspect_tool.cli._common import JSON_OPTION, handle_errors, write_json
from runtime_lab.cli.common import NAME_ARGUMENT, NAMES_ARGUMENT, ROOT_OPTION, need_root
from runtime_lab.storage.store import Store

if TYPE_CHECKING:
    from runtime_lab.lifecycle.stats import Sample

TRACE_OPTION = typer.Option(
    False, "--trace", help="Say on stderr what was done to the kernel (files, signals)."
)


def _say(trace: bool, name: str, evidence: Mapping[str, object]) -> None:
    if trace:
        from inspect_tool.render.text import visible

        detail = "; ".join(f"{k}: {v}" for k, v in evidence.items())
        sys.stderr.write(f"dockscope: {visible(name)}: {visible(detail)}\n")


def top(
    name: str = NAME_ARGUMENT,
    ps_args: list[str] | None = typer.Argument(
        None, metavar="[PS OPTIONS]", help="Options for ps (default -ef)."
    ),
    root: str | None = ROOT_OPTION,
) -> None:
    """The processes of a running container, as docker top shows them: the host's ps (its
    options given after the name; default -ef), only the rows of the PIDs in the
    container's control group (cgroup.procs). The PIDs are the host's.

    Examples:

      dockscope top web

      dockscope top web -o pid,user,rss,args
    """
    from runtime_lab.lifecycle.stats import container_pids
    from runtime_lab.lifecycle.stats import top as run_top
    from runtime_lab.render.ps import tabwriter

    with handle_errors():
        store = Store(root)
        cid = store.resolve(name)
        titles, rows = run_top(container_pids(store, cid), ps_args or [])
        from inspect_tool.render.text import visible

        lines = ["\t".join(titles)] + ["\t".join(visible(c) for c in row) for row in rows]
        sys.stdout.write(tabwriter(lines))


STATS_FIELDS = {
    "Container": "CONTAINER",
    "ID": "CONTAINER ID",
    "Name": "NAME",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}
STATS_TABLE = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
    "{{.BlockIO}}\t{{.PIDs}}"
)


def stats(
    names: list[str] | None = typer.Argument(None, metavar="[NAME...]", help="Containers."),
    all_: bool = typer.Option(False, "--all", "-a", help="Stopped containers too."),
    no_stream: bool = typer.Option(
        False, "--no-stream", help="One reading, then exit (else every second until Ctrl-C)."
    ),
    format_: str | None = typer.Option(
        None,
        "--format",
        metavar="TEMPLATE",
        help="{{.ID}} {{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.MemPerc}} {{.NetIO}} "
        "{{.BlockIO}} {{.PIDs}} {{.Container}}, {{json .}}; 'table' adds headers.",
    ),
    json_output: bool = JSON_OPTION,
    root: str | None = ROOT_OPTION,
) -> None:
    """What running containers use, read from their control group's files (memory usage and
    limit, CPU time, pids.current) and /proc/PID/net/dev, as docker stats shows it. The CPU
    % is measured over one second. On a terminal the table is redrawn each second.

    Examples:

      dockscope stats --no-stream

      dockscope stats --no-stream --format '{{.Name}} {{.MemUsage}} {{.PIDs}}' web

      dockscope stats --no-stream --json web
    """
    from runtime_lab.lifecycle.state import refresh
    from runtime_lab.lifecycle.stats import running, sample
    from runtime_lab.render.ps import Template

    with handle_errors():
        if json_output and format_ is not None:
            from inspect_tool.errors import UsageError

            raise UsageError("conflicting options: --json and --format")
        template = Template.parse(format_ or STATS_TABLE, fields=STATS_FIELDS, default=STATS_TABLE)
        store = Store(root)
        chosen = running(store, names or [], all_=all_)
        live = sys.stdout.isatty() and not no_stream
        try:
            while True:
                configs = {cid: store.load_config(cid) for cid in chosen}
                states = {cid: refresh(store, cid) for cid in chosen}
                first = {cid: sample(configs[cid], states[cid]) for cid in chosen}
                time.sleep(1.0)
                second = {cid: sample(configs[cid], states[cid]) for cid in chosen}
                rows = [_stats_row(first[c], second[c], states[c].status) for c in chosen]
                if json_output:
                    write_json(
                        {
                            "schema_version": 1,
                            "kind": "stats",
                            "containers": [
                                {**r, "files": second[c].files}
                                for r, c in zip(
                                    _raw_rows(first, second, chosen), chosen, strict=False
                                )
                            ],
                        }
                    )
                else:
                    if live:
                        sys.stdout.write("\033[2J\033[H")  # docker's: clear, home
                    sys.stdout.write(template.render(rows))
                    sys.stdout.flush()
                if no_stream:
                    return
        except KeyboardInterrupt:
            return


def _raw_rows(
    first: Mapping[str, Sample], second: Mapping[str, Sample], chosen: list[str]
) -> list[dict[str, object]]:
    from runtime_lab.lifecycle.stats import cpu_percent

    return [
        {
            "id": c,
            "name": second[c].name,
            "cpu_percent": cpu_percent(first[c], second[c]),
            "memory": second[c].memory,
            "memory_limit": second[c].limit,
            "pids": second[c].pids,
            "net_rx": second[c].net_rx,
            "net_tx": second[c].net_tx,
        }
        for c in chosen
    ]


def _stats_row(before: Sample, after: Sample, status: str) -> dict[str, str]:
    from inspect_tool.render.text import visible
    from runtime_lab.lifecycle.stats import cpu_percent
    from runtime_lab.storage.records import human_size

    running_now = status == "running"
    cpu = cpu_percent(before, after) if running_now else None
    memory, limit = after.memory, after.limit
    usage = (
        f"{binary_size(memory)} / {binary_size(limit)}"
        if running_now and memory is not None and limit is not None
        else "0B / 0B"
    )
    percent = memory / limit * 100 if running_now and memory is not None and limit else None
    net = (
        f"{human_size(after.net_rx)} / {human_size(after.net_tx)}"
        if running_now and after.net_rx is not None and after.net_tx is not None
        else "0B / 0B"
    )
    return {
        "Container": after.container_id[:12],
        "ID": after.container_id[:12],
        "Name": visible(after.name),
        "CPUPerc": f"{cpu:.2f}%" if cpu is not None else "0.00%",
        "MemUsage": usage,
        "MemPerc": f"{percent:.2f}%" if percent is not None else "0.00%",
        "NetIO": net,
        "BlockIO": "--",
        "PIDs": str(after.pids) if running_now and after.pids is not None else "0",
    }


def binary_size(size: int) -> str:
    """go-units' BytesSize, as docker stats prints memory: binary units, four significant
    digits (``1.512MiB``, ``15.52GiB``)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    value = float(size)
    index = 0
    while value >= 1024 and index < len(units) - 1:
        value /= 1024
        index += 1
    return f"{value:.4g}{units[index]}"


def kill(
    names: list[str] = NAMES_ARGUMENT,
    signal_: str = typer.Option(
        "KILL", "--signal", "-s", metavar="SIGNAL", help="A name (KILL, SIGHUP, hup) or number."
    ),
    trace: bool = TRACE_OPTION,
    root: str | None = ROOT_OPTION,
) -> None:
    """Send a signal to each container's PID 1 (default SIGKILL), as docker kill does.

    A PID 1 gets only the signals it set a handler for (the kernel protects a namespace's
    init), SIGKILL aside: `kill -s TERM` does nothing to a shell that did not trap it.

    Examples:

      dockscope kill web

      dockscope kill -s HUP web
    """
    from runtime_lab.lifecycle.control import kill as send
    from runtime_lab.lifecycle.control import parse_signal

    with handle_errors():
        need_root()
        sig = parse_signal(signal_)
        store = Store(root)
        for name in names:
            _say(trace, name, send(store, store.resolve(name), sig))
            sys.stdout.write(name + "\n")


def pause(
    names: list[str] = NAMES_ARGUMENT, trace: bool = TRACE_OPTION, root: str | None = ROOT_OPTION
) -> None:
    """Freeze every process of each container (the cgroup freezer: v1 freezer.state FROZEN,
    v2 cgroup.freeze 1), as docker pause does; ps shows it "Up … (Paused)".

    Example:

      dockscope pause --trace web
    """
    from runtime_lab.lifecycle.control import pause as freeze

    with handle_errors():
        need_root()
        store = Store(root)
        for name in names:
            _say(trace, name, freeze(store, store.resolve(name)))
            sys.stdout.write(name + "\n")


def unpause(
    names: list[str] = NAMES_ARGUMENT, trace: bool = TRACE_OPTION, root: str | None = ROOT_OPTION
) -> None:
    """Thaw each paused container (v1 freezer.state THAWED, v2 cgroup.freeze 0).

    Example:

      dockscope unpause web
    """
    from runtime_lab.lifecycle.control import unpause as thaw

    with handle_errors():
        need_root()
        store = Store(root)
        for name in names:
            _say(trace, name, thaw(store, store.resolve(name)))
            sys.stdout.write(name + "\n")


def wait(names: list[str] = NAMES_ARGUMENT, root: str | None = ROOT_OPTION) -> None:
    """Block until each container stops, then print its exit code (one line each), as docker
    wait does.

    Example:

      dockscope wait web
    """
    from runtime_lab.lifecycle.control import wait as wait_for

    with handle_errors():
        store = Store(root)
        ids = [store.resolve(name) for name in names]
        for cid in ids:
            sys.stdout.write(f"{wait_for(store, cid)}\n")
            sys.stdout.flush()


def rename(
    old: str = typer.Argument(..., metavar="CONTAINER", help="Its name or ID."),
    new: str = typer.Argument(..., metavar="NEW_NAME", help="The new name."),
    trace: bool = TRACE_OPTION,
    root: str | None = ROOT_OPTION,
) -> None:
    """Rename a container (running or not), as docker rename does: its config.json gets the
    new name; ID, hostname and everything else stay.

    Example:

      dockscope rename web web-old
    """
    from runtime_lab.lifecycle.control import rename as set_name

    with handle_errors():
        store = Store(root)
        evidence = set_name(store, store.resolve(old), new)
        _say(trace, old, evidence)


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_interspersed_args": False})(top)
    app.command()(stats)
    app.command()(kill)
    app.command()(pause)
    app.command()(unpause)
    app.command()(wait)
    app.command()(rename)
