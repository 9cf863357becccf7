"""The OCI distribution API over httpx: ping, auth challenges, manifests, blobs, uploads.

HTTPS by default; plain HTTP only for a loopback host or with ``tls_verify=False``, and only
when the HTTPS attempt fails for want of TLS (as skopeo and docker). A 401 answers with its
WWW-Authenticate challenge: Basic sends the credentials, Bearer fetches a token from the
realm for the request's scope (cached per scope until it expires). Redirects (blob storage)
are followed by hand, never with the Authorization header. 429 and 5xx answers and broken
connections are retried with back-off (Retry-After honoured, bounded).
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin, urlsplit

from inspect_tool.errors import RegistryError
from inspect_tool.model.digest import Digest
from inspect_tool.model.mediatypes import MediaType
from inspect_tool.registry.access import RegistryAccess
from inspect_tool.registry.auth import Credentials, lookup
from inspect_tool.registry.http import httpx
from inspect_tool.registry.reference import RegistryReference, is_loopback
from inspect_tool.registry.tls import cert_directory, ssl_context

if TYPE_CHECKING:
    from collections.abc import Iterable

MANIFEST_ACCEPT = ", ".join(
    (
        MediaType.OCI_MANIFEST,
        MediaType.OCI_INDEX,
        MediaType.DOCKER_MANIFEST,
        MediaType.DOCKER_LIST,
    )
)
MAX_MANIFEST = 16 * 1024 * 1024
MAX_ERROR_BODY = 4096
MAX_REDIRECTS = 5
MAX_TOKEN = 1 << 20
USER_AGENT = "dockscope"


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and after how long a wait, a request that failed with 429, a 5xx or a broken
    connection is tried again: exponential back-off, bounded."""

    attempts: int = 5  # tries in all, the first included
    base_delay: float = 0.5  # doubled after each failure
    max_delay: float = 10.0  # no wait longer, Retry-After included

    def delay(self, attempt: int, retry_after: str | None) -> float:
        wait: float = self.base_delay * (2**attempt)
        if retry_after:
            with contextlib.suppress(ValueError):
                wait = float(retry_after)
        return max(0.0, min(wait, self.max_delay))


DEFAULT_RETRY = RetryPolicy()
TIMEOUT = httpx.Timeout(connect=30.0, read=60.0, write=60.0, pool=60.0)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

_CHALLENGE_RE = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…",scope="…"`` → ("bearer", {…})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _CHALLENGE_RE.finditer(rest)
    }
    return scheme.lower(), params


