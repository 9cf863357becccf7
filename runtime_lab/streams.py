"""A container's standard streams, as docker defines them: who reads its output, who writes
its input.

The container's processes never hold dockscope's own terminal or pipes. Their stdout and
stderr are pipes (or, with ``-t``, a pseudo-terminal allocated inside the container, whose
master side init passes up with SCM_RIGHTS), and the process that watches the container
(``dockscope run`` in the foreground, or a detached container's supervisor) relays them:

- always into ``container.log`` (docker's json-file format), so ``logs`` shows a foreground
  container's output too, streams that were not attached included;
- to the local terminal, for the streams attached (``-a``; by default stdout and stderr);
- to every ``dockscope attach`` client, over a unix socket in the container's directory.

Input goes the other way, only with ``-i`` (``OpenStdin``): without it the container's stdin
is ``/dev/null``, so nothing sent to it is delivered. A foreground ``run -i`` closes the
container's stdin when its own stdin ends (docker's ``StdinOnce``); a detached one keeps it
open for the next ``attach``.

Frames on the attach socket are docker's stdcopy header: one byte for the stream, three zero
bytes, the payload's length (big-endian, 4 bytes), the payload.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runtime_lab.kernel import linux

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ATTACH_SOCKET = "attach.sock"
HEADER = struct.Struct(">BxxxI")
STDIN, STDOUT, STDERR = 0, 1, 2
CLOSE_STDIN = 4  # client → container: its input ended
RESIZE = 5  # client → container: the terminal's size (rows, columns as two big-endian u16)
HELLO = 6  # client → container: {"stdin": bool, "stdout": bool, "stderr": bool} as JSON
EXIT = 7  # container → client: the exit status (big-endian i32); the connection then ends
STREAM_NAMES = {STDOUT: "stdout", STDERR: "stderr"}
_CHUNK = 65536
_BACKLOG = 1 << 20  # input not yet taken by the container: stop reading more until it drains
_CLIENT_BACKLOG = 4 << 20  # output a client has not read: beyond it the client is dropped
_DRAIN_SECONDS = 2.0  # after the shim exits, output still in flight is read this long at most
DETACH_KEYS = b"\x10\x11"  # Ctrl-P Ctrl-Q, docker's default


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Splits a byte stream into frames (a frame may arrive in pieces)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            kind, size = HEADER.unpack_from(self._buffer)
            if len(self._buffer) < HEADER.size + size:
                break
            frames.append((kind, self._buffer[HEADER.size : HEADER.size + size]))
            self._buffer = self._buffer[HEADER.size + size :]
        return frames


def _socket_path(directory_fd: int) -> str:
    # a unix socket's path is limited to 107 bytes, and a state root can be deep: reach the
    # container's directory through its descriptor instead
    return f"/proc/self/fd/{directory_fd}/{ATTACH_SOCKET}"


def listen(directory: Path) -> socket.socket:
    """The attach socket of a container (mode 0600 in its 0700 state root)."""
    with contextlib.suppress(FileNotFoundError):  # left by a watcher that was killed
        os.unlink(directory / ATTACH_SOCKET)
    directory_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(_socket_path(directory_fd))
        sock.listen(16)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
        os.close(directory_fd)
    sock.setblocking(False)
    return sock


def connect(directory: Path) -> socket.socket:
    directory_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(_socket_path(directory_fd))
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(directory_fd)
    return sock


class RawTerminal:
    """The local terminal in raw mode (cfmakeraw: no echo, no line editing, no signals from
    keys, no output processing) while a ``-it`` session runs; restored exactly afterwards."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None

    def enter(self) -> None:
        import termios
        import tty

        if self._saved is None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)

    def restore(self) -> None:
        import termios

        if self._saved is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None


@dataclass(slots=True)
class LocalStreams:
    """The foreground side of ``run`` or ``exec``: which of dockscope's own descriptors are
    attached to the container's streams."""

    stdin: int | None = None  # read and forwarded (``-a stdin`` with ``-i``)
    stdout: int | None = None
    stderr: int | None = None
    terminal: int | None = None  # with -it: put in raw mode, its size followed (SIGWINCH)


