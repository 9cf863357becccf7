"""``inspect -f TEMPLATE`` and ``stats --format``: the part of Go's text/template that docker
users write, applied to a JSON document.

- ``{{.Field.Sub}}``: a field, looked up without regard to case or underscores, so docker's
  ``{{.State.Pid}}`` finds the document's ``state.pid`` and ``{{.State.ExitCode}}`` its
  ``exit_code``; ``{{.}}``: the whole value;
- ``{{json .Field}}``: the value as JSON; ``{{index .Field "key"}}`` (or a number, for a list);
  ``{{len .Field}}``; ``{{upper .F}}``, ``{{lower .F}}``; ``{{join .List ", "}}``;
- ``{{range .List}}…{{end}}`` with ``.`` the element inside;
- ``\\t`` and ``\\n`` in the template are a tab and a line break (as docker's CLI).

Values print as Go prints them: ``true``, ``map[k:v]``, ``[a b]``, ``<nil>``; a missing field
is ``<no value>``. Anything else is refused with a UsageError naming the action. Every value
taken from the document is escaped for the terminal (render/text.py) before it is written.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inspect_tool.errors import UsageError
from inspect_tool.render.text import json_text, visible

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
NO_VALUE = object()


def _key(name: str) -> str:
    return name.replace("_", "").lower()


def field(value: Any, path: str) -> Any:
    """``.A.B`` of ``value``: each name matched without regard to case or underscores."""
    for name in [p for p in path.split(".") if p]:
        if not isinstance(value, Mapping):
            return NO_VALUE
        if name in value:
            value = value[name]
            continue
        found = [k for k in value if _key(str(k)) == _key(name)]
        if not found:
            return NO_VALUE
        value = value[found[0]]
    return value


def go_text(value: Any) -> str:
    """A value as Go's fmt prints it in a template."""
    if value is NO_VALUE:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_text(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True, slots=True)
class Node:
    """One piece of a parsed template: literal text, an action ``{{…}}``, or a ``{{range}}``
    with the nodes of its body."""

    kind: str  # "text", "action" or "range"
    text: str = ""
    body: tuple[Node, ...] = ()


def _parse(source: str) -> tuple[Node, ...]:
    stack: list[tuple[str, list[Node]]] = [("", [])]
    position = 0
    for match in _ACTION.finditer(source):
        if match.start() > position:
            stack[-1][1].append(Node("text", source[position : match.start()]))
        position = match.end()
        body = match.group(1)
        if body.startswith("range "):
            stack.append((body[len("range ") :].strip(), []))
        elif body == "end":
            if len(stack) == 1:
                raise UsageError("template: {{end}} without {{range}}")
            expr, nodes = stack.pop()
            stack[-1][1].append(Node("range", expr, tuple(nodes)))
        else:
            stack[-1][1].append(Node("action", body))
    rest = source[position:]
    if "{{" in rest or "}}" in rest:
        raise UsageError(f"template: unclosed action in {source!r}")
    if rest:
        stack[-1][1].append(Node("text", rest))
    if len(stack) != 1:
        raise UsageError("template: {{range}} without {{end}}")
    return tuple(stack[0][1])


@dataclass(frozen=True, slots=True)
class GoTemplate:
    """A ``-f``/``--format`` template parsed once, to render against one JSON document after
    another."""

    nodes: tuple[Node, ...]

    @classmethod
    def parse(cls, text: str) -> GoTemplate:
        return cls(_parse(text.replace("\\t", "\t").replace("\\n", "\n")))

    def render(self, document: Any) -> str:
        return "".join(_render(self.nodes, document))


def _render(nodes: Sequence[Node], dot: Any) -> list[str]:
    out: list[str] = []
    for node in nodes:
        if node.kind == "text":
            out.append(node.text)
        elif node.kind == "range":
            items = _evaluate(node.text, dot)
            if isinstance(items, Mapping):
                items = list(items.values())
            if items is NO_VALUE or items is None:
                continue
            if not isinstance(items, (list, tuple)):
                raise UsageError(f"template: range over {go_text(items)!r}: not a list")
            for item in items:
                out += _render(node.body, item)
        else:
            value = _evaluate(node.text, dot)
            out.append(value if isinstance(value, _Raw) else visible(go_text(value)))
    return out


class _Raw(str):
    """Text already made safe (JSON, escaped)."""


def _argument(token: str, dot: Any) -> Any:
    if token.startswith("."):
        return field(dot, token) if token != "." else dot
    if token.startswith('"') or token.isdigit():
        return json.loads(token) if token.startswith('"') else int(token)
    raise UsageError(f'template: {token!r}: give .Field, a "string" or a number')


def _evaluate(body: str, dot: Any) -> Any:
    try:
        words = shlex.split(body, posix=False)
    except ValueError as exc:
        raise UsageError(f"template: {{{{{body}}}}}: {exc}") from None
    if not words:
        raise UsageError("template: empty action {{}}")
    name, args = words[0], [_argument(w, dot) for w in words[1:]]
    if name.startswith(".") and not args:
        return _argument(name, dot)
    if name == "json" and len(args) == 1:
        value = None if args[0] is NO_VALUE else args[0]
        # Go's encoding/json: compact, as docker inspect -f '{{json .X}}' prints it
        return _Raw(json_text(json.dumps(value, ensure_ascii=False, separators=(",", ":"))))
    if name == "index" and len(args) >= 2:
        value = args[0]
        for key in args[1:]:
            if isinstance(value, Mapping):
                value = value.get(key, NO_VALUE)
            elif isinstance(value, (list, tuple)) and isinstance(key, int):
                value = value[key] if -len(value) <= key < len(value) else NO_VALUE
            else:
                value = NO_VALUE
        return value
    if name == "len" and len(args) == 1:
        return len(args[0]) if isinstance(args[0], (Mapping, list, tuple, str)) else 0
    if name in ("upper", "lower") and len(args) == 1:
        text = go_text(args[0])
        return text.upper() if name == "upper" else text.lower()
    if name == "join" and len(args) == 2 and isinstance(args[0], (list, tuple)):
        return str(args[1]).join(go_text(v) for v in args[0])
    raise UsageError(
        f"template: {{{{{body}}}}}: dockscope's templates take .Field, json, index, len, "
        "upper, lower, join and range … end"
    )