def _transport_failure(exc: Exception) -> str:
    """One line for a connection failure, without URLs or headers."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if (
        "name or service not known" in lowered
        or "nodename nor servname" in lowered
        or ("temporary failure in name resolution" in lowered)
    ):
        return "unknown host (the name does not resolve)"
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        return "TLS certificate not trusted (give its CA with --cert-dir, or --tls-verify=false)"
    if (
        "alert bad certificate" in lowered
        or "certificate required" in lowered
        or ("alert unknown ca" in lowered)
    ):
        return (
            "the registry refused the TLS client certificate, or wants one (a *.cert and "
            "*.key pair in --cert-dir)"
        )
    if "connection refused" in lowered:
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return text.splitlines()[0][:200]


def _wants_plain_http(exc: Exception) -> bool:
    """Whether an HTTPS failure looks like a server speaking plain HTTP."""
    lowered = str(exc).lower()
    return any(
        s in lowered
        for s in (
            "wrong version number",
            "record layer failure",
            "unknown protocol",
            "http_request",
        )
    )


class RegistryClient:
    """One registry host, for one repository's reads (and pushes)."""

    def __init__(
        self,
        reference: RegistryReference,
        access: RegistryAccess,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        push: bool = False,
        label: str | None = None,
    ) -> None:
        self.reference = reference
        self.access = access
        self.retry = retry
        self.label = label or reference.transport
        self.actions = "pull,push" if push else "pull"
        verify = access.tls_verify is not False
        directory = cert_directory(access.cert_dir, reference.host)
        self._client = httpx.Client(
            verify=ssl_context(verify=verify, cert_dir=directory),
            cert=None,
            timeout=TIMEOUT,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._plain_allowed = access.tls_verify is False or reference.is_loopback
        self._base: str | None = None
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None
        self._credentials_loaded = False
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[str, tuple[str, float]] = {}
        # (method, path, Range) of each API request, for tests and measurements
        self.requests: list[tuple[str, str, str | None]] = []

    # -- plumbing -------------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()

    def error(self, message: str) -> RegistryError:
        return RegistryError(message, subject=self.label)

    def credentials(self) -> Credentials | None:
        if not self._credentials_loaded:
            ref = self.reference
            self._credentials = lookup(self.access, ref.registry, ref.repository)
            self._credentials_loaded = True
        return self._credentials

    @property
    def base(self) -> str:
        if self._base is None:
            self.ping()
        assert self._base is not None
        return self._base

    def ping(self) -> httpx.Response:
        """GET /v2/: choose HTTPS or HTTP, learn the auth challenge."""
        host = self.reference.host
        schemes = ["https", "http"] if self._plain_allowed else ["https"]
        last: Exception | None = None
        for scheme in schemes:
            url = f"{scheme}://{host}/v2/"
            try:
                response = self._retrying(lambda u=url: self._client.get(u))  # type: ignore[misc]
            except httpx.HTTPError as exc:
                last = exc
                if scheme == "https" and self._plain_allowed and _wants_plain_http(exc):
                    continue
                raise self.error(f"cannot reach {host}: {_transport_failure(exc)}") from None
            self._base = f"{scheme}://{host}"
            if response.status_code == 401:
                challenge = response.headers.get("WWW-Authenticate")
                if challenge:
                    self._challenge = parse_challenge(challenge)
            elif response.status_code >= 400 and response.status_code != 404:
                raise self.error(f"{host}/v2/ answered {response.status_code}")
            return response
        raise self.error(
            f"cannot reach {host}: {_transport_failure(last) if last else 'no answer'}"
        )

    def _retrying(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        """Send, retrying transport errors, 429 and 5xx with back-off."""
        attempt = 0
        while True:
            try:
                response = send()
            except httpx.TransportError as exc:
                # refused, unknown host, TLS failures: no use asking again
                if isinstance(exc, httpx.ConnectError):
                    raise
                if attempt + 1 >= self.retry.attempts:
                    raise
                time.sleep(self.retry.delay(attempt, None))
                attempt += 1
                continue
            if response.status_code in _RETRY_STATUS and attempt + 1 < self.retry.attempts:
                retry_after = response.headers.get("Retry-After")
                response.close()
                time.sleep(self.retry.delay(attempt, retry_after))
                attempt += 1
                continue
            return response

    def _scope(self, repository: str | None = None, actions: str | None = None) -> str:
        return f"repository:{repository or self.reference.repository}:{actions or self.actions}"

    def _authorization(self, scope: str) -> str | None:
        if self._challenge is None:
            return None
        scheme, params = self._challenge
        creds = self.credentials()
        if scheme == "basic":
            if creds is None:
                return None
            return _basic(creds)
        if scheme == "bearer":
            return "Bearer " + self._token(params, scope)
        return None

    def _token(self, params: dict[str, str], scope: str) -> str:
        with self._lock:
            cached = self._tokens.get(scope)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
        realm = params.get("realm")
        if not realm or urlsplit(realm).scheme not in ("http", "https"):
            raise self.error("the registry's Bearer challenge names no usable realm")
        query = [("scope", part) for part in scope.split()]
        if params.get("service"):
            query.append(("service", params["service"]))
        creds = self.credentials()
        realm_parts = urlsplit(realm)
        if (
            creds is not None
            and realm_parts.scheme == "http"
            and not is_loopback(realm_parts.hostname or "")
            and self.access.tls_verify is not False
        ):
            raise self.error(
                "the registry's token service is plain HTTP: the credentials are not sent "
                "there (--tls-verify=false allows it)"
            )
        headers = {"Authorization": _basic(creds)} if creds is not None else {}
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        try:
            response = self._retrying(lambda: self._client.get(url, headers=headers))
        except httpx.HTTPError as exc:
            raise self.error(f"cannot reach the token service: {_transport_failure(exc)}") from None
        if response.status_code in (401, 403):
            who = "credentials" if creds else "anonymous request"
            raise self.error(f"the token service refused the {who} ({response.status_code})")
        if response.status_code != 200:
            raise self.error(f"the token service answered {response.status_code}")
        body = response.content
        if len(body) > MAX_TOKEN:
            raise self.error("the token service's answer is larger than 1 MiB")
        try:
            import json

            answer = json.loads(body)
        except ValueError:
            raise self.error("the token service's answer is not JSON") from None
        token = (
            (answer.get("token") or answer.get("access_token"))
            if isinstance(answer, dict)
            else None
        )
        if not isinstance(token, str) or not token:
            raise self.error("the token service's answer holds no token")
        expires = answer.get("expires_in") if isinstance(answer, dict) else None
        lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else 60.0
        with self._lock:
            self._tokens[scope] = (token, time.monotonic() + max(lifetime - 10, 5))
        return token

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        scope: str | None = None,
        content: Callable[[], Iterable[bytes] | bytes] | None = None,
        absolute: bool = False,
    ) -> httpx.Response:
        """One API call (``path`` below /v2/, or an absolute URL the registry gave), with auth,
        retries and redirects. The response is open when ``stream`` is set: close it."""
        scope = scope or self._scope()
        url = path if absolute else f"{self.base}/v2/{path}"
        self.requests.append((method, urlsplit(url).path, (headers or {}).get("Range")))
        if _origin(url) != _origin(self.base):
            # an upload location on another host: never the registry's credentials
            return self._send(method, url, headers or {}, None, stream, content)
        authorized = False
        auth: str | None = self._authorization(scope) if self._challenge else None
        for _ in range(3):
            response = self._send(method, url, headers or {}, auth, stream, content)
            if response.status_code != 401:
                return response
            challenge = response.headers.get("WWW-Authenticate")
            drain(response)
            if not challenge or authorized:
                return response
            self._challenge = parse_challenge(challenge)
            chal_scope = self._challenge[1].get("scope")
            if chal_scope and chal_scope != scope and method in ("GET", "HEAD"):
                scope = chal_scope
            with self._lock:
                self._tokens.pop(scope, None)
            auth = self._authorization(scope)
            if auth is None:
                return response
            authorized = True
        return response

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        auth: str | None,
        stream: bool,
        content: Callable[[], Iterable[bytes] | bytes] | None,
    ) -> httpx.Response:
        def once() -> httpx.Response:
            target = url
            with_auth = auth
            for _ in range(MAX_REDIRECTS + 1):
                sent = dict(headers)
                if with_auth:
                    sent["Authorization"] = with_auth
                request = self._client.build_request(
                    method, target, headers=sent, content=content() if content else None
                )
                response = self._client.send(request, stream=True)
                if response.status_code in (301, 302, 303, 307, 308) and "location" in (
                    response.headers
                ):
                    location = response.headers["location"]
                    response.close()
                    target = urljoin(target, location)
                    if urlsplit(target).scheme not in ("http", "https"):
                        raise self.error("the registry redirected to a non-HTTP address")
                    with_auth = None  # blob storage: never the registry's credentials
                    continue
                if not stream:
                    try:
                        response.read()
                    finally:
                        response.close()
                return response
            raise self.error(f"more than {MAX_REDIRECTS} redirects")

        try:
            return self._retrying(once)
        except httpx.HTTPError as exc:
            raise self.error(
                f"{method} {urlsplit(url).path} failed: {_transport_failure(exc)}"
            ) from None

    def fail(self, response: httpx.Response, what: str) -> RegistryError:
        """The error for an unexpected answer, with the registry's error code if it gave one."""
        code = response.status_code
        detail = _error_code(response)
        reason = {
            401: "authentication required"
            + (" (the credentials were refused)" if self.credentials() else " (no credentials)"),
            403: "access denied",
            404: "not found",
            429: "too many requests (retries exhausted)",
        }.get(code, "registry error")
        return self.error(f"{what}: {reason} ({code}{' ' + detail if detail else ''})")

    def check_login(self) -> None:
        """Prove the credentials: /v2/ answered with them (after a token, for Bearer)."""
        response = self.ping()
        if self._challenge is None:
            return  # the registry asks for no credentials
        scheme, params = self._challenge
        if scheme == "bearer":
            # a token for no repository (docker login's): the realm checks the credentials
            self._token(params, "")
            return
        auth = self._authorization(self._scope())
        if auth is None:
            raise self.fail(response, "login")
        answer = self._send("GET", f"{self.base}/v2/", {}, auth, False, None)
        if answer.status_code != 200:
            raise self.fail(answer, "login")

    # -- reads ----------------------------------------------------------------------------------
    def get_manifest(self, ref: str) -> tuple[bytes, str | None, str | None]:
        """The manifest's exact bytes, its Content-Type and its Docker-Content-Digest."""
        repo = self.reference.repository
        response = self.request(
            "GET",
            f"{repo}/manifests/{ref}",
            headers={"Accept": MANIFEST_ACCEPT},
            stream=True,
        )
        try:
            if response.status_code != 200:
                drain(response)
                raise self.fail(response, f"manifest {ref}")
            data = _read_bounded(
                response,
                MAX_MANIFEST,
                lambda: self.error(f"manifest {ref} is larger than {MAX_MANIFEST} bytes"),
            )
        except httpx.HTTPError as exc:
            raise self.error(f"manifest {ref}: read failed ({_transport_failure(exc)})") from None
        finally:
            response.close()
        media_type = response.headers.get("Content-Type")
        if media_type:
            media_type = media_type.split(";", 1)[0].strip() or None
        return data, media_type, response.headers.get("Docker-Content-Digest")

    def open_blob(self, digest: Digest, offset: int = 0, end: int | None = None) -> httpx.Response:
        """A streaming GET of a blob (from ``offset``; to ``end`` inclusive). Close it."""
        headers = {"Accept-Encoding": "identity"}
        if offset or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end}"
        response = self.request(
            "GET", f"{self.reference.repository}/blobs/{digest}", headers=headers, stream=True
        )
        if response.status_code not in (200, 206):
            drain(response)
            raise self.fail(response, f"blob {digest}")
        return response

    # -- writes ---------------------------------------------------------------------------------
    def blob_exists(self, digest: Digest) -> bool:
        response = self.request("HEAD", f"{self.reference.repository}/blobs/{digest}")
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self.fail(response, f"HEAD blob {digest}")

    def mount_blob(self, digest: Digest, source_repository: str) -> bool:
        """Cross-repository mount; False when the registry wants an upload instead."""
        query = urlencode({"mount": str(digest), "from": source_repository})
        scope = f"{self._scope()} {self._scope(source_repository, 'pull')}"
        response = self.request(
            "POST", f"{self.reference.repository}/blobs/uploads/?{query}", scope=scope
        )
        return response.status_code == 201

    def upload_blob(self, digest: Digest, size: int, chunks: Callable[[], Iterator[bytes]]) -> None:
        """POST for an upload location, then one monolithic PUT of the whole blob."""
        response = self.request("POST", f"{self.reference.repository}/blobs/uploads/")
        if response.status_code not in (201, 202):
            raise self.fail(response, f"starting the upload of {digest}")
        location = response.headers.get("Location")
        if not location:
            raise self.error(f"the registry gave no upload location for {digest}")
        url = urljoin(f"{self.base}/v2/{self.reference.repository}/blobs/uploads/", location)
        url += ("&" if "?" in url else "?") + urlencode({"digest": str(digest)})
        put = self.request(
            "PUT",
            url,
            absolute=True,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=chunks,
        )
        if put.status_code != 201:
            raise self.fail(put, f"uploading blob {digest}")

    def put_manifest(self, ref: str, data: bytes, media_type: str) -> str | None:
        response = self.request(
            "PUT",
            f"{self.reference.repository}/manifests/{ref}",
            headers={"Content-Type": media_type},
            content=lambda: data,
        )
        if response.status_code not in (200, 201):
            raise self.fail(response, f"manifest {ref}")
        digest: str | None = response.headers.get("Docker-Content-Digest")
        return digest


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _basic(creds: Credentials) -> str:
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    return "Basic " + token


