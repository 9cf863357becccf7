"""Headless Chromium driven over the DevTools protocol on a pipe (no extra dependency).

Chromium started with ``--remote-debugging-pipe`` reads protocol commands from its fd 3 and
writes replies and events to fd 4, each message JSON ended by a NUL byte. ``open_page``
loads one page with the Network, Page, Log and Runtime domains enabled before navigation,
so every request the page makes, every console message and every JavaScript dialog (an
``alert`` that ran) is recorded; ``evaluate`` runs an expression in the loaded page, and
``screenshot`` writes the whole page as PNG.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
)
TIMEOUT = 60.0
WIDTH = 1280


def need_chromium() -> str:
    if CHROMIUM is None:
        pytest.fail(
            "the report tests load the page in headless Chromium: install the Debian package "
            "chromium (make test does: it is in the Makefile's DEBS_TEST)",
            pytrace=False,
        )
    return CHROMIUM


class BrowserError(Exception):
    pass


def _high(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


@dataclass
class Page:
    """What happened while a page loaded."""

    url: str
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    dialogs: list[str] = field(default_factory=list)  # alert/confirm/prompt messages
    console: list[str] = field(default_factory=list)  # console and log entries
    exceptions: list[str] = field(default_factory=list)


class Chromium:
    """One headless browser; use as a context manager."""

    def __init__(self) -> None:
        chromium = need_chromium()
        self._profile = tempfile.mkdtemp(prefix="dockscope-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the child's ends moved to fds >= 10, so that bash can put them on fds 3 and 4
        # (where Chromium looks for them) without clobbering one with the other
        to_browser_r = _high(to_browser_r)
        from_browser_w = _high(from_browser_w)
        r, w = to_browser_r, from_browser_w
        script = f'exec 3<&{r} 4>&{w} {r}<&- {w}>&-; exec "$@"'
        self._process = subprocess.Popen(
            [
                "bash",
                "-c",
                script,
                "bash",
                chromium,
                *FLAGS,
                f"--user-data-dir={self._profile}",
                f"--window-size={WIDTH},900",
                "about:blank",
            ],
            pass_fds=(to_browser_r, from_browser_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self.call("Browser.close", timeout=10)
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    # -- the protocol ---------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            written = os.write(self._to_browser, data)
            data = data[written:]

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium went away (exit {self._process.poll()})")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = TIMEOUT,
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        wanted = self._next_id
        self._send(message)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == wanted:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._event(reply)

    def _event(self, event: dict[str, Any]) -> None:
        """Record an event; a JavaScript dialog blocks the page until answered: answer it
        (the reply is not awaited, and is dropped as a stray message)."""
        self._events.append(event)
        if event.get("method") == "Page.javascriptDialogOpening":
            self._next_id += 1
            self._send(
                {
                    "id": self._next_id,
                    "method": "Page.handleJavaScriptDialog",
                    "params": {"accept": True},
                    "sessionId": event.get("sessionId"),
                }
            )

    def _wait_event(self, method: str, session: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self._events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return
            seen = len(self._events)
            self._event(self._receive(deadline))

    # -- pages ----------------------------------------------------------------------------------
    def open_page(self, path: Path) -> tuple[Page, str]:
        """Load a file and wait for its load event; returns what happened and the session."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        url = path.resolve().as_uri()
        self._events.clear()
        self.call("Page.navigate", {"url": url}, session=session)
        self._wait_event("Page.loadEventFired", session)
        # a moment for anything the load started (late requests, timers) to show up
        settle = time.monotonic() + 0.5
        while time.monotonic() < settle:
            try:
                self._event(self._receive(settle))
            except BrowserError:
                break
        page = Page(url)
        for event in self._events:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                page.requests.append(params["request"]["url"])
            elif method == "Page.javascriptDialogOpening":
                page.dialogs.append(params.get("message", ""))
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                page.console.append(f"{entry.get('level')}: {entry.get('text')}")
            elif method == "Runtime.consoleAPICalled":
                args = [str(a.get("value", a.get("description"))) for a in params.get("args", [])]
                page.console.append(f"{params.get('type')}: {' '.join(args)}")
            elif method == "Runtime.exceptionThrown":
                page.exceptions.append(json.dumps(params.get("exceptionDetails", {})))
        return page, session

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=session,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, session: str, out: Path, *, max_height: int = 16384) -> Path:
        height = int(self.evaluate(session, "document.documentElement.scrollHeight"))
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": WIDTH,
                "height": min(max(height, 600), max_height),
                "deviceScaleFactor": 1,
                "mobile": False,
            },
            session=session,
        )
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out
