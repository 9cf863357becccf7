"""TLS for registries: the system's trust, plus a containers-certs.d directory.

``--cert-dir DIR`` (or ``/etc/containers/certs.d/HOST[:PORT]``, then
``/etc/docker/certs.d/HOST[:PORT]`` when no directory is given) holds ``*.crt`` files (CA
certificates added to the system's) and ``*.cert``/``*.key`` pairs (a client certificate
and its key), as containers-certs.d(5) describes.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from inspect_tool.errors import UsageError

SYSTEM_CERT_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))


def cert_directory(cert_dir: Path | None, host: str) -> Path | None:
    if cert_dir is not None:
        if not cert_dir.is_dir():
            raise UsageError("--cert-dir is not a directory", subject=str(cert_dir))
        return cert_dir
    for base in SYSTEM_CERT_DIRS:
        candidate = base / host
        if candidate.is_dir():
            return candidate
    return None


def ssl_context(*, verify: bool, cert_dir: Path | None) -> ssl.SSLContext:
    """A client context: system CAs and the directory's, its client pair, or no verification."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_dir is None:
        return context
    for crt in sorted(cert_dir.glob("*.crt")):
        try:
            context.load_verify_locations(cafile=str(crt))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"not a CA certificate: {exc}", subject=str(crt)) from None
    for cert in sorted(cert_dir.glob("*.cert")):
        key = cert.with_suffix(".key")
        if not key.is_file():
            raise UsageError(f"client certificate without its key {key.name}", subject=str(cert))
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"not a certificate and key pair: {exc}", subject=str(cert)) from None
    for key in sorted(cert_dir.glob("*.key")):
        if not key.with_suffix(".cert").is_file():
            raise UsageError(f"key without its certificate {key.stem}.cert", subject=str(key))
    return context
