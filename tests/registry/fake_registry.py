"""A small registry of our own (http.server in a thread), serving one OCI layout, for the odd
behaviours real registries and their storage show: blobs redirected to another host, 429
before success, no Docker-Content-Digest, a blob that breaks off mid-stream (resumed with
Range), a manifest or blob whose bytes are not what their digest says."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

USER, PASSWORD = "fakeuser", "fake-password-7731"


@dataclass
class Behaviour:
    require_auth: bool = False  # Basic, with USER/PASSWORD
    bearer_realm: str | None = None  # with require_auth: challenge Bearer with this realm
    redirect_blobs: bool = False  # 307 to http://localhost:PORT/storage/...
    throttle: int = 0  # answer this many 429s (Retry-After: 0) before each first blob success
    no_content_digest: bool = False
    wrong_content_digest: bool = False
    break_blobs_after: int | None = None  # send this many bytes of a full GET, then close
    break_times: int | None = None  # break each blob's first N full GETs only (None: all)
    ignore_range: bool = False  # answer Range requests with the whole blob (200)
    manifest_bytes: bytes | None = None  # served instead of the real manifest
    corrupt_blob: str | None = None  # a blob digest whose bytes are served altered
    stall_blobs_after: int | None = None  # send this many bytes of a full GET, then go quiet
    upload_elsewhere: bool = False  # upload locations on http://localhost:PORT/upload/…


@dataclass
class FakeRegistry:
    layout: Path
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    port: int = 0
    _throttled: dict[str, int] = field(default_factory=dict)
    _broken: dict[str, int] = field(default_factory=dict)
    uploaded: dict[str, bytes] = field(default_factory=dict)  # pushed blobs and manifests

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ref(self, tail: str = "dive:v1") -> str:
        return f"docker://{self.host}/{tail}"

    def blob_requests(self) -> list[tuple[str, str, str | None, str | None]]:
        return [r for r in self.requests if "/blobs/" in r[1] or r[1].startswith("/storage/")]

    def manifest_digest(self) -> str:
        index = json.loads((self.layout / "index.json").read_text())
        return str(index["manifests"][0]["digest"])

    def blob(self, digest: str) -> bytes | None:
        algorithm, _, hexpart = digest.partition(":")
        path = self.layout / "blobs" / algorithm / hexpart
        if "/" in hexpart or not hexpart or not path.is_file():
            return None
        data = path.read_bytes()
        if digest == self.behaviour.corrupt_blob:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data


def _handler(registry: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            if "/blobs/" in self.path and registry.behaviour.upload_elsewhere:
                registry.requests.append(
                    (self.command, self.path, self.headers.get("Authorization"), None)
                )
                self._send(404)  # a registry being pushed to holds nothing yet
                return
            self.do_GET()

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def do_POST(self) -> None:
            registry.requests.append(
                (self.command, self.path, self.headers.get("Authorization"), None)
            )
            host = "localhost" if registry.behaviour.upload_elsewhere else "127.0.0.1"
            self._send(202, b"", {"Location": f"http://{host}:{registry.port}/upload/1?state=x"})

        def do_PUT(self) -> None:
            registry.requests.append(
                (self.command, self.path, self.headers.get("Authorization"), None)
            )
            data = self._body()
            if self.path.startswith("/upload/"):
                digest = self.path.split("digest=", 1)[1].replace("%3A", ":")
                if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                    self._send(400, b'{"errors":[{"code":"DIGEST_INVALID","message":"x"}]}')
                    return
                registry.uploaded[digest] = data
                self._send(201, b"", {"Docker-Content-Digest": digest})
                return
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            registry.uploaded[self.path] = data
            self._send(201, b"", {"Docker-Content-Digest": digest})

        def do_GET(self) -> None:
            b = registry.behaviour
            auth = self.headers.get("Authorization")
            registry.requests.append((self.command, self.path, auth, self.headers.get("Range")))
            if self.path.startswith("/storage/"):
                self._blob(self.path.removeprefix("/storage/"))
                return
            if b.require_auth:
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if auth != expected:
                    body = (
                        b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                    )
                    self._send(
                        401,
                        body,
                        {
                            "WWW-Authenticate": (
                                f'Bearer realm="{b.bearer_realm}",service="fake"'
                                if b.bearer_realm
                                else 'Basic realm="fake"'
                            ),
                            "Content-Type": "application/json",
                        },
                    )
                    return
            if self.path == "/v2/":
                self._send(200, b"{}")
                return
            parts = self.path.split("/")
            # /v2/NAME/manifests/REF or /v2/NAME/blobs/DIGEST
            if len(parts) >= 5 and parts[-2] == "manifests":
                self._manifest(parts[-1])
            elif len(parts) >= 5 and parts[-2] == "blobs":
                if b.redirect_blobs:
                    self._send(
                        307,
                        b"",
                        {"Location": f"http://localhost:{registry.port}/storage/{parts[-1]}"},
                    )
                    return
                self._blob(parts[-1])
            else:
                self._send(404)

        def _manifest(self, ref: str) -> None:
            b = registry.behaviour
            digest = registry.manifest_digest()
            if ref not in ("v1", digest):
                self._send(
                    404,
                    b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"x"}]}',
                    {"Content-Type": "application/json"},
                )
                return
            data = registry.blob(digest)
            assert data is not None
            served = b.manifest_bytes if b.manifest_bytes is not None else data
            headers = {
                "Content-Type": json.loads(data).get(
                    "mediaType", "application/vnd.oci.image.manifest.v1+json"
                )
            }
            if b.wrong_content_digest:
                headers["Docker-Content-Digest"] = "sha256:" + "0" * 64
            elif not b.no_content_digest:
                headers["Docker-Content-Digest"] = "sha256:" + hashlib.sha256(served).hexdigest()
            self._send(200, served, headers)

        def _blob(self, digest: str) -> None:
            b = registry.behaviour
            data = registry.blob(digest)
            if data is None:
                self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"x"}]}')
                return
            if b.throttle and registry._throttled.get(digest, 0) < b.throttle:
                registry._throttled[digest] = registry._throttled.get(digest, 0) + 1
                self._send(429, b"slow down", {"Retry-After": "0"})
                return
            wanted = self.headers.get("Range")
            if wanted and wanted.startswith("bytes=") and not b.ignore_range:
                start_text, _, end_text = wanted[6:].partition("-")
                start = int(start_text)
                end = int(end_text) if end_text else len(data) - 1
                part = data[start : end + 1]
                self._send(206, part, {"Content-Range": f"bytes {start}-{end}/{len(data)}"})
                return
            if b.stall_blobs_after is not None and len(data) > b.stall_blobs_after:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: b.stall_blobs_after])
                self.wfile.flush()
                time.sleep(3)
                self.close_connection = True
                return
            breaks = registry._broken.get(digest, 0)
            if (
                b.break_blobs_after is not None
                and len(data) > b.break_blobs_after
                and (b.break_times is None or breaks < b.break_times)
                and not (wanted and b.ignore_range and wanted.endswith("-511"))  # a head
            ):
                registry._broken[digest] = breaks + 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: b.break_blobs_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self._send(200, data)

    return Handler


@contextmanager
def serve(layout: Path, behaviour: Behaviour | None = None) -> Iterator[FakeRegistry]:
    registry = FakeRegistry(layout, behaviour or Behaviour())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(registry))
    server.daemon_threads = True
    registry.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
