"""linux.seccomp of config.json (the runtime spec's format) as the ``Resolved`` profile that
runtime_lab/kernel/seccomp.py compiles with libseccomp. The spec's format is docker's without
its conditions (includes, excludes, archMap): the engine already chose the rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime_lab.kernel.seccomp import Arg, Filter, Resolved, Rule, compile_filter


def resolve_spec(doc: Mapping[str, Any]) -> Resolved:
    rules = []
    for item in doc.get("syscalls") or []:
        args = tuple(
            Arg(
                index=int(a.get("index", 0)),
                value=int(a.get("value", 0)),
                value_two=int(a.get("valueTwo", 0)),
                op=str(a.get("op")),
            )
            for a in item.get("args") or []
        )
        rules.append(
            Rule(
                names=tuple(item.get("names") or ()),
                action=str(item["action"]),
                errno_ret=item.get("errnoRet"),
                args=args,
            )
        )
    return Resolved(
        default_action=str(doc["defaultAction"]),
        default_errno=doc.get("defaultErrnoRet"),
        architectures=tuple(doc.get("architectures") or ()),
        rules=tuple(rules),
    )


def compile_spec(doc: Mapping[str, Any], *, log: bool = False) -> Filter:
    return compile_filter(resolve_spec(doc), "linux.seccomp", log=log, measure=True)
