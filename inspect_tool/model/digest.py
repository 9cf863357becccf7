"""Content digests: parsed and validated once, then plain values.

A digest string from an image (``sha256:<64 hex>``) is hostile until parsed here. After
parsing it is a :class:`Digest` whose ``hex`` is known to be lowercase hexadecimal of the
algorithm's length, so it is safe to use as a file name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Self

from inspect_tool.errors import InvalidDigestError

# Hex lengths of the algorithms the OCI image spec registers.
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_HEX_RE = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, order=True, slots=True)
class Digest:
    """A content digest, ``algorithm:hex``."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: object, *, what: str = "digest") -> Self:
        """Parse ``algorithm:hex``; raise InvalidDigestError for anything else."""
        if not isinstance(text, str):
            raise InvalidDigestError(f"{what} is not a string: {_excerpt(text)}")
        algorithm, sep, hexpart = text.partition(":")
        if not sep:
            raise InvalidDigestError(f"{what} has no algorithm prefix: {_excerpt(text)}")
        length = _HEX_LENGTHS.get(algorithm)
        if length is None:
            raise InvalidDigestError(f"{what} uses an unsupported algorithm: {_excerpt(text)}")
        if len(hexpart) != length or not _HEX_RE.fullmatch(hexpart):
            raise InvalidDigestError(
                f"{what} is not {length} lowercase hex digits of {algorithm}: {_excerpt(text)}"
            )
        return cls(algorithm, hexpart)

    @classmethod
    def from_hex(cls, hexpart: str, algorithm: str = "sha256") -> Self:
        return cls.parse(f"{algorithm}:{hexpart}")

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Self:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        """The 12 hex digits docker shows."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def chain_ids(diff_ids: list[Digest]) -> list[Digest]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    result: list[Digest] = []
    for diff_id in diff_ids:
        if not result:
            result.append(diff_id)
        else:
            result.append(Digest.of_bytes(f"{result[-1]} {diff_id}".encode()))
    return result


def _excerpt(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
