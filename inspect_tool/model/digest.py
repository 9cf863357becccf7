"""Content digests: parsed and validated once, then plain values.

A digest string from an image (``sha256:<64 hex>``) is hostile until parsed here. After
parsing it is a :class:`Digest` whose ``hex`` is known to be lowercase hexadecimal of the
algorithm's length, so it is safe to use as a file name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from inspect_tool.errors import InvalidDigestError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import hashlib
    from typing import Any, Self

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
        return cls(algorithm, hex_digest(algorithm, data))

    def hasher(self) -> hashlib._Hash:
        import hashlib

        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        """The 12 hex digits docker shows."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


SMALL = 64 * 1024  # below this, hex_digest hashes with CPython's own code


def hex_digest(algorithm: str, data: bytes) -> str:
    """The hex digest of ``data``. Below 64 KiB (a config, a manifest, a key) by CPython's own
    implementation of the algorithm, so that a command that hashes only such documents never
    loads OpenSSL: ``import hashlib`` does, ~2.5 ms of a start. OpenSSL's is ~5 times as
    fast a byte (10 against 2 us for 3 KB here), which pays only for more bytes: hashlib's
    above."""
    if len(data) < SMALL:
        own = _own_hash(algorithm)
        if own is not None:
            return str(own(data).hexdigest())
    import hashlib

    return hashlib.new(algorithm, data).hexdigest()


_OWN: dict[str, Callable[[bytes], Any] | None] = {}


def _own_hash(algorithm: str) -> Callable[[bytes], Any] | None:
    """CPython's built-in ``algorithm`` (``_sha2`` from 3.12, ``_sha256``/``_sha512``
    before), or None where this interpreter was built without it."""
    if algorithm not in _OWN:
        import importlib

        found = None
        for name in ("_sha2", f"_{algorithm}"):
            try:
                found = getattr(importlib.import_module(name), algorithm, None)
            except ImportError:
                continue
            if found is not None:
                break
        _OWN[algorithm] = found
    return _OWN[algorithm]


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
