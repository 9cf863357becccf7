"""An image's history aligned with its layers, and a Dockerfile reconstructed from it.

``created_by`` is free text that each builder writes its own way:

- Docker's classic builder: ``/bin/sh -c #(nop)  CMD ["a" "b"]`` for metadata steps (two
  spaces, Go's ``%q`` of a list), ``/bin/sh -c #(nop) COPY file:<sha256> in /dst `` for
  ADD/COPY, ``/bin/sh -c <command>`` for RUN, ``|2 A=1 B=2 /bin/sh -c <command>`` when build
  arguments were in effect;
- BuildKit: ``RUN /bin/sh -c <command> # buildkit`` (``RUN |1 A=1 /bin/sh -c …``),
  ``COPY src /dst # buildkit``, and metadata steps as the instruction with Go formatting of
  its value: ``EXPOSE map[8080/tcp:{}]``, ``VOLUME [/data]``, ``CMD ["a" "b"]``,
  ``HEALTHCHECK &{["CMD-SHELL" "…"] "30s" "5s" "0s" "0s" '\\x03'}``; comment
  ``buildkit.dockerfile.v0``;
- buildah: ``/bin/sh -c #(nop) <the Dockerfile line as written>`` (one space), RUN as
  ``/bin/sh -c <command>`` (exec form: ``/bin/sh -c ["a", "b"]``), ADD/COPY as the classic
  builder; with ``--layers`` every step carries the comment ``FROM <parent>`` (the base image,
  then image IDs), without it the build is squashed into its last entry, the only one with
  ``FROM <base image>``; ``buildah commit`` of a working container records ``/bin/sh`` alone;
- kaniko: the Dockerfile line as written (``RUN apt-get update``), author ``kaniko``.

Sources of ADD/COPY that the classic builder and buildah record only as ``file:<sha256>``,
``dir:<sha256>`` or ``multi:<sha256>`` (a hash of the content, not a name) are kept as such.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime

from inspect_tool.model.image import HistoryEntry, Image
from inspect_tool.model.words import agree, plural

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
BUILDKIT_COMMENT = "buildkit.dockerfile.v0"

KEYWORDS = frozenset(
    {
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)
DEFAULT_SHELL = ("/bin/sh", "-c")

_NOP = re.compile(r"^(?P<shell>/\S*(?: \S+)*?) #\(nop\) (?P<rest>.*)$", re.DOTALL)
_ARGS = re.compile(r"^\|(?P<n>\d+) ")
_HASHED_SOURCE = re.compile(
    r"^(?P<flags>(?:--\S+ )*)(?P<src>(?:file|dir|multi):[0-9a-f]{64}|.+?) in (?P<dst>.+)$",
    re.DOTALL,
)
_GO_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
# ``buildah commit`` of a working container (after ``buildah run``, ``copy``, …) records the
# container's shell alone: no instruction, and the commands run are not recorded.
_BARE_SHELL = re.compile(r"/(?:usr/)?bin/(?:ba|da|a)?sh")
BUILDAH_COMMIT_NOTE = "buildah commit: the commands run in the container are not recorded"
_LABEL_SPLIT = re.compile(r" (?=[\w.\-/]+=)")


@dataclass(frozen=True, slots=True)
class Step:
    """One history entry as a Dockerfile instruction."""

    keyword: str  # RUN, COPY, …; "" when the entry is not a Dockerfile instruction
    line: str  # the instruction as a Dockerfile line ("" when keyword is "")
    builder: str  # docker, buildkit, buildah, kaniko, docker/buildah, unknown
    notes: tuple[str, ...] = ()  # comments to write above the line


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One history entry (or a layer that has none) with the layer it made, the instruction it
    parses to and whether it is guessed to come from the base image."""

    index: int | None  # position in the config's history; None for a layer without an entry
    layer: int | None  # the layer this entry made; None for an empty entry
    entry: HistoryEntry | None
    step: Step
    base: bool  # guessed to come from the base image
    size: int | None  # the layer's blob size


@dataclass(frozen=True, slots=True)
class HistoryReport:
    """An image's history aligned with its layers: a row per entry, where the base image ends
    (recorded or guessed), and the Dockerfile reconstructed from it."""

    rows: tuple[HistoryRow, ...]
    base_name: str | None  # FROM, when the image records it
    base_source: str  # where base_name or the base boundary comes from
    base_entries: int  # history entries guessed to come from the base image
    base_layers: int
    base_lower: int = 0  # entries that come from the base image for certain
    base_certain: bool = False  # the history records the boundary (buildah's FROM comment)
    warnings: tuple[str, ...] = ()
    dockerfile: str = field(default="", repr=False)


