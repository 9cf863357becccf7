"""How to reach registries: credentials, auth file, certificates, TLS verification.

One frozen value, made by the CLI from ``--creds``, ``--authfile``, ``--cert-dir`` and
``--tls-verify`` and carried by ``ImageSelection``. No heavy imports here: the CLI builds it
for every command that takes an IMAGE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RegistryAccess:
    """``creds`` is ``USER:PASS`` (or ``USER`` alone for an empty password); ``authfile``
    replaces the default auth files; ``cert_dir`` holds ``*.crt`` CAs and ``*.cert``/``*.key``
    client pairs; ``tls_verify`` None means the default (verify, plain HTTP only for loopback)."""

    creds: str | None = field(default=None, repr=False)
    authfile: Path | None = None
    cert_dir: Path | None = None
    tls_verify: bool | None = None

    def __repr__(self) -> str:  # never the credentials, in a traceback or a log
        return (
            f"RegistryAccess(creds={'<set>' if self.creds else None}, authfile={self.authfile!r}, "
            f"cert_dir={self.cert_dir!r}, tls_verify={self.tls_verify!r})"
        )


DEFAULT_ACCESS = RegistryAccess()

# The access a command line gave, for library calls that do not carry one in their
# ImageSelection (a command opening several images, runtime_lab's create).
_current: ContextVar[RegistryAccess | None] = ContextVar("registry_access", default=None)


def current_access() -> RegistryAccess:
    return _current.get() or DEFAULT_ACCESS


@contextlib.contextmanager
def use_access(access: RegistryAccess | None) -> Iterator[None]:
    """Make ``access`` the default for registry references opened inside the block."""
    token = _current.set(access)
    try:
        yield
    finally:
        _current.reset(token)