@dataclass(slots=True)
class StreamPipes:
    """A process's standard streams, both ends (a container's PID 1, an exec'd process):
    pipes, or with -t a terminal allocated on the container's side and passed up the console
    socket; stdin only with -i (else /dev/null)."""

    stdin_r: int | None
    stdin_w: int | None
    out_r: int | None
    out_w: int | None
    err_r: int | None
    err_w: int | None
    console: socket.socket | None  # dockscope's end of the console socket (-t)
    console_child: socket.socket | None

    @classmethod
    def open(cls, *, interactive: bool, tty: bool) -> StreamPipes:
        stdin_r, stdin_w = os.pipe() if interactive and not tty else (None, None)
        out_r, out_w = (None, None) if tty else os.pipe()
        err_r, err_w = (None, None) if tty else os.pipe()
        console, console_child = socket.socketpair() if tty else (None, None)
        return cls(stdin_r, stdin_w, out_r, out_w, err_r, err_w, console, console_child)

    @property
    def child_ends(self) -> tuple[int | None, int | None, int | None]:
        """The descriptors the child keeps (0, 1, 2 of the process; None where it has none)."""
        return self.stdin_r, self.out_w, self.err_w

    def close_child_ends(self) -> None:
        """In dockscope, once the child has its copies."""
        for fd in self.child_ends:
            if fd is not None:
                os.close(fd)
        if self.console_child is not None:
            self.console_child.close()


class _NonBlockingWriter:
    """Bytes for a descriptor that must not block the relay (the container's stdin, a client):
    written as far as it takes them, the rest kept until it is writable again."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""
        self.closing = False

    def push(self, data: bytes) -> None:
        self.pending += data

    def flush(self) -> bool:
        """Write what can be written now; False once the reader is gone."""
        while self.pending and self.fd >= 0:
            try:
                written = os.write(self.fd, self.pending[:_CHUNK])
            except BlockingIOError:
                return True
            except InterruptedError:
                continue
            except OSError:
                self.pending = b""
                return False
            self.pending = self.pending[written:]
        return True


@dataclass(eq=False)
class _Client:
    """One client attached to a container's streams."""

    sock: socket.socket
    reader: FrameReader = field(default_factory=FrameReader)
    outbox: bytes = b""
    greeted: bool = False
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False