# -- Go formatting -------------------------------------------------------------------------------
_GO_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


def go_unquote(literal: str) -> str:
    """A Go double-quoted string literal (as ``%q`` writes it) to its value."""
    body = literal[1:-1]
    out: list[str] = []
    raw = bytearray()
    i = 0

    def flush() -> None:
        if raw:
            out.append(raw.decode("utf-8", "replace"))
            raw.clear()

    while i < len(body):
        char = body[i]
        if char != "\\":
            flush()
            out.append(char)
            i += 1
            continue
        code = body[i + 1] if i + 1 < len(body) else ""
        if code == "x":
            raw.append(int(body[i + 2 : i + 4], 16))
            i += 4
            continue
        if code in "01234567" and code:
            raw.append(int(body[i + 1 : i + 4], 8))
            i += 4
            continue
        flush()
        if code in ("u", "U"):
            width = 4 if code == "u" else 8
            out.append(chr(int(body[i + 2 : i + 2 + width], 16)))
            i += 2 + width
            continue
        out.append(_GO_ESCAPES.get(code, code))
        i += 2
    flush()
    return "".join(out)


def go_string_list(text: str) -> list[str] | None:
    """``["a" "b"]`` (Go's ``%q`` of a list) or a JSON array; None when it is neither."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    inner = text[1:-1].strip()
    items = _GO_QUOTED.findall(inner)
    if _GO_QUOTED.sub("", inner).strip():
        return None
    return [go_unquote(item) for item in items]


def _json_list(items: list[str]) -> str:
    return json.dumps(items, ensure_ascii=False)


def _exec_or_shell(keyword: str, value: str, shell: tuple[str, ...]) -> str:
    items = go_string_list(value)
    if items is None:
        return f"{keyword} {value}".rstrip()
    if len(items) == len(shell) + 1 and tuple(items[: len(shell)]) == shell:
        return f"{keyword} {items[-1]}"  # shell form, as the builder wrapped it
    return f"{keyword} {_json_list(items)}"


def _expose(value: str) -> str:
    value = value.strip()
    if value.startswith("map[") and value.endswith("]"):
        ports = [p.rsplit(":", 1)[0] for p in value[4:-1].split()]
        return "EXPOSE " + " ".join(ports)
    return f"EXPOSE {value}"


def _bracket_words(value: str) -> list[str] | None:
    value = value.strip()
    if value.startswith("[") and value.endswith("]") and '"' not in value:
        return value[1:-1].split()
    return go_string_list(value)


def _healthcheck(value: str) -> str:
    value = value.strip()
    if not value.startswith("&{"):
        return f"HEALTHCHECK {value}"
    body = value[2:-1] if value.endswith("}") else value[2:]
    end = body.find("]")
    test = go_string_list(body[: end + 1]) if body.startswith("[") and end > 0 else None
    if not test:
        return f"HEALTHCHECK {value}"
    rest = body[end + 1 :].split()
    durations = [go_unquote(r) for r in rest if r.startswith('"')]
    retries = 0
    rune = [r for r in rest if r.startswith("'")]
    if rune:
        literal = rune[-1][1:-1]
        retries = ord(go_unquote('"' + literal + '"')) if literal else 0
    if test[0] == "NONE":
        return "HEALTHCHECK NONE"
    options = []
    names = ("--interval", "--timeout", "--start-period", "--start-interval")
    for name, duration in zip(names, durations, strict=False):
        if duration not in ("0s", "0"):
            options.append(f"{name}={duration}")
    if retries:
        options.append(f"--retries={retries}")
    if test[0] == "CMD-SHELL" and len(test) == 2:
        command = f"CMD {test[1]}"
    elif test[0] == "CMD":
        command = f"CMD {_json_list(test[1:])}"
    else:
        command = f"CMD {_json_list(test)}"
    return " ".join(["HEALTHCHECK", *options, command])


def _label(value: str) -> str:
    parts = _LABEL_SPLIT.split(value.strip())
    out = []
    for part in parts:
        key, sep, val = part.partition("=")
        if not sep:
            return f"LABEL {value.strip()}"
        if (val.startswith('"') and val.endswith('"') and len(val) > 1) or re.fullmatch(
            r"[\w.\-/:@+,]*", val
        ):
            out.append(f"{key}={val}")
        else:
            out.append(f"{key}={json.dumps(val, ensure_ascii=False)}")
    return "LABEL " + " ".join(out)


# -- parsing created_by --------------------------------------------------------------------------
def _split_build_args(text: str) -> tuple[list[str], str]:
    """``|2 A=1 B=2 rest`` → (["A=1", "B=2"], "rest")."""
    match = _ARGS.match(text)
    if not match:
        return [], text
    count = int(match.group("n"))
    parts = text[match.end() :].split(" ", count)
    if len(parts) <= count:
        return [], text
    return parts[:count], parts[count]


def _strip_shell(text: str, shell: tuple[str, ...]) -> tuple[str, bool]:
    prefix = " ".join(shell) + " "
    if text.startswith(prefix):
        return text[len(prefix) :], True
    for known in (DEFAULT_SHELL, ("/bin/bash", "-c"), ("/bin/bash", "-o", "pipefail", "-c")):
        prefix = " ".join(known) + " "
        if text.startswith(prefix):
            return text[len(prefix) :], True
    return text, False


def _run(text: str, shell: tuple[str, ...], builder: str) -> Step:
    args, rest = _split_build_args(text.strip())
    notes = [f"build arguments in effect: {' '.join(args)}"] if args else []
    command, had_shell = _strip_shell(rest, shell)
    items = go_string_list(command) if command.startswith("[") else None
    if items is not None:
        return Step("RUN", f"RUN {_json_list(items)}", builder, tuple(notes))
    if not had_shell:
        notes.append("recorded without a shell: exec form, argument boundaries not recorded")
    return Step("RUN", f"RUN {command}", builder, tuple(notes))


def _instruction(text: str, shell: tuple[str, ...], builder: str) -> Step:
    """A Dockerfile line as a builder recorded it, Go formatting undone."""
    keyword, _, value = text.partition(" ")
    keyword = keyword.upper()
    value = value.strip() if keyword != "RUN" else value
    notes: tuple[str, ...] = ()
    if keyword == "RUN":
        return _run(value, shell, builder)
    if keyword in ("ADD", "COPY"):
        match = _HASHED_SOURCE.match(value)
        if match and " in " in value:
            src = match.group("src")
            line = f"{keyword} {match.group('flags')}{src} {match.group('dst').strip()}"
            if re.match(r"(file|dir|multi):", src):
                notes = (f"{src.split(':')[0]}:<sha256> is a hash of the content, not its name",)
            return Step(keyword, line, builder, notes)
        return Step(keyword, f"{keyword} {value}", builder)
    if keyword in ("CMD", "ENTRYPOINT"):
        return Step(keyword, _exec_or_shell(keyword, value, shell), builder)
    if keyword == "EXPOSE":
        return Step(keyword, _expose(value), builder)
    if keyword in ("VOLUME", "SHELL"):
        words = _bracket_words(value)
        line = f"{keyword} {_json_list(words)}" if words is not None else f"{keyword} {value}"
        return Step(keyword, line, builder)
    if keyword == "HEALTHCHECK":
        return Step(keyword, _healthcheck(value), builder)
    if keyword == "LABEL":
        return Step(keyword, _label(value), builder)
    return Step(keyword, f"{keyword} {value}".rstrip(), builder)


def parse_created_by(
    created_by: str | None,
    *,
    comment: str | None = None,
    author: str | None = None,
    shell: tuple[str, ...] = DEFAULT_SHELL,
) -> Step:
    """The Dockerfile instruction behind one history entry."""
    text = (created_by or "").strip()
    if not text:
        return Step("", "", "unknown", ("no created_by recorded",))
    buildkit = text.endswith("# buildkit") or comment == BUILDKIT_COMMENT
    if text.endswith(" # buildkit"):
        text = text[: -len(" # buildkit")].rstrip()
    nop = _NOP.match(text)
    if nop:
        rest = nop.group("rest")
        builder = "docker" if rest.startswith(" ") else "buildah"
        if rest.lstrip().split(" ", 1)[0] in ("ADD", "COPY"):
            builder = "docker/buildah"
        if comment and comment.startswith("FROM "):
            builder = "buildah"
        return _instruction(rest.strip(), tuple(nop.group("shell").split()), builder)
    first = text.split(" ", 1)[0]
    if first in KEYWORDS:
        kaniko = (author or "").lower() == "kaniko"
        builder = "buildkit" if buildkit else ("kaniko" if kaniko else "unknown")
        return _instruction(text, shell, builder)
    if _BARE_SHELL.fullmatch(text):
        return Step("", "", "buildah", (BUILDAH_COMMIT_NOTE,))
    if text.startswith("|") or text.startswith("/"):
        builder = "buildah" if comment and comment.startswith("FROM ") else "docker/buildah"
        return _run(text, shell, builder)
    return Step("", "", "unknown", (f"not a Dockerfile instruction: {text}",))


# -- the base image ------------------------------------------------------------------------------
def _base_name(image: Image) -> tuple[str | None, str]:
    annotations = image.manifest.data.get("annotations") if image.manifest else None
    labels = image.config.config.get("Labels")
    for where, mapping in (("manifest annotation", annotations), ("config label", labels)):
        if isinstance(mapping, dict) and isinstance(mapping.get(BASE_NAME), str):
            name = mapping[BASE_NAME]
            digest = mapping.get(BASE_DIGEST)
            if isinstance(digest, str) and digest and "@" not in name:
                name = f"{name}@{digest}"
            return name, f"{where} {BASE_NAME}"
    return None, ""


def _is_cmd(entry: HistoryEntry) -> bool:
    step = parse_created_by(entry.created_by, comment=entry.comment, author=entry.author)
    return step.keyword in ("CMD", "ENTRYPOINT")


# A pause this long between two consecutive history entries is taken as the start of another
# build: one build's steps follow each other within seconds or minutes (BuildKit stamps each
# layer with the time its snapshot was made, empty entries with a neighbour's time).
SESSION_GAP_SECONDS = 30 * 60
_RFC3339 = re.compile(
    r"^(?P<main>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))?"
    r"(?P<zone>Z|[+-]\d\d:\d\d)$"
)


def _timestamp(created: str | None) -> float | None:
    """An RFC 3339 time (nanoseconds allowed) as seconds since the epoch; None if unusable."""
    match = _RFC3339.match((created or "").strip())
    if not match:
        return None
    frac = (match.group("frac") or "0")[:6]
    zone = match.group("zone").replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(f"{match.group('main')}.{frac:0<6}{zone}").timestamp()
    except ValueError:
        return None


def _pauses(history: tuple[HistoryEntry, ...]) -> dict[int, float]:
    """Entry index → seconds since the entry before it, for pauses of SESSION_GAP_SECONDS or
    more: where a later build began."""
    times = [_timestamp(entry.created) for entry in history]
    pauses = {}
    for i in range(1, len(history)):
        before, after = times[i - 1], times[i]
        if before is not None and after is not None and after - before >= SESSION_GAP_SECONDS:
            pauses[i] = after - before
    return pauses


def _session_start(
    history: tuple[HistoryEntry, ...], lower: int, *, later: bool
) -> tuple[int, str]:
    """Where this image's build starts by the timestamps, from ``lower`` on, and why.

    With ``later`` (``lower`` is only where BuildKit's steps begin, and a base built with
    BuildKit carries the same comment) the first pause after ``lower`` starts the guess: the
    first build after the base's own; pauses after it can be this image's cached steps."""
    pauses = _pauses(history)
    if later:
        for i in sorted(pauses):
            if i > lower:
                return i, (
                    f"entry {i} was created {_duration(pauses[i])} after entry {i - 1}: "
                    "a later build"
                )
    if lower in pauses:
        return lower, (
            f"timestamps agree: entry {lower} was created {_duration(pauses[lower])} after "
            f"entry {lower - 1}"
        )
    return lower, ""


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 60:.0f} minutes"


@dataclass(frozen=True, slots=True)
class BaseGuess:
    """Where the base image's history ends.

    ``lower`` entries are the base's for certain (recorded, or before the first entry that this
    build's builder could have written); ``entries`` is the best guess, at least ``lower``;
    ``certain`` says whether the history records the boundary (buildah's ``FROM`` comment) or
    only suggests it. Entries from ``lower`` on may belong to either image unless certain."""

    entries: int
    lower: int
    name: str | None
    source: str
    certain: bool


def _buildah_from(history: tuple[HistoryEntry, ...]) -> tuple[int, str] | None:
    """(first entry of the buildah build, the base named by its comment) or None.

    With ``--layers`` every step of a build carries ``FROM <parent>`` (the base, then image
    IDs), the first one naming the base. Without it buildah squashes the build into one layer:
    its steps are empty entries and only the last, the one that made the layer, carries
    ``FROM <base>``; the build's steps are that entry and the empty ones right before it."""
    for i, entry in enumerate(history):
        comment = entry.comment or ""
        if not comment.startswith("FROM "):
            continue
        base = comment[5:].strip()
        if re.fullmatch(r"[0-9a-f]{12,64}", base):
            base = ""
        start = i
        following = history[i + 1].comment or "" if i + 1 < len(history) else ""
        layered = re.fullmatch(r"FROM [0-9a-f]{12,64}", following) is not None
        if not entry.empty_layer and not layered:
            while (
                start > 0
                and history[start - 1].empty_layer
                and not history[start - 1].comment
                and not _is_base_nop(history[start - 1])
            ):
                start -= 1
        return start, base
    return None


def _is_base_nop(entry: HistoryEntry) -> bool:
    """An entry a buildah build cannot have written: Docker's classic ``#(nop)  `` form (two
    spaces) or BuildKit's."""
    text = entry.created_by or ""
    return "#(nop)  " in text or text.endswith("# buildkit")


def guess_base(image: Image) -> BaseGuess:
    """Where the base image's history ends, with the evidence.

    In order: buildah's ``FROM <name>`` comment (on the first step of a ``--layers`` build, on
    the last of a squashed one: the recorded boundary); else a lower bound, the first BuildKit
    step (comment ``buildkit.dockerfile.v0``) after entries without it, or else the last
    CMD/ENTRYPOINT that a layer-making entry follows (base images end with one); after
    BuildKit's first step, the first later build that the timestamps show (a pause of 30
    minutes or more) is the best guess. Only the
    buildah comment is certain: a base built with BuildKit carries the same comment as this
    image's steps, and a base need not end with CMD."""
    history = image.history
    name, where = _base_name(image)
    found = _buildah_from(history)
    if found is not None:
        start, base = found
        return BaseGuess(
            start, start, name or base or None, where or "buildah's FROM comment", True
        )
    lower, how, buildkit = 0, "", False
    marked = [i for i, e in enumerate(history) if e.comment == BUILDKIT_COMMENT]
    if marked and marked[0] > 0:
        lower, how, buildkit = marked[0], "entries before BuildKit's first step", True
    else:
        for i, entry in enumerate(history):
            later = history[i + 1 :]
            if entry.empty_layer and _is_cmd(entry) and any(not e.empty_layer for e in later):
                lower, how = i + 1, "the base image's last CMD/ENTRYPOINT"
    start, why = _session_start(history, lower, later=buildkit)
    if not how and not why:
        return BaseGuess(0, 0, name, where or "no sign of a base image in the history", False)
    source = "; ".join(part for part in (how, why) if part)
    if where:
        source = f"{where}; boundary: {source}"
    return BaseGuess(start, lower, name, source, False)


def guess_base_layers(image: Image) -> int:
    """How many bottom layers come from the base image (a guess; see ``guess_base``), at
    least 1: without any sign, layer 0 is the base, as dive counts it."""
    if not image.layers:
        return 0
    entries = guess_base(image).entries
    layers = sum(1 for e in image.history[:entries] if not e.empty_layer)
    return min(max(layers, 1), len(image.layers))


# -- the report ----------------------------------------------------------------------------------
def history(image: Image) -> HistoryReport:
    """Every history entry with the layer it made, parsed; layers beyond the history too."""
    guess = guess_base(image)
    base_entries, base_name, base_source = guess.entries, guess.name, guess.source
    by_history = {
        layer.history_index: layer for layer in image.layers if layer.history_index is not None
    }
    rows: list[HistoryRow] = []
    shell: tuple[str, ...] = DEFAULT_SHELL
    for i, entry in enumerate(image.history):
        step = parse_created_by(
            entry.created_by, comment=entry.comment, author=entry.author, shell=shell
        )
        if step.keyword == "SHELL":
            words = go_string_list(step.line[len("SHELL ") :])
            if words:
                shell = tuple(words)
        layer = by_history.get(i)
        rows.append(
            HistoryRow(
                i,
                layer.index if layer else None,
                entry,
                step,
                i < base_entries,
                layer.size if layer else None,
            )
        )
    warnings = []
    shown = {row.layer for row in rows if row.layer is not None}
    for layer in image.layers:
        if layer.index not in shown:
            rows.append(
                HistoryRow(
                    None,
                    layer.index,
                    None,
                    Step("", "", "unknown", ("a layer without a history entry",)),
                    False,
                    layer.size,
                )
            )
    missing = len(image.layers) - len(shown)
    if missing:
        warnings.append(
            f"{plural(missing, 'layer')} {agree(missing, 'has', 'have')} no history entry"
        )
    made = sum(1 for e in image.history if not e.empty_layer)
    if made > len(image.layers):
        warnings.append(
            f"the history lists {made} layer-making entries for {len(image.layers)} layers"
        )
    layers = guess_base_layers(image)
    report = HistoryReport(
        tuple(rows),
        base_name,
        base_source,
        base_entries,
        layers,
        guess.lower,
        guess.certain,
        tuple(warnings),
    )
    return replace(report, dockerfile=dockerfile(report))


def _span(first: int, last: int) -> str:
    return f"entry {first}" if first == last else f"entries {first}-{last}"


def dockerfile(report: HistoryReport) -> str:
    """The Dockerfile the history implies: FROM as honest as the image allows, then one
    instruction per entry; entries that are no instruction become comments.

    Entries are never silently dropped or repeated on a guess: with a recorded base name, only
    the entries certain to be the base's are left out; those guessed to be the base's are
    written commented out, and when the boundary is a guess the steps after it say so."""
    lines = ["# Reconstructed by dockscope from the image's history: a guide, not the source."]
    rows = list(report.rows)
    lower = min(report.base_lower, report.base_entries)
    certain = [r for r in rows if r.index is not None and r.index < lower]
    guessed = [r for r in rows if r.base and (r.index is None or r.index >= lower)]
    own = [r for r in rows if not r.base]
    if report.base_name:
        lines.append(f"# Base image recorded by the image ({report.base_source}).")
        lines.append(f"FROM {report.base_name}")
        if certain:
            kind = "recorded boundary" if report.base_certain else "certain"
            lines.append(
                f"# (history {_span(0, len(certain) - 1)} belong to the base image ({kind}) "
                "and are not repeated here)"
            )
        if guessed:
            lines.append("")
            span = _span(guessed[0].index or 0, guessed[-1].index or 0)
            verb = "are" if len(guessed) > 1 else "is"
            lines.append(
                f"# History {span} {verb} probably the base image's own build (a guess); "
                "uncomment any that are this image's:"
            )
            for row in guessed:
                lines.extend(f"# {line}" for line in _row_lines(row))
        if own and not report.base_certain:
            lines.append("")
            lines.append(
                "# --- this image's own steps as far as the history tells: the boundary is a "
                "guess; delete any step the base image already contains ---"
            )
        lines.extend(line for row in own for line in _row_lines(row))
        return "\n".join(lines) + "\n"
    lines.append("# The image does not record its base image, so this starts from scratch.")
    base_rows = [r for r in rows if r.base]
    if base_rows and own:
        how = "recorded" if report.base_certain else "Guess"
        lines.append(
            f"# {how} ({report.base_source}): {_span(0, len(base_rows) - 1)} "
            f"({plural(report.base_layers, 'layer')}) are the base image's own build; replace them "
            "with its FROM line if you know it."
        )
    lines.append("FROM scratch")
    in_base = bool(rows and rows[0].base)
    for row in rows:
        if in_base and not row.base:
            lines.append("")
            boundary = "recorded boundary" if report.base_certain else "guessed boundary"
            lines.append(f"# --- this image's own steps ({boundary}) ---")
            in_base = False
        lines.extend(_row_lines(row))
    return "\n".join(lines) + "\n"


def _row_lines(row: HistoryRow) -> list[str]:
    step = row.step
    lines = [f"# {note}" for note in step.notes]
    where = f"layer {row.layer}" if row.layer is not None else "no layer"
    if step.line:
        lines.append(step.line)
    elif row.entry is not None:
        lines.append(f"# history entry {row.index} ({where})")
    else:
        lines.append(f"# {where}")
    return lines
