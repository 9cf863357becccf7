"""The gzip inflater: ISA-L (python-isal) when it imports, else the standard library's zlib.

Both decode the same bytes to the same bytes through zlib's ``decompressobj`` interface
(``decompress(data, max_length)``, ``unconsumed_tail``, ``unused_data``, ``eof``); ISA-L does
it in ~0.7x the CPU time. ``DOCKSCOPE_INFLATER`` picks one by name: ``zlib`` (always there),
``isal``, or ``zlib-ng`` (the python-zlib-ng package, when installed; for comparison); an
unknown or missing one falls back to zlib. The choice is made once, at the first use.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

ENV = "DOCKSCOPE_INFLATER"


@dataclass(frozen=True, slots=True)
class Inflater:
    """One gzip implementation (ISA-L, zlib-ng or zlib): its zlib-like module and the exceptions a
    corrupt stream raises in it."""

    name: str
    module: Any  # the zlib-like module
    errors: tuple[type[BaseException], ...]  # what a corrupt stream raises

    def gzip(self) -> Any:
        """A decompressor of one gzip member (``wbits=31``)."""
        return self.module.decompressobj(wbits=31)


def _isal() -> Inflater:
    from isal import isal_zlib

    error = cast("type[BaseException]", isal_zlib.error)  # its stub says an instance
    return Inflater("isal", isal_zlib, (error, zlib.error))


def _zlib_ng() -> Inflater:
    from zlib_ng import zlib_ng

    error = cast("type[BaseException]", zlib_ng.error)  # its stub says an instance
    return Inflater("zlib-ng", zlib_ng, (error, zlib.error))


def _zlib() -> Inflater:
    return Inflater("zlib", zlib, (zlib.error,))


_LOADERS: dict[str, Callable[[], Inflater]] = {"isal": _isal, "zlib-ng": _zlib_ng, "zlib": _zlib}


@cache
def inflater() -> Inflater:
    """The inflater to use: ``DOCKSCOPE_INFLATER``'s, else ISA-L, else zlib."""
    wanted = os.environ.get(ENV, "").strip().lower() or "isal"
    loader = _LOADERS.get(wanted, _zlib)
    try:
        return loader()
    except Exception:  # not installed, or a build that does not load: zlib decodes the same
        return _zlib()