def _read_bounded(response: httpx.Response, limit: int, too_big: Callable[[], Exception]) -> bytes:
    out = bytearray()
    for chunk in response.iter_bytes():
        out += chunk
        if len(out) > limit:
            raise too_big()
    return bytes(out)


def drain(response: httpx.Response) -> None:
    """Read a small error body (kept for its error code) and close the response."""
    if "dockscope_body" in response.extensions:
        return  # drained already
    body = bytearray()
    try:
        if not response.is_closed and not response.is_stream_consumed:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_ERROR_BODY:
                    break
        elif response.is_stream_consumed:
            body += response.content
    except (httpx.HTTPError, httpx.StreamError):
        pass
    finally:
        response.close()
    response.extensions["dockscope_body"] = bytes(body[:MAX_ERROR_BODY])


def _error_code(response: httpx.Response) -> str:
    """The first error code of a distribution error body (``MANIFEST_UNKNOWN``), or ''."""
    body = response.extensions.get("dockscope_body")
    if not isinstance(body, bytes):
        try:
            body = response.content[:MAX_ERROR_BODY]
        except (httpx.HTTPError, httpx.StreamError):
            return ""
    try:
        import json

        document: Any = json.loads(body)
        code = document["errors"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    return code if isinstance(code, str) and code.replace("_", "").isalnum() else ""
