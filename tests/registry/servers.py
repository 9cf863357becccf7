"""Real registries for the tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1, in
four set-ups (plain HTTP, TLS, htpasswd Basic over TLS, token auth with an issuer of ours),
a test CA made with openssl, and images pushed into them with skopeo."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

if TYPE_CHECKING:
    from inspect_tool.registry.access import RegistryAccess

REGISTRY_BINARY = "/usr/bin/docker-registry"
DATA = Path(__file__).parent / "data"
# tests/registry/data/htpasswd holds this user's bcrypt line (made once, committed)
BASIC_USER, BASIC_PASSWORD = "dockscope", "dockscope-pass"
TOKEN_USER, TOKEN_PASSWORD = "tokenuser", "token-secret-pass"
TOKEN_SERVICE = "dockscope-test-registry"
TOKEN_ISSUER = "dockscope-test-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    pytest.fail("docker-registry did not start listening")


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def self_signed(directory: Path, stem: str, subject: str) -> None:
    """``stem.key`` and a self-signed ``stem.crt`` (2 days) in ``directory``."""
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{stem}.key",
        "-out",
        f"{stem}.crt",
        "-days",
        "2",
        "-subj",
        subject,
        cwd=directory,
    )


def ca_signed(directory: Path, stem: str, subject: str, extension: str, certificate: str) -> None:
    """``stem.key`` and ``certificate``, signed by ``directory``'s ca.crt with ``extension``."""
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{stem}.key",
        "-out",
        f"{stem}.csr",
        "-subj",
        subject,
        cwd=directory,
    )
    (directory / f"{stem}.ext").write_text(extension + "\n")
    openssl(
        "x509",
        "-req",
        "-in",
        f"{stem}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        certificate,
        "-days",
        "2",
        "-extfile",
        f"{stem}.ext",
        cwd=directory,
    )


@dataclass
class Pki:
    """A test CA and a server certificate for 127.0.0.1 and localhost it signed."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path

    def cert_dir(self, where: Path, *, client: bool = False) -> Path:
        """A --cert-dir holding the CA (and a client certificate and key the CA signed), as
        containers-certs.d lays it out."""
        where.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.ca, where / "ca.crt")
        if client:
            if not (self.directory / "client.cert").is_file():
                ca_signed(
                    self.directory,
                    "client",
                    "/CN=dockscope test client",
                    "extendedKeyUsage=clientAuth",
                    "client.cert",
                )
            shutil.copyfile(self.directory / "client.cert", where / "client.cert")
            shutil.copyfile(self.directory / "client.key", where / "client.key")
        return where


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    self_signed(directory, "ca", "/CN=dockscope test CA")
    ca_signed(
        directory,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "server.crt",
    )
    return Pki(directory, directory / "ca.crt", directory / "server.crt", directory / "server.key")


@dataclass
class Registry:
    """One running docker-registry: ``host`` is 127.0.0.1:PORT."""

    kind: str
    host: str
    process: subprocess.Popen[bytes]
    root: Path
    tls: bool
    creds: str | None = None
    issuer: TokenIssuer | None = None
    pushed: dict[str, Path] = field(default_factory=dict)

    def ref(self, name: str) -> str:
        return f"docker://{self.host}/{name}"

    def skopeo_auth(self, prefix: str) -> list[str]:
        args = [f"--{prefix}tls-verify=false"]
        if self.creds:
            args.append(f"--{prefix}creds={self.creds}")
        return args

    def push(self, layout: str, name: str) -> str:
        """skopeo copy LAYOUT (oci:DIR[:REF] …, every image of an index) to NAME here, digests
        preserved; returns the docker:// reference."""
        ref = self.ref(name)
        if name not in self.pushed:
            run_skopeo(
                "copy", "--all", "--preserve-digests", *self.skopeo_auth("dest-"), layout, ref
            )
            self.pushed[name] = Path(layout)
        return ref

    def access(self, pki: Pki, where: Path) -> RegistryAccess:
        """The library's access options for this registry, its CA trusted (in ``where``)."""
        from inspect_tool.registry.access import RegistryAccess

        return RegistryAccess(creds=self.creds, cert_dir=pki.cert_dir(where) if self.tls else None)

    def access_args(self, pki: Pki, where: Path) -> list[str]:
        """dockscope's options to read from this registry with its CA trusted."""
        args: list[str] = []
        if self.tls:
            args += ["--cert-dir", str(pki.cert_dir(where))]
        if self.creds:
            args += ["--creds", self.creds]
        return args

    def skopeo_read_args(self) -> list[str]:
        return self.skopeo_auth("")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.issuer is not None:
            self.issuer.stop()


