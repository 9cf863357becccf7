"""``dockscope ps`` as text: docker's columns (short IDs, a command cut at 20 characters with
…), laid out as docker's tabwriter lays them out, and ``--format`` with a subset of docker's
Go templates (``{{.ID}}``, ``{{.Names}}``, ``{{json .}}``, the ``table`` prefix).

Every value from a container (its name, image, command, labels) is escaped for the terminal
(inspect_tool/render/text.py) before it is placed; the template's own text is the user's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rich.cells import cell_len

from inspect_tool.errors import UsageError
from inspect_tool.render.text import json_text, visible

COMMAND_WIDTH = 20  # docker's ps cuts the command here (formatter.Ellipsis)

# the fields a template may name, and the column header docker gives each
HEADERS: dict[str, str] = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Size": "SIZE",
    "Names": "NAMES",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
    "RestartCount": "RESTARTS",
}

DEFAULT_TABLE = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
    "{{.RestartCount}}\t{{.Names}}"
)
_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)


def ellipsis(text: str, width: int) -> str:
    """docker's formatter.Ellipsis: at most ``width`` characters, the last one … if cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def command_cell(argv: Sequence[str], *, trunc: bool = True) -> str:
    """The COMMAND column: the argv joined, cut at 20, quoted (Go's strconv.Quote), safe."""
    command = " ".join(argv)
    if trunc:
        command = ellipsis(command, COMMAND_WIDTH)
    return json_text(json.dumps(command, ensure_ascii=False))


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed ``--format``: literal text and fields, or ``{{json .}}``; ``table`` adds the
    header row and lines the columns up."""

    table: bool
    parts: tuple[tuple[str, str], ...]  # ("text", s) | ("field", name) | ("json", name|"")
    headers: Mapping[str, str] = field(default_factory=lambda: HEADERS)

    @classmethod
    def parse(
        cls, text: str, *, fields: Mapping[str, str] = HEADERS, default: str = DEFAULT_TABLE
    ) -> Template:
        """``fields``: the names a template may use, each with its column header (docker
        ps's by default; stats passes its own, with its ``default`` table)."""
        table = text.startswith("table")
        if table:
            text = text[len("table") :]
        if text.strip() == "json":  # docker's shorthand for {{json .}}
            text = "{{json .}}"
        text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
        if table and not text:
            return cls.parse(default, fields=fields, default=default)
        parts: list[tuple[str, str]] = []
        position = 0
        for match in _ACTION.finditer(text):
            if match.start() > position:
                parts.append(("text", text[position : match.start()]))
            parts.append(_action(match.group(1), match.group(0), fields))
            position = match.end()
        rest = text[position:]
        if "{{" in rest or "}}" in rest:
            raise UsageError(f"--format: unclosed action in {text!r}")
        if rest:
            parts.append(("text", rest))
        return cls(table, tuple(parts), fields)

    def render(self, rows: Sequence[Mapping[str, str]]) -> str:
        lines = [self._line(row) for row in rows]
        if not self.table:
            return "".join(line + "\n" for line in lines)
        header = "".join(
            self.headers.get(value, value.upper())
            if kind == "field"
            else _header_text(kind, value, self.headers)
            for kind, value in self.parts
        )
        return tabwriter([header, *lines])

    def _line(self, row: Mapping[str, str]) -> str:
        out = []
        for kind, value in self.parts:
            if kind == "text":
                out.append(value)
            elif kind == "field":
                out.append(row[value])
            elif value:
                out.append(json_text(json.dumps(row[value], ensure_ascii=False)))
            else:
                out.append(json_text(json.dumps(dict(row), ensure_ascii=False)))
        return "".join(out)


def _header_text(kind: str, value: str, headers: Mapping[str, str] = HEADERS) -> str:
    if kind == "text":
        return value
    return "" if not value else headers.get(value, value.upper())


def _action(body: str, whole: str, fields: Mapping[str, str] = HEADERS) -> tuple[str, str]:
    if body.startswith("."):
        name = body[1:]
        if name not in fields:
            raise UsageError(
                f"--format: {whole}: no field {name!r} (fields: "
                + ", ".join("." + key for key in fields)
                + ")"
            )
        return "field", name
    words = body.split()
    if len(words) == 2 and words[0] == "json" and words[1].startswith("."):
        name = words[1][1:]
        if name and name not in fields:
            raise UsageError(f"--format: {whole}: no field {name!r}")
        return "json", name
    raise UsageError(
        f"--format: {whole}: dockscope's templates take {{{{.Field}}}}, {{{{json .}}}} and "
        "{{json .Field}}"
    )


def tabwriter(lines: Sequence[str], *, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter as docker's tables use it (NewWriter(out, 10, 1, 3, ' ', 0)):
    each tab-terminated cell is padded to its column's widest cell plus 3, at least 10; the
    last cell of a line is not padded. Widths are terminal cells."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for cells in rows:
        for index, cell in enumerate(cells[:-1]):
            widths[index] = max(widths.get(index, 0), cell_len(cell))
    out = []
    for cells in rows:
        padded = [
            cell + " " * (max(widths[i] + padding, minwidth) - cell_len(cell))
            for i, cell in enumerate(cells[:-1])
        ]
        out.append("".join(padded) + cells[-1])
    return "".join(line + "\n" for line in out)


def safe(text: str) -> str:
    """A container's value in a cell: escaped, so that it holds no tab or line break."""
    return visible(text)
