"""Text from an image or a container made safe for a terminal: the one sanitiser of every
human rendering (rich tables and lines, plain ``ls``-style text, the runtime's narration,
error lines).

Every string an image or a container carries is hostile: a file name, a tag, a label, a
``created_by``, a symlink target, an environment value, a container name or command can hold
an escape sequence that retitles the terminal (``ESC ] 0;title BEL``), clears it
(``ESC [2J``), writes an OSC 8 hyperlink, uses the 8-bit CSI (U+009B), or reorders what follows
with a bidi override (U+202E). ``visible`` writes each such character as an escape, the way
a Python string literal writes it (``repr``), so the output is one line and unambiguous:

====================================================  ===========================================
character                                             shown as
====================================================  ===========================================
backslash                                             ``\\\\``
tab, line feed, carriage return                       ``\\t``, ``\\n``, ``\\r``
other C0 controls, DEL, C1 controls (U+0080–U+009F)   ``\\xNN`` (ESC is ``\\x1b``, CSI ``\\x9b``)
format characters (Unicode category Cf: bidi          ``\\uNNNN`` (``\\u202e``, ``\\u2066``,
overrides, embeddings, isolates and marks, zero-      ``\\u200e``, ``\\u061c``, ``\\u200b``,
width space, BOM, …) but ZWNJ and ZWJ; line and       ``\\ufeff``, ``\\u2028``), above the BMP
paragraph separators                                  ``\\UNNNNNNNN``
bytes that are not UTF-8 (kept as lone surrogates)    ``\\udcNN`` (the byte is NN)
====================================================  ===========================================

Anything else, including every printable non-ASCII character, is shown as it is. JSON output
never goes through here: it stays exact. ``SafeConsole`` is the net below the call sites: a
rich console that escapes, in everything it writes, every character above but the line feed
(rich's own styling is added after, so it is kept).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from inspect_tool.model.words import agree as agree  # the render modules' import
from inspect_tool.model.words import plural as plural

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.segment import Segment
    from rich.text import Text

# Unicode 14 (Python 3.11) categories Cc, Cf, Cs, Zl and Zp, but U+200C and U+200D (the
# joiners that scripts and emoji need); tests/test_terminal.py checks the list against
# unicodedata.
_FORMAT_AND_MORE = (
    "\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b"
    "\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
_PATTERNS = {
    "unsafe": f"[\x00-\x1f{_FORMAT_AND_MORE}\\\\]",
    "unsafe_but_newline": f"[\x00-\x09\x0b-\x1f{_FORMAT_AND_MORE}]",
    "unsafe_in_json": f"[{_FORMAT_AND_MORE}]",  # JSON escapes C0 and \\ itself
    # blanks at the end of a line, before the styles closed there (rich pads table cells)
    "trailing_blanks": "[ \t]+(?=(?:\x1b\\[[0-9;]*m)*\n)",
}


@functools.cache
def _pattern(name: str) -> re.Pattern[str]:
    """Compiled on first use (~1 ms each): a container's run imports this module (PID 1
    cannot import after pivot_root) and usually escapes nothing. Compiling needs no import."""
    return re.compile(_PATTERNS[name])


_NAMED = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` as one safe, unambiguous line: controls, DEL, C1, format characters (bidi
    controls among them), separators, lone surrogates and the backslash itself escaped."""
    if text.isprintable() and "\\" not in text:  # the common case, without a regex (5x faster)
        return text
    return _pattern("unsafe").sub(_escape, text)


def visible_lines(text: str) -> str:
    """Multi-line text (a reconstructed Dockerfile): each line escaped on its own, the line
    feeds between them kept."""
    return "\n".join(visible(line) for line in text.split("\n"))


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON writes a character above the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_text(dumped: str) -> str:
    """JSON text from ``json.dumps(..., ensure_ascii=False)`` with the characters ``visible``
    escapes written as JSON escapes (``\\u009b``, ``\\u202e``, ``\\udcff``): they can only
    stand inside strings, which decode to the same values. C0 controls are escaped already."""
    if dumped.isascii():
        if "\x7f" not in dumped:
            return dumped
    elif dumped.isprintable():
        return dumped
    return _pattern("unsafe_in_json").sub(_json_escape, dumped)


def markup(text: str) -> str:
    """``text`` for a string rich reads as markup: escaped by ``visible``, then its ``[`` kept
    from opening a tag (``[bold]``, ``[link=…]``). Never put a tag right after it: rich halves
    the backslashes just before a tag, so a name ending in ``\\`` would lose one (use
    ``styled`` there)."""
    from rich.markup import escape

    return escape(visible(text))


def styled(text: str, style: str = "") -> Text:
    """``text`` escaped by ``visible`` as a rich ``Text`` (never read as markup)."""
    from rich.text import Text

    return Text(visible(text), style=style)


def _net(text: str) -> str:
    """What SafeConsole does to every piece of text: controls escaped, line feeds kept (they
    are rich's own line breaks by then), backslashes left alone (call sites escaped theirs)."""
    return _pattern("unsafe_but_newline").sub(_escape, text)


def _console_class() -> type[Console]:
    from rich.console import Console
    from rich.segment import Segment

    class SafeConsole(Console):
        """A rich console that never writes a control character it did not make itself:
        the text of every segment goes through the sanitiser (control segments, rich's own
        cursor movements, are left alone; styles are rendered after this). With
        ``trim_lines``, what it writes to a file or a pipe has no blanks at the ends of its
        lines (the padding of table cells)."""

        def __init__(self, *args: Any, trim_lines: bool = False, **options: Any) -> None:
            super().__init__(*args, **options)
            self.trim_lines = trim_lines

        def _render_buffer(self, buffer: Iterable[Segment]) -> str:
            text = super()._render_buffer(buffer)
            if self.trim_lines and not self.is_terminal:
                return _pattern("trailing_blanks").sub("", text)
            return text

        def render(
            self, renderable: RenderableType, options: ConsoleOptions | None = None
        ) -> Iterable[Segment]:
            for segment in super().render(renderable, options):
                text = segment.text
                if segment.control or text.isprintable() or text == "\n":
                    yield segment
                else:
                    yield Segment(_net(text), segment.style, segment.control)

    return SafeConsole


_SAFE_CONSOLE: type[Console] | None = None


def safe_console(**options: Any) -> Console:
    """A rich console (the options of ``rich.console.Console``, and ``trim_lines``: no blanks
    at the ends of lines written to a file or a pipe) whose output is sanitised."""
    global _SAFE_CONSOLE
    if _SAFE_CONSOLE is None:
        _SAFE_CONSOLE = _console_class()
    return _SAFE_CONSOLE(**options)