def run_skopeo(*args: str) -> str:
    done = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def start_registry(
    kind: str, directory: Path, *, pki: Pki | None = None, issuer: TokenIssuer | None = None
) -> Registry:
    """kind: plain, tls, basic (htpasswd over TLS), mtls (TLS with client certificates the
    test CA signed) or token (the issuer's JWTs, plain HTTP)."""
    if shutil.which(REGISTRY_BINARY) is None:
        pytest.fail("docker-registry is missing: apt-get install docker-registry (make debs-test)")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": True},
        },
        "http": http,
    }
    tls = kind in ("tls", "basic", "mtls")
    if tls:
        assert pki is not None
        http["tls"] = {"certificate": str(pki.server_cert), "key": str(pki.server_key)}
        if kind == "mtls":
            http["tls"]["clientcas"] = [str(pki.ca)]
    creds = None
    if kind == "basic":
        shutil.copyfile(DATA / "htpasswd", directory / "htpasswd")
        config["auth"] = {
            "htpasswd": {"realm": "dockscope-test", "path": str(directory / "htpasswd")}
        }
        creds = f"{BASIC_USER}:{BASIC_PASSWORD}"
    if kind == "token":
        assert issuer is not None
        config["auth"] = {
            "token": {
                "realm": issuer.realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(issuer.cert),
            }
        }
        creds = f"{TOKEN_USER}:{TOKEN_PASSWORD}"
    # JSON is YAML
    (directory / "config.yml").write_text(json.dumps(config, indent=1))
    log = directory / "registry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(directory / "config.yml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    wait_for_port(port, process, log)
    return Registry(kind, f"127.0.0.1:{port}", process, directory, tls, creds, issuer)


# ---------------------------------------------------------------------------------------------
# The token issuer: RS256 JWTs whose x5c certificate is the registry's rootcertbundle


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """GET /token?service=&scope=: with TOKEN_USER's Basic credentials, a token granting every
    action asked; anonymous, a token granting pull on repositories under ``public/``.
    ``requests`` records (path, had Authorization) for the tests."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self_signed(directory, "token", "/CN=dockscope token issuer")
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        self.cert = directory / "token.crt"
        self._key = serialization.load_pem_private_key(
            (directory / "token.key").read_bytes(), password=None
        )
        der = x509.load_pem_x509_certificate(self.cert.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
        self._x5c = base64.b64encode(der).decode()
        self.requests: list[tuple[str, bool]] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests.append((self.path, "Authorization" in self.headers))
                query = parse_qs(urlsplit(self.path).query)
                auth = self.headers.get("Authorization", "")
                user = None
                if auth.startswith("Basic "):
                    name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if (name, password) != (TOKEN_USER, TOKEN_PASSWORD):
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = name
                access = []
                for scope in " ".join(query.get("scope", [])).split():
                    kind, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    wanted = actions.split(",")
                    granted = (
                        wanted
                        if user
                        else [a for a in wanted if a == "pull" and name.startswith("public/")]
                    )
                    access.append({"type": kind, "name": name, "actions": granted})
                body = json.dumps(
                    {"token": issuer.sign(user or "", access), "expires_in": 300}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def sign(self, subject: str, access: list[dict[str, Any]]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self._x5c]}
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self._key.sign(  # type: ignore[union-attr,call-arg]
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64(signature)}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def registries(base: Path) -> Iterator[dict[str, Registry]]:
    pki = make_pki(base / "pki")
    issuer = TokenIssuer(base / "issuer")
    started: dict[str, Registry] = {}
    try:
        for kind in ("plain", "tls", "basic", "token"):
            started[kind] = start_registry(kind, base / kind, pki=pki, issuer=issuer)
        started["plain"].pki = pki  # type: ignore[attr-defined]
        yield started
    finally:
        for registry in started.values():
            registry.process.terminate()
        for registry in started.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                registry.process.wait(10)
        issuer.stop()
