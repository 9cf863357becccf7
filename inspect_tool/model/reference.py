"""Image references as written into an OCI layout's ``index.json``: ``NAME[:TAG]``.

One parser for the two uses: ``Reference.split`` cuts a name as recorded (an engine's tag, a
reference already written) at its tag, ``Reference.parse`` does the same and then holds the
result to docker's reference grammar (what a user gives to ``--tag``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from inspect_tool.errors import UsageError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DEFAULT_TAG = "latest"


@dataclass(frozen=True, slots=True)
class Reference:
    """An image name with its tag (``example.org/app:v1``), as ``index.json`` records it."""

    name: str  # "example.org/app"
    tag: str  # "v1"

    @classmethod
    def split(cls, text: str) -> Reference:
        """``NAME[:TAG]`` cut at the tag's colon (one after the last '/'), unchecked; the tag
        defaults to ``latest``."""
        slash = text.rfind("/")
        colon = text.rfind(":")
        if colon > slash:
            return cls(text[:colon], text[colon + 1 :])
        return cls(text, DEFAULT_TAG)

    @classmethod
    def parse(cls, text: str) -> Reference:
        """``NAME[:TAG]`` (the tag defaults to ``latest``); digests are not accepted."""
        reference = cls.split(text)
        if "@" in text or not _valid_name(reference.name) or not _TAG_RE.fullmatch(reference.tag):
            raise UsageError(
                f"--tag {text!r}: expected NAME[:TAG], e.g. example.org/app:1 (a lowercase "
                "name, a tag of letters, digits, '_', '.' and '-')"
            )
        return reference

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"


def _valid_name(name: str) -> bool:
    """docker's reference grammar: an optional domain (the first component, when it has a
    '.' or a port or is localhost), then lowercase path components."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return bool(_DOMAIN_RE.fullmatch(first) and _PATH_RE.fullmatch(rest))
    return bool(_PATH_RE.fullmatch(name))
