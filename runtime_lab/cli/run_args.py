"""``dockscope run`` parsed without typer, for the command lines that need nothing else.

A warm run's start-up is measured against podman's (benchmarks/bench_runtime.py), and
importing typer and building the command took ~17 ms of a ~120 ms warm run. A command line
that names only ``run``'s own options, in the plain forms (``--name x``, ``--name=x``,
``-e X``, ``-it``), is parsed here, into the values typer would give, and run by the same
``run_container``. Anything else (``--help``, ``--debug``, the registry access options, an
unknown option, a missing or bad value, a short option with its value attached) is left to
typer, which then parses, explains or refuses it as before. ``tests/runtime/test_run_args.py``
holds the table below to the typer command's own options, and the values to typer's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FLAG, VALUE, MULTIPLE = "flag", "value", "multiple"
# name -> (parameter, how it takes a value, the conversion typer's type makes)
OPTIONS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "--name": ("name", VALUE, str),
    "--hostname": ("hostname", VALUE, str),
    "--net": ("net", VALUE, str),
    "--network": ("net", VALUE, str),
    "--publish": ("publish", MULTIPLE, str),
    "-p": ("publish", MULTIPLE, str),
    "--pid": ("pid", VALUE, str),
    "--ipc": ("ipc", VALUE, str),
    "--memory": ("memory", VALUE, str),
    "-m": ("memory", VALUE, str),
    "--cpus": ("cpus", VALUE, float),
    "--pids-limit": ("pids_limit", VALUE, int),
    "--env": ("env", MULTIPLE, str),
    "-e": ("env", MULTIPLE, str),
    "--env-file": ("env_file", MULTIPLE, Path),
    "--label": ("label", MULTIPLE, str),
    "-l": ("label", MULTIPLE, str),
    "--volume": ("volume", MULTIPLE, str),
    "-v": ("volume", MULTIPLE, str),
    "--read-only": ("read_only", FLAG, str),
    "--security-opt": ("security_opt", MULTIPLE, str),
    "--cap-add": ("cap_add", MULTIPLE, str),
    "--cap-drop": ("cap_drop", MULTIPLE, str),
    "--privileged": ("privileged", FLAG, str),
    "--workdir": ("workdir", VALUE, str),
    "-w": ("workdir", VALUE, str),
    "--user": ("user", VALUE, str),
    "-u": ("user", VALUE, str),
    "--entrypoint": ("entrypoint", VALUE, str),
    "--detach": ("detach", FLAG, str),
    "-d": ("detach", FLAG, str),
    "--rm": ("rm", FLAG, str),
    "--restart": ("restart", VALUE, str),
    "--interactive": ("interactive", FLAG, str),
    "-i": ("interactive", FLAG, str),
    "--tty": ("tty", FLAG, str),
    "-t": ("tty", FLAG, str),
    "--attach": ("attach", MULTIPLE, str),
    "-a": ("attach", MULTIPLE, str),
    "--trace": ("trace", FLAG, str),
    "--trace-json": ("trace_json", VALUE, Path),
    "--step": ("step", FLAG, str),
    "--explain": ("explain", FLAG, str),
    "--image": ("image", VALUE, str),
    "--ref": ("ref", VALUE, str),
    "--platform": ("platform", VALUE, str),
    "--root": ("root", VALUE, str),
}
# what typer gives for an option not on the command line (--root: DOCKSCOPE_ROOT, below)
DEFAULTS: dict[str, Any] = {
    **{parameter: [] for parameter, kind, _ in OPTIONS.values() if kind == MULTIPLE},
    **{parameter: False for parameter, kind, _ in OPTIONS.values() if kind == FLAG},
    **{parameter: None for parameter, kind, _ in OPTIONS.values() if kind == VALUE},
    "pid": "private",
    "ipc": "private",
    "restart": "no",
}
ROOT_VARIABLE = "DOCKSCOPE_ROOT"


def parse_run(argv: list[str], environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """The arguments of ``run_container`` for ``dockscope run ARGV``, or None: typer's to
    parse. Options come before IMAGE (everything after it is the command, as typer's
    ``run`` takes it: interspersed options are off), ``--`` ends them."""
    values: dict[str, Any] = {k: list(v) if isinstance(v, list) else v for k, v in DEFAULTS.items()}
    position = 0
    while position < len(argv):
        token = argv[position]
        position += 1
        if token == "--":
            break
        if not token.startswith("-") or token == "-":
            position -= 1
            break
        taken = _option(token, argv, position, values)
        if taken is None:
            return None
        position = taken
    if position >= len(argv):
        return None  # no IMAGE: typer says so
    if values["root"] is None:
        values["root"] = environ.get(ROOT_VARIABLE) or None  # click skips an empty variable
    # IMAGE as typer's parser keeps it (imported here: a line left to typer does without it)
    from inspect_tool.sources.location import written_path

    return {"image_path": written_path(argv[position]), "command": argv[position + 1 :], **values}


def _option(token: str, argv: list[str], position: int, values: dict[str, Any]) -> int | None:
    """Apply the option ``token`` (its value from the next argument when it takes one);
    where the next argument is, or None when this is typer's to parse."""
    if token.startswith("--"):
        name, equals, attached = token.partition("=")
        spec = OPTIONS.get(name)
        if spec is None:
            return None
        parameter, kind, convert = spec
        if kind == FLAG:
            if equals:
                return None  # a flag takes no value: click refuses it
            values[parameter] = True
            return position
        if not equals:
            if position >= len(argv):
                return None
            attached, position = argv[position], position + 1
        return position if _set(values, parameter, kind, convert, attached) else None
    if len(token) > 2:  # short flags together (-it); a short option's attached value: typer's
        flags = [OPTIONS.get(f"-{letter}") for letter in token[1:]]
        if not all(spec is not None and spec[1] == FLAG for spec in flags):
            return None
        for spec in flags:
            assert spec is not None
            values[spec[0]] = True
        return position
    spec = OPTIONS.get(token)
    if spec is None:
        return None
    parameter, kind, convert = spec
    if kind == FLAG:
        values[parameter] = True
        return position
    if position >= len(argv):
        return None
    return position + 1 if _set(values, parameter, kind, convert, argv[position]) else None


def _set(
    values: dict[str, Any], parameter: str, kind: str, convert: Callable[[str], Any], text: str
) -> bool:
    """Store one option's value as typer would; False when typer would refuse it."""
    try:
        value = convert(text)
    except ValueError:
        return False
    if kind == MULTIPLE:
        values[parameter].append(value)
    else:
        values[parameter] = value  # given twice, the last one counts (click's rule)
    return True


def run(argv: list[str]) -> int | None:
    """``dockscope run ARGV`` without typer: its exit code, or None when typer is to parse
    the command line. Errors end it as they end every command (cli/_errors.py)."""
    arguments = parse_run(argv)
    if arguments is None:
        return None
    if not (arguments.get("detach") or arguments.get("explain")):
        from runtime_lab.kernel import warmup

        warmup.begin("the command line was read")  # the wait overlaps the imports
    from inspect_tool.cli import _state
    from inspect_tool.cli._errors import exit_code
    from inspect_tool.registry.access import RegistryAccess, use_access
    from runtime_lab.cli.run_container import run_container

    _state.command = "run"
    try:
        with use_access(RegistryAccess(None, None, None, None)):  # no access option given
            return run_container(**arguments)
    except BrokenPipeError:
        raise  # main() ends a closed pipe quietly
    except (Exception, KeyboardInterrupt) as exc:
        code = exit_code(exc)
        if code is None:
            raise
        return code
