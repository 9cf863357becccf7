"""``dockscope-runtime`` (and ``dockscope runtime``): the OCI runtime command line as runc
has it, for engines (podman's conmon, buildah, containerd) that call a runtime by path.

argparse rather than typer: engines pass runc's grammar (global flags before the command,
Go's single-dash long flags ``-root``, ``--log-format=json``) and a runtime starts on every
container operation, so it imports little. Errors are one line on stderr and, with ``--log``,
one line in runc's format in that file (``{"level":"error","msg":…,"time":…}`` with
``--log-format json``), where podman reads the reason a container could not be made.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any, NoReturn

from inspect_tool.render.text import visible

VERSION = "0.1.0"
SPEC_VERSION = "1.0.2"
PROG = "dockscope-runtime"

GLOBAL_LONG = {
    "root",
    "log",
    "log-format",
    "log-level",
    "debug",
    "systemd-cgroup",
    "criu",
    "rootless",
}
COMMAND_LONG = {
    "bundle",
    "pid-file",
    "console-socket",
    "no-pivot",
    "no-new-keyring",
    "preserve-fds",
    "force",
    "all",
    "process",
    "detach",
    "tty",
    "cwd",
    "env",
    "user",
    "format",
    "quiet",
}


class RuntimeUsage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: "):
            message = "no such option: " + message.split(": ", 1)[1]
        raise RuntimeUsage(message)

    def format_usage(self) -> str:  # "Usage:", as every dockscope command says it
        return _capital(super().format_usage())

    def format_help(self) -> str:
        return _capital(super().format_help())


def _capital(text: str) -> str:
    return "Usage:" + text[len("usage:") :] if text.startswith("usage:") else text


def _normalise(argv: list[str]) -> list[str]:
    """Go's flag package takes ``-root X`` as ``--root X``: accept both."""
    out = []
    for arg in argv:
        name = arg[1:].split("=", 1)[0]
        if arg.startswith("-") and not arg.startswith("--") and name in GLOBAL_LONG | COMMAND_LONG:
            arg = "-" + arg
        out.append(arg)
    return out


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="An OCI runtime with runc's command line, made of dockscope's traced steps. "
        "Trace: DOCKSCOPE_TRACE=FILE in its environment, or the annotation "
        "org.dockscope.trace=FILE in config.json.",
        epilog="Example: podman --runtime $(command -v dockscope-runtime) run --rm IMAGE echo hi",
    )
    parser.add_argument("--version", "-v", action="store_true", help="print the version")
    parser.add_argument(
        "--root", default=None, help="state directory (default /run/dockscope-runtime)"
    )
    parser.add_argument("--log", default=None, help="append errors (and --debug lines) here")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    parser.add_argument("--log-level", default=None, help="accepted as runc does")
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug log lines")
    parser.add_argument(
        "--systemd-cgroup", action="store_true", help="refused: there is no systemd here"
    )
    parser.add_argument("--rootless", default=None, help="auto|false (true is refused)")
    parser.add_argument("--criu", default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("create", help="create a container (PID 1 waits for start)")
    p.add_argument("id")
    p.add_argument("--bundle", "-b", default=".")
    p.add_argument("--pid-file", default=None)
    p.add_argument("--console-socket", default=None)
    p.add_argument("--no-pivot", action="store_true", help="refused: pivot_root is always used")
    p.add_argument("--no-new-keyring", action="store_true", help="no effect: no keyring is made")
    p.add_argument("--preserve-fds", type=int, default=0)

    p = sub.add_parser("start", help="run the process of a created container")
    p.add_argument("id")
    p = sub.add_parser("state", help="the container's state (JSON, runtime spec)")
    p.add_argument("id")
    p = sub.add_parser("kill", help="send a signal (default SIGTERM)")
    p.add_argument("id")
    p.add_argument("signal", nargs="?", default="SIGTERM")
    p.add_argument("--all", "-a", action="store_true", help="every process of the container")
    p = sub.add_parser("delete", help="delete a stopped (or, with --force, any) container")
    p.add_argument("id")
    p.add_argument("--force", "-f", action="store_true")
    p = sub.add_parser("exec", help="run one more process in the container")
    p.add_argument("id")
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.add_argument("--process", "-p", default=None, help="process.json (runtime spec)")
    p.add_argument("--detach", "-d", action="store_true")
    p.add_argument("--pid-file", default=None)
    p.add_argument("--console-socket", default=None)
    p.add_argument("--tty", "-t", action="store_true")
    p.add_argument("--cwd", default=None)
    p.add_argument("--env", "-e", action="append", default=[])
    p.add_argument("--user", "-u", default=None, help="UID[:GID]")
    p.add_argument("--preserve-fds", type=int, default=0)
    sub.add_parser("features", help="what this runtime implements (JSON, runtime spec)")
    p = sub.add_parser("list", help="containers under --root")
    p.add_argument("--format", "-f", default="table", choices=("table", "json"))
    p.add_argument("--quiet", "-q", action="store_true")
    p = sub.add_parser("ps", help="the container's processes")
    p.add_argument("id")
    p.add_argument("--format", "-f", default="table", choices=("table", "json"))
    return parser


class Log:
    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path = path
        self.fmt = fmt
        self.debug_on = debug

    def write(self, level: str, message: str) -> None:
        if not self.path:
            return
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if self.fmt == "json":
            line = json.dumps({"level": level, "msg": message, "time": now})
        else:
            line = f'time="{now}" level={level} msg="{message}"'
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def debug(self, message: str) -> None:
        if self.debug_on:
            self.write("debug", message)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """``prog``: ``dockscope runtime`` when called through dockscope's command line."""
    args_list = _normalise(list(sys.argv[1:] if argv is None else argv))
    log = Log(None, "text", False)
    try:
        args = build_parser(prog).parse_args(args_list)
        log = Log(args.log, args.log_format, args.debug)
        log.debug(f"{PROG} {' '.join(args_list)}")
        return _dispatch(args, log)
    except RuntimeUsage as exc:
        log.write("error", str(exc))
        where = "dockscope: runtime" if prog != PROG else PROG
        sys.stderr.write(f"{where}: {visible(str(exc))} (see {prog} --help)\n")
        return 2
    except Exception as exc:
        from inspect_tool.errors import DockscopeError

        if isinstance(exc, DockscopeError):
            return _fail(log, str(exc), int(exc.exit_code))
        if isinstance(exc, OSError):
            from runtime_lab.oci.init import describe

            return _fail(log, describe(exc), 1)
        if "--debug" in args_list:
            raise
        return _fail(log, f"internal error: {exc!r} (run with --debug)", 4)


def _fail(log: Log, message: str, code: int) -> int:
    log.write("error", message)
    sys.stderr.write(f"{PROG}: {visible(message)}\n")
    return code


def _out(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _dispatch(args: argparse.Namespace, log: Log) -> int:
    from inspect_tool.errors import UsageError

    if args.version:
        sys.stdout.write(f"{PROG} version {VERSION}\nspec: {SPEC_VERSION}\n")
        return 0
    if args.command is None:
        build_parser().print_help()
        return 2
    if args.systemd_cgroup:
        raise UsageError(
            "--systemd-cgroup: there is no systemd here to ask for cgroups; run the engine "
            "with its cgroupfs manager (podman --cgroup-manager cgroupfs)"
        )
    if args.rootless not in (None, "false", "auto"):
        raise UsageError("--rootless: rootless containers are not supported")
    from runtime_lab.oci import container, state

    root = args.root or state.DEFAULT_ROOT
    command = args.command
    if command == "features":
        from runtime_lab.oci.features import features

        _out(features())
        return 0
    if command == "create":
        if args.no_pivot:
            raise UsageError("--no-pivot: dockscope-runtime always uses pivot_root")
        record = container.create(
            root,
            args.id,
            args.bundle,
            pid_file=args.pid_file,
            console_socket=args.console_socket,
            preserve_fds=args.preserve_fds,
        )
        log.debug(f"created {args.id}: pid {record.pid}")
        return 0
    if command == "start":
        container.start(root, args.id)
        return 0
    if command == "state":
        _out(state.document(root, state.load(root, args.id)))
        return 0
    if command == "kill":
        container.kill(root, args.id, container.parse_signal(args.signal), all_processes=args.all)
        return 0
    if command == "delete":
        container.delete(root, args.id, force=args.force)
        return 0
    if command == "exec":
        return container.exec_process(
            root,
            args.id,
            _process(args),
            pid_file=args.pid_file,
            console_socket=args.console_socket,
            detach=args.detach,
            preserve_fds=args.preserve_fds,
        )
    if command == "list":
        return _list(root, args)
    if command == "ps":
        found = container.ps(root, args.id)
        if args.format == "json":
            sys.stdout.write(json.dumps(found) + "\n")
        else:
            sys.stdout.write("PID\n" + "".join(f"{p}\n" for p in found))
        return 0
    raise UsageError(f"unknown command {command}")


def _process(args: argparse.Namespace) -> dict[str, Any]:
    from inspect_tool.errors import UsageError

    if args.process:
        try:
            with open(args.process) as f:
                doc = json.load(f)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--process {args.process}: {exc}") from None
        if not isinstance(doc, dict):
            raise UsageError(f"--process {args.process}: not a JSON object")
        if args.tty:
            doc["terminal"] = True
        return doc
    command = [a for a in args.argv if a != "--"]
    if not command:
        raise UsageError("exec: give --process FILE or a command")
    uid, _, gid = (args.user or "0:0").partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise UsageError("--user: UID[:GID] in numbers")
    return {
        "args": command,
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *args.env],
        "cwd": args.cwd or "/",
        "terminal": args.tty,
        "user": {"uid": int(uid), "gid": int(gid or 0)},
    }


def _list(root: str, args: argparse.Namespace) -> int:
    from runtime_lab.oci import state

    docs = []
    for name in state.ids(root):
        try:
            docs.append(state.document(root, state.load(root, name)))
        except Exception:
            continue
    if args.quiet:
        sys.stdout.write("".join(d["id"] + "\n" for d in docs))
    elif args.format == "json":
        sys.stdout.write(json.dumps(docs) + "\n")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED")]
        rows += [
            (visible(d["id"]), str(d["pid"]), d["status"], visible(d["bundle"]), d["created"])
            for d in docs
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for row in rows:
            line = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
            sys.stdout.write(line.rstrip() + "\n")
    return 0


def console_main() -> None:
    """The console script's entry point."""
    from inspect_tool import classcode

    classcode.install()  # the dataclasses' methods compiled once, not at every start
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    classcode.save()
    os._exit(code)
