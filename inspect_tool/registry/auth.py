"""Registry credentials: where they come from, and ``login``/``logout`` writing them.

Looked up in order (containers-auth.json(5)): ``--creds``; then ``--authfile`` or
``$REGISTRY_AUTH_FILE`` alone when given; else ``${XDG_RUNTIME_DIR}/containers/auth.json``,
``~/.config/containers/auth.json`` and ``~/.docker/config.json``. In each file a
``credHelpers`` entry for the registry, then the most specific ``auths`` key
(``host/namespace/repo`` before ``host``), then ``credsStore`` answer; the first file that
knows the registry wins. A credential helper is ``docker-credential-NAME get``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from inspect_tool.errors import DockscopeError, ExitCode, UsageError
from inspect_tool.registry.access import RegistryAccess
from inspect_tool.registry.reference import DOCKER_HUB

LEGACY_HUB_KEY = "https://index.docker.io/v1/"
MAX_AUTH_FILE = 1 << 20
HELPER_TIMEOUT = 30


@dataclass(frozen=True)
class Credentials:
    """A user name and password for one registry; the password is never shown in a repr."""

    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"


class NotLoggedInError(DockscopeError):
    """``logout`` of a registry the auth file holds no credentials for (exit 1)."""

    exit_code = ExitCode.PROBLEMS


def parse_creds(text: str) -> Credentials:
    username, _, password = text.partition(":")
    if not username:
        raise UsageError("--creds: expected USER[:PASSWORD]")
    return Credentials(username, password)


def default_auth_files() -> list[Path]:
    home = Path(os.path.expanduser("~"))
    files = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        files.append(Path(runtime) / "containers" / "auth.json")
    config = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    files.append(Path(config) / "containers" / "auth.json")
    files.append(home / ".docker" / "config.json")
    return files


def auth_files(access: RegistryAccess) -> list[Path]:
    if access.authfile is not None:
        return [access.authfile]
    env = os.environ.get("REGISTRY_AUTH_FILE")
    if env:
        return [Path(env)]
    return default_auth_files()


def write_target(access: RegistryAccess) -> Path:
    """Where ``login`` writes: --authfile, $REGISTRY_AUTH_FILE, or the first default file
    (podman's ``${XDG_RUNTIME_DIR}/containers/auth.json``)."""
    return auth_files(access)[0]


def lookup(access: RegistryAccess, registry: str, repository: str) -> Credentials | None:
    """The credentials for ``registry/repository``, or None (anonymous)."""
    if access.creds is not None:
        return parse_creds(access.creds)
    explicit = access.authfile is not None or bool(os.environ.get("REGISTRY_AUTH_FILE"))
    for path in auth_files(access):
        document = _load(path, must_exist=access.authfile is not None and explicit)
        if document is None:
            continue
        found = _from_document(document, registry, repository, path)
        if found is not None:
            return found
    return None


def _load(path: Path, *, must_exist: bool) -> dict[str, object] | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_AUTH_FILE + 1)
    except FileNotFoundError:
        if must_exist:
            raise UsageError("auth file does not exist", subject=str(path)) from None
        return None
    except OSError as exc:
        raise UsageError(f"cannot read the auth file: {exc.strerror}", subject=str(path)) from None
    if len(raw) > MAX_AUTH_FILE:
        raise UsageError("auth file is larger than 1 MiB", subject=str(path))
    if not raw.strip():
        return {}
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise UsageError("auth file is not valid JSON", subject=str(path)) from None
    if not isinstance(document, dict):
        raise UsageError("auth file is not a JSON object", subject=str(path))
    return document


def _keys(registry: str, repository: str) -> list[str]:
    """auths keys to try, the most specific first."""
    parts = repository.split("/")
    keys = [f"{registry}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]
    keys.append(registry)
    return keys


def normalize_key(key: str) -> str:
    """auth.json and docker's config.json keys: a scheme and a /v1/ or /v2/ suffix dropped,
    Docker Hub's legacy names folded to docker.io."""
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
            key = key.split("/", 1)[0]
    key = key.rstrip("/")
    if key in ("index.docker.io", "registry-1.docker.io"):
        return DOCKER_HUB
    return key


def _from_document(
    document: dict[str, object], registry: str, repository: str, path: Path
) -> Credentials | None:
    helpers = document.get("credHelpers")
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if normalize_key(str(key)) == registry and isinstance(helper, str):
                return helper_get(helper, registry)
    auths = document.get("auths")
    if isinstance(auths, dict):
        by_key = {normalize_key(str(k)): v for k, v in auths.items()}
        for key in _keys(registry, repository):
            entry = by_key.get(key)
            if isinstance(entry, dict):
                found = _decode_entry(entry, path)
                if found is not None:
                    return found
    store = document.get("credsStore")
    if isinstance(store, str) and store:
        return helper_get(store, registry)
    return None


def _decode_entry(entry: dict[str, object], path: Path) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise UsageError(
                "an auths entry's auth is not base64 of USER:PASSWORD", subject=str(path)
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise UsageError("an auths entry's auth is not USER:PASSWORD", subject=str(path))
        return Credentials(username, password)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret)
    return None


def helper_get(helper: str, registry: str) -> Credentials | None:
    """Ask ``docker-credential-HELPER get``; None when it knows nothing for the registry."""
    if not helper.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UsageError(f"credential helper name {helper!r} is not a plain name")
    program = shutil.which(f"docker-credential-{helper}")
    if program is None:
        raise UsageError(f"credential helper docker-credential-{helper} is not installed")
    server = LEGACY_HUB_KEY if registry == DOCKER_HUB else registry
    try:
        done = subprocess.run(
            [program, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(
            f"credential helper docker-credential-{helper} failed: {type(exc).__name__}"
        ) from None
    if done.returncode != 0:
        if b"credentials not found" in done.stdout.lower() + done.stderr.lower():
            return None
        raise UsageError(
            f"credential helper docker-credential-{helper} failed (exit {done.returncode})"
        )
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        raise UsageError(f"credential helper docker-credential-{helper} answered no JSON") from None
    username = answer.get("Username") if isinstance(answer, dict) else None
    secret = answer.get("Secret") if isinstance(answer, dict) else None
    if not isinstance(username, str) or not isinstance(secret, str) or not username:
        return None
    return Credentials(username, secret)


# ---------------------------------------------------------------------------------------------
# login / logout


def store(path: Path, registry: str, credentials: Credentials) -> None:
    """Add or replace ``auths[registry]`` in a containers auth file, as podman writes it."""
    document = _load(path, must_exist=False) or {}
    auths = document.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    auths[registry] = {"auth": token}
    document["auths"] = auths
    _write(path, document)


def remove(path: Path, registry: str) -> None:
    document = _load(path, must_exist=False) or {}
    auths = document.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    matching = [k for k in auths if normalize_key(str(k)) == registry]
    if not matching:
        raise NotLoggedInError(f"not logged in to {registry}", subject=str(path))
    for key in matching:
        del auths[key]
    document["auths"] = auths
    _write(path, document)


def _write(path: Path, document: dict[str, object]) -> None:
    """Replace the file atomically, mode 0600, its directory made 0700 when missing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise UsageError(f"cannot write the auth file: {exc.strerror}", subject=str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            json.dump(document, out, indent="\t")
            out.write("\n")
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
