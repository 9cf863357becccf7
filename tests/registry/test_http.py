"""registry/http.py: httpx loaded without its command line, responses read 1 MiB at a time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
import inspect_tool.registry.client
import httpx
from httpcore._sync.http11 import HTTP11Connection
print(json.dumps({
    "loaded": sorted(m for m in ("click", "pygments", "rich") if m in sys.modules),
    "read": HTTP11Connection.READ_NUM_BYTES,
    "client": isinstance(httpx.Client(), httpx.Client),
}))
"""


def test_the_registry_client_loads_httpx_lean() -> None:
    pytest.importorskip("click")  # httpx imports its command line only when click is there
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    facts = json.loads(done.stdout)
    assert facts == {"loaded": [], "read": 1 << 20, "client": True}


def test_a_large_body_arrives_in_large_reads() -> None:
    """A 4 MiB answer on one connection, read through the client's httpx: a handful of reads,
    not 64 of 64 KiB (what each read costs in Python is what the size saves)."""
    import socket
    import threading

    from inspect_tool.registry.http import httpx

    body = bytes(range(256)) * (4 * 4096)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            )
            conn.sendall(body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    chunks: list[int] = []
    with httpx.Client() as client, client.stream("GET", f"http://127.0.0.1:{port}/") as r:
        got = b""
        for chunk in r.iter_raw():
            chunks.append(len(chunk))
            got += chunk
    thread.join(5)
    server.close()
    assert got == body
    assert max(chunks) > 64 * 1024
    assert len(chunks) < 64