class Hub:
    """The watcher's relay: trace events, the container's output (to the log, the local
    terminal and attach clients) and its input (from the local terminal and clients), until
    the container has ended and its output is read to the end."""

    def __init__(
        self,
        *,
        stdin: int | None,  # write end of the container's stdin pipe (None: no -i)
        stdout: int | None,  # read ends of its output pipes (None with a terminal)
        stderr: int | None,
        console: socket.socket | None,  # with -t: init sends the terminal's master here
        listener: socket.socket | None,
        log: Callable[[str, bytes], None] | None,
        local: LocalStreams | None,
        stdin_once: bool,
        tty: bool = False,
        open_stdin: bool = False,
    ) -> None:
        self._selector = selectors.DefaultSelector()
        self._registered: dict[int, int] = {}
        self._alive: set[int] = set()  # the loop runs while any of these is open
        self._handlers: dict[int, Callable[[int], None]] = {}
        self._tty = tty
        self._stdin: _NonBlockingWriter | None = None
        if stdin is not None:
            os.set_blocking(stdin, False)
            self._stdin = _NonBlockingWriter(stdin)
        elif tty and open_stdin:  # the terminal's master, once init has sent it
            self._stdin = _NonBlockingWriter(-1)
        self._outputs = {fd: name for fd, name in ((stdout, "stdout"), (stderr, "stderr")) if fd}
        self._console = console
        self._listener = listener
        self._log = log
        self.local = local or LocalStreams()
        self._stdin_once = stdin_once
        self.master: int | None = None
        self._clients: list[_Client] = []
        terminal = self.local.terminal
        self._terminal = RawTerminal(terminal) if terminal is not None else None
        self._deadline: float | None = None
        self._resize_handler: Any = None

    # -- the loop ---------------------------------------------------------------------------------
    def run(
        self,
        events_fd: int,
        on_events: Callable[[bytes], None],
        shim_pidfd: int | None = None,
        on_shim_exit: Callable[[], None] | None = None,
    ) -> None:
        def events(fd: int) -> None:
            chunk = self._read(fd)
            if chunk:
                on_events(chunk)

        def shim_exited(fd: int) -> None:
            self._drop(fd)
            os.close(fd)
            if on_shim_exit is not None:
                on_shim_exit()  # processes left in a shared PID namespace are killed here
            self._deadline = time.monotonic() + _DRAIN_SECONDS

        self._watch(events_fd, events, alive=True)
        for fd in self._outputs:
            self._watch(fd, self._output, alive=True)
        if self._console is not None:
            self._watch(self._console.fileno(), self._receive_master, alive=True)
        if self._listener is not None:
            self._watch(self._listener.fileno(), self._accept)
        if self.local.stdin is not None and self._stdin is not None:
            self._watch(self.local.stdin, self._local_input)
        if shim_pidfd is not None:
            self._watch(shim_pidfd, shim_exited)
        if self._terminal is not None:
            with contextlib.suppress(ValueError):  # not the main thread
                self._resize_handler = signal.signal(signal.SIGWINCH, self._follow_size)
        try:
            while self._alive:
                self._update()
                timeout = None
                if self._deadline is not None:
                    timeout = self._deadline - time.monotonic()
                    if timeout <= 0:
                        break  # the shim is gone; whatever still holds a pipe open is not read
                for key, mask in self._selector.select(timeout):
                    if key.fd not in self._handlers:
                        continue  # closed by an earlier handler in this round
                    if mask & selectors.EVENT_WRITE:
                        self._writable(key.fd)
                    if mask & selectors.EVENT_READ and key.fd in self._handlers:
                        self._handlers[key.fd](key.fd)
        finally:
            for fd in list(self._alive):
                self._drop(fd)
                if fd == self.master or (
                    self._console is not None and fd == self._console.fileno()
                ):
                    continue  # closed by finish()
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.restore_terminal()
            if self._resize_handler is not None:
                signal.signal(signal.SIGWINCH, self._resize_handler)

    def finish(self, exit_code: int | None) -> None:
        """The container has ended: tell the attach clients its status, and close
        everything that is left."""
        if self._listener is not None:
            self._drop(self._listener.fileno())
            self._listener.close()
        for client in list(self._clients):
            with contextlib.suppress(OSError):
                client.sock.setblocking(True)
                client.sock.settimeout(2.0)
                if exit_code is not None:
                    client.outbox += frame(EXIT, struct.pack(">i", exit_code))
                client.sock.sendall(client.outbox)
            self._close_client(client)
        if self._stdin is not None:
            if self._stdin.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._stdin.fd)
            self._stdin = None
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None
        if self._console is not None:
            self._console.close()
        self._selector.close()

    def enter_raw(self) -> None:
        """The container's command starts (with -it): the local terminal goes raw."""
        if self._terminal is not None:
            self._terminal.enter()

    def restore_terminal(self) -> None:
        if self._terminal is not None:
            self._terminal.restore()

    # -- registrations ----------------------------------------------------------------------------
    def _watch(self, fd: int, handler: Callable[[int], None], *, alive: bool = False) -> None:
        self._handlers[fd] = handler
        if alive:
            self._alive.add(fd)

    def _drop(self, fd: int) -> None:
        self._handlers.pop(fd, None)
        self._alive.discard(fd)
        if fd in self._registered:
            self._selector.unregister(fd)
            del self._registered[fd]

    def _update(self) -> None:
        """Register each descriptor for what it waits for now (input is not read while the
        container's stdin has a backlog; a sink with pending bytes waits to be writable)."""
        wanted: dict[int, int] = {}
        blocked = self._stdin is not None and len(self._stdin.pending) > _BACKLOG
        for fd in self._handlers:
            if blocked and (fd == self.local.stdin or self._client_of(fd) is not None):
                continue
            wanted[fd] = selectors.EVENT_READ
        if self._stdin is not None and self._stdin.pending and self._stdin.fd >= 0:
            wanted[self._stdin.fd] = wanted.get(self._stdin.fd, 0) | selectors.EVENT_WRITE
        for client in self._clients:
            if client.outbox:
                fd = client.sock.fileno()
                wanted[fd] = wanted.get(fd, 0) | selectors.EVENT_WRITE
        for fd in list(self._registered):
            if fd not in wanted:
                self._selector.unregister(fd)
                del self._registered[fd]
        for fd, events in wanted.items():
            if fd not in self._registered:
                self._selector.register(fd, events)
            elif self._registered[fd] != events:
                self._selector.modify(fd, events)
            self._registered[fd] = events

    def _writable(self, fd: int) -> None:
        if self._stdin is not None and fd == self._stdin.fd:
            self._flush_stdin()
            return
        client = self._client_of(fd)
        if client is not None:
            self._send(client)

    def _client_of(self, fd: int) -> _Client | None:
        return next((c for c in self._clients if c.sock.fileno() == fd), None)

    # -- output -----------------------------------------------------------------------------------
    def _read(self, fd: int) -> bytes:
        try:
            chunk = os.read(fd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: a terminal whose every slave is closed
                raise
            chunk = b""
        if not chunk:
            self._drop(fd)
            if fd != self.master:
                os.close(fd)
        return chunk

    def _output(self, fd: int) -> None:
        chunk = self._read(fd)
        if chunk:
            self._deliver(self._outputs.get(fd, "stdout"), chunk)

    def _deliver(self, stream: str, data: bytes) -> None:
        if self._log is not None:
            self._log(stream, data)
        local = self.local.stdout if stream == "stdout" else self.local.stderr
        if local is not None:
            try:
                _write_all(local, data)
            except OSError:  # a closed pipe (`| head`): the container goes on, unwatched here
                if stream == "stdout":
                    self.local.stdout = None
                else:
                    self.local.stderr = None
        kind = STDOUT if stream == "stdout" else STDERR
        for client in list(self._clients):
            if client.greeted and (client.stdout if kind == STDOUT else client.stderr):
                client.outbox += frame(kind, data)
                if len(client.outbox) > _CLIENT_BACKLOG:
                    self._close_client(client)  # too slow a reader: it is dropped
                else:
                    self._send(client)

    def _receive_master(self, fd: int) -> None:
        assert self._console is not None
        try:
            _, fds, _, _ = socket.recv_fds(self._console, 16, 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            fds = []
        if not fds:  # init has gone (or sent its terminal already): nothing more will come
            self._drop(fd)
            return
        for extra in fds[1:]:
            os.close(extra)
        self.master = fds[0]
        os.set_blocking(self.master, False)
        self._watch(self.master, self._output_master, alive=True)
        if self._stdin is not None:  # with -t, the terminal is the container's stdin
            self._stdin.fd = os.dup(self.master)
            os.set_blocking(self._stdin.fd, False)
            self._flush_stdin()  # what was typed before it came
        self._follow_size()

    def _output_master(self, fd: int) -> None:
        chunk = self._read(fd)
        if chunk:
            self._deliver("stdout", chunk)
        elif fd not in self._handlers:
            with contextlib.suppress(OSError):
                os.close(fd)
            self.master = None

    def _follow_size(self, *_: Any) -> None:
        if self.master is None or self.local.terminal is None:
            return
        size = linux.window_size(self.local.terminal)
        if size is not None and size != (0, 0):
            with contextlib.suppress(OSError):
                linux.set_window_size(self.master, *size)

    # -- input ------------------------------------------------------------------------------------
    def _local_input(self, fd: int) -> None:
        try:
            chunk = os.read(fd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if chunk:
            self._input(chunk)
            return
        self._drop(fd)  # local stdin ended (dockscope's own stdin: not closed here)
        if self._stdin_once:
            self._close_stdin()

    def _input(self, data: bytes) -> None:
        if self._stdin is None:
            return
        self._stdin.push(data)
        self._flush_stdin()

    def _flush_stdin(self) -> None:
        sink = self._stdin
        if sink is None:
            return
        if not sink.flush():  # nobody reads the container's stdin any more
            sink.pending = b""
        if sink.closing and not sink.pending:
            self._close_stdin()

    def _close_stdin(self) -> None:
        """StdinOnce: the container's stdin ends (EOF) once what was sent is taken. With a
        terminal there is no end to send: its input simply stops."""
        sink = self._stdin
        if sink is None or self._tty:
            return
        if sink.pending:
            sink.closing = True
            return
        with contextlib.suppress(OSError):
            os.close(sink.fd)
        self._stdin = None

    # -- attach clients ---------------------------------------------------------------------------
    def _accept(self, fd: int) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        client = _Client(sock)
        self._clients.append(client)
        self._watch(sock.fileno(), lambda _fd: self._from_client(client))

    def _from_client(self, client: _Client) -> None:
        try:
            chunk = client.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close_client(client)
            return
        for kind, payload in client.reader.feed(chunk):
            if kind == HELLO:
                try:
                    wanted = json.loads(payload)
                except ValueError:
                    wanted = {}
                client.stdin = bool(wanted.get("stdin"))
                client.stdout = bool(wanted.get("stdout", True))
                client.stderr = bool(wanted.get("stderr", True))
                client.greeted = True
            elif kind == STDIN and client.stdin:
                self._input(payload)
            elif kind == CLOSE_STDIN and client.stdin:
                if self._stdin_once:  # run -i: the container's stdin ends with this one
                    self._close_stdin()
                else:  # the container's stdin stays open for others: this session ends
                    self._close_client(client)  # (as docker's attach closes its output)
                    return
            elif kind == RESIZE and self.master is not None and len(payload) == 4:
                with contextlib.suppress(OSError):
                    linux.set_window_size(self.master, *struct.unpack(">HH", payload))

    def _send(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_client(client)
            return
        client.outbox = client.outbox[sent:]

    def _close_client(self, client: _Client) -> None:
        if client in self._clients:
            self._clients.remove(client)
        self._drop(client.sock.fileno())
        client.sock.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:  # a non-blocking terminal: wait until it takes more
            selectors.DefaultSelector().select(0.05)
            continue
        view = view[written:]


# -- the attach client ----------------------------------------------------------------------------


@dataclass(slots=True)
class AttachResult:
    """How an attach ended."""

    exit_code: int | None  # None: detached (Ctrl-P Ctrl-Q) or the connection ended early
    detached: bool = False


def attach(
    directory: Path,
    *,
    stdin: int | None,
    stdout: int,
    stderr: int,
    tty: bool,
    detach_keys: bytes = DETACH_KEYS,
) -> AttachResult:
    """``dockscope attach``: relay this terminal to a running container through its attach
    socket until the container exits (its status is returned) or Ctrl-P Ctrl-Q detaches."""
    sock = connect(directory)
    terminal = RawTerminal(stdin) if tty and stdin is not None and os.isatty(stdin) else None
    hello = {"stdin": stdin is not None, "stdout": True, "stderr": True}
    reader = FrameReader()
    outputs = {STDOUT: stdout, STDERR: stderr}
    selector = selectors.DefaultSelector()
    previous: Any = None

    def resize(*_: Any) -> None:
        size = linux.window_size(stdin) if stdin is not None else None
        if size is not None and size != (0, 0):
            with contextlib.suppress(OSError):
                sock.sendall(frame(RESIZE, struct.pack(">HH", *size)))

    try:
        sock.sendall(frame(HELLO, json.dumps(hello).encode()))
        selector.register(sock, selectors.EVENT_READ, "socket")
        if stdin is not None:
            selector.register(stdin, selectors.EVENT_READ, "stdin")
        if terminal is not None:
            terminal.enter()
            resize()
            with contextlib.suppress(ValueError):
                previous = signal.signal(signal.SIGWINCH, resize)
        escape = b""
        while True:
            for key, _ in selector.select():
                if key.data == "stdin":
                    assert stdin is not None
                    data = os.read(stdin, _CHUNK)
                    if not data:
                        selector.unregister(stdin)
                        sock.sendall(frame(CLOSE_STDIN))
                        continue
                    if terminal is not None and detach_keys:
                        data, escape, detached = _scan_escape(escape, data, detach_keys)
                        if data:
                            sock.sendall(frame(STDIN, data))
                        if detached:
                            return AttachResult(None, detached=True)
                        continue
                    sock.sendall(frame(STDIN, data))
                    continue
                chunk = sock.recv(_CHUNK)
                if not chunk:
                    return AttachResult(None)
                for kind, payload in reader.feed(chunk):
                    if kind == EXIT:
                        return AttachResult(struct.unpack(">i", payload)[0])
                    if kind in outputs:
                        _write_all(outputs[kind], payload)
    finally:
        if terminal is not None:
            terminal.restore()
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
        selector.close()
        sock.close()


def _scan_escape(held: bytes, data: bytes, keys: bytes) -> tuple[bytes, bytes, bool]:
    """Find the detach sequence in typed input: (bytes to send, bytes held back because they
    may start the sequence, whether it was typed)."""
    buffer = held + data
    index = buffer.find(keys)
    if index >= 0:
        return buffer[:index], b"", True
    for keep in range(min(len(keys) - 1, len(buffer)), 0, -1):
        if keys.startswith(buffer[-keep:]):
            return buffer[:-keep], buffer[-keep:], False
    return buffer, b"", False
