"""Streams and terminals as docker defines them, as root: what is attached by default, ``-a``,
``-i`` (stdin closed without it), ``-t`` (a terminal from the container's own devpts, driven
here through a real pseudo-terminal: raw mode, window size, Ctrl-C, the exit status, the
terminal restored), ``-d`` with ``-a``, and ``dockscope attach``."""

from __future__ import annotations

import json
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.support.cli import DOCKSCOPE, dockscope, env_for, ok
from tests.support.runtime import (
    container_ids,
    events,
    needs_root,
    ps,
    pty_session,
    step,
    wait_until,
)

pytestmark = needs_root

RAW_OFF = termios.ICANON | termios.ECHO | termios.ISIG  # the bits raw mode clears


def test_default_attaches_stdout_and_stderr_and_stdin_is_closed(
    root: Path, busybox_image: Path
) -> None:
    script = "echo out; echo err >&2; cat; echo cat=$?; ls -l /proc/self/fd/0"
    result = dockscope(root, "run", "--rm", busybox_image, "sh", "-c", script, input="typed\n")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[:2] == ["out", "cat=0"]  # cat read nothing: its stdin is /dev/null
    assert lines[2].endswith("/proc/self/fd/0 -> /dev/null")
    assert result.err == "err\n"


def test_interactive_delivers_stdin_and_its_end(root: Path, busybox_image: Path) -> None:
    result = dockscope(
        root, "run", "--rm", "-i", busybox_image, "sh", "-c", "cat; echo end", input="a\nb"
    )
    assert (result.code, result.out) == (0, "a\nbend\n")  # EOF reached the container


def test_attach_stdin_without_interactive_delivers_nothing(root: Path, busybox_image: Path) -> None:
    result = dockscope(
        root, "run", "--rm", "-a", "stdin", "-a", "stdout", busybox_image, "cat", input="x"
    )
    assert (result.code, result.out, result.err) == (0, "", "")


def test_attach_chooses_the_streams_and_the_log_keeps_them_all(
    root: Path, busybox_image: Path
) -> None:
    script = "echo out; echo err >&2; printf partial"
    result = dockscope(
        root, "run", "--name", "only-out", "-a", "STDOUT", busybox_image, "sh", "-c", script
    )
    assert (result.code, result.out, result.err) == (0, "out\npartial", "")
    logs = dockscope(root, "logs", "only-out")  # a foreground container logs too, as with docker
    assert (logs.out, logs.err) == ("out\npartial", "err\n")
    log = root / "containers" / ps(root)["only-out"]["id"] / "container.log"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["stream"], r["log"]) for r in records] == [
        ("stdout", "out\n"),
        ("stderr", "err\n"),
        ("stdout", "partial"),  # an unfinished last line, without its newline
    ]
    ok(dockscope(root, "rm", "only-out"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-d", "-a", "stdout"), "conflicting options: -a and -d"),
        (("-a", "stdn"), "-a stdn: attach stdin, stdout or stderr"),
        (("-it",), "the input device is not a TTY"),
    ],
)
def test_stream_options_refused(
    root: Path, busybox_image: Path, args: tuple[str, ...], message: str
) -> None:
    before = container_ids(root)
    result = dockscope(root, "run", "--rm", *args, busybox_image, "true")
    assert result.code == 2
    assert message in result.err
    assert container_ids(root) == before


def test_tty_without_a_terminal_still_gives_the_container_one(
    root: Path, busybox_image: Path
) -> None:
    trace = root.parent / "tty.jsonl"
    script = "tty; test -t 0 && test -t 1 && test -t 2 && echo all-terminals"
    result = dockscope(
        root, "run", "--rm", "-t", "--trace-json", trace, busybox_image, "sh", "-c", script
    )
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["/dev/pts/0", "all-terminals"]
    assert result.err == ""  # one terminal: stderr comes out as stdout
    evidence = step(events(trace), "tty")["evidence"]
    assert evidence["terminal"] == "/dev/pts/0"
    assert evidence["console"] == "/dev/console"


def test_tty_sets_term_as_docker_does(root: Path, busybox_image: Path) -> None:
    """docker: -t sets TERM=xterm unless the image or -e sets it; exec -t likewise."""
    show = ("sh", "-c", 'echo "TERM=${TERM-unset}"')
    assert ok(dockscope(root, "run", "--rm", "-t", busybox_image, *show)).splitlines() == [
        "TERM=xterm"
    ]
    assert ok(dockscope(root, "run", "--rm", busybox_image, *show)) == "TERM=unset\n"
    given = dockscope(root, "run", "--rm", "-t", "-e", "TERM=vt100", busybox_image, *show)
    assert ok(given).splitlines() == ["TERM=vt100"]
    ok(dockscope(root, "run", "-d", "--name", "termless", busybox_image, "sleep", "60"))
    try:
        assert ok(dockscope(root, "exec", "termless", *show)) == "TERM=unset\n"
        assert ok(dockscope(root, "exec", "-t", "termless", *show)).splitlines() == ["TERM=xterm"]
    finally:
        ok(dockscope(root, "rm", "-f", "termless"))


def test_interactive_terminal_session(root: Path, busybox_image: Path) -> None:
    """``run -it IMAGE sh`` at a terminal: a prompt, the terminal raw while the session runs
    (keys go to the container's terminal: Ctrl-C interrupts the command there, not dockscope),
    the window size passed through and followed, the exit status, the terminal restored."""
    session = pty_session(root, "run", "--rm", "-it", busybox_image, "sh", rows=33, columns=101)
    try:
        cooked = session.local_mode()
        assert cooked & RAW_OFF == RAW_OFF
        session.expect(b"/ # ")
        assert session.local_mode() & RAW_OFF == 0  # raw: no echo, no line editing, no signals
        # each command ends with a marker the echo of the typed line does not contain
        session.send(b"echo pid=$$; tty; stty size; ls -l /dev/pts/0 /dev/console; echo m$((1))\n")
        screen = session.expect(b"m1\r\n").decode()
        assert "pid=1\r\n/dev/pts/0\r\n33 101\r\n" in screen
        assert screen.count("136,") == 2  # /dev/console is the terminal too
        session.resize(40, 120)
        time.sleep(0.2)  # SIGWINCH reaches dockscope, which sets the container's terminal
        session.send(b"stty size; echo m$((2))\n")
        assert "40 120\r\n" in session.expect(b"m2\r\n").decode()
        session.send(b"sleep 30\n")
        session.expect(b"sleep 30")
        time.sleep(0.3)
        session.send(b"\x03")  # Ctrl-C: SIGINT for the foreground job of the container's tty
        session.expect(b"^C")
        session.send(b"echo status=$? m$((3))\n")  # the shell (and dockscope) go on
        assert "status=130 m3\r\n" in session.expect(b"m3\r\n").decode()
        session.send(b"exit 3\n")
        assert session.wait() == 3
        assert session.local_mode() == cooked  # the terminal as it was
    finally:
        session.close()
    assert container_ids(root) == []


def test_attach_to_a_detached_interactive_container(root: Path, busybox_image: Path) -> None:
    ok(dockscope(root, "run", "-d", "-i", "--name", "waiting", busybox_image, "sh"))
    # the attach's input ends: its session ends, the container's stdin stays open (docker's
    # StdinOnce is for run -i only)
    assert ok(dockscope(root, "attach", "waiting", input="echo one\necho two >&2\n")) in (
        "",
        "one\n",
    )
    assert ps(root)["waiting"]["status"] == "running"
    attached = subprocess.Popen(
        [*DOCKSCOPE, "attach", "waiting"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(root),
    )
    assert attached.stdin is not None
    attached.stdin.write(b"echo three; exit 7\n")
    attached.stdin.flush()
    assert attached.wait(timeout=20) == 7  # the container's exit status
    out, _ = attached.communicate()
    assert out == b"three\n"
    assert ps(root)["waiting"]["exit_code"] == 7
    logs = dockscope(root, "logs", "waiting")
    assert (logs.out, logs.err) == ("one\nthree\n", "two\n")
    gone = dockscope(root, "attach", "waiting")
    assert gone.code == 2 and "is not running" in gone.err
    ok(dockscope(root, "rm", "waiting"))


def test_attach_to_a_terminal_and_detach_with_ctrl_p_ctrl_q(
    root: Path, busybox_image: Path
) -> None:
    ok(dockscope(root, "run", "-dit", "--name", "term", busybox_image, "sh"))
    session = pty_session(root, "attach", "term", rows=20, columns=70)
    try:
        session.send(b"stty size; echo pid=$$ m$((1))\n")
        assert "20 70\r\npid=1 m1\r\n" in session.expect(b"m1\r\n").decode()
        session.send(b"\x10\x11")  # Ctrl-P Ctrl-Q
        assert session.wait() == 0
        assert b"read escape sequence" in session.seen
    finally:
        session.close()
    assert ps(root)["term"]["status"] == "running"
    again = pty_session(root, "attach", "term")
    try:
        again.send(b"exit 4\n")
        assert again.wait() == 4
    finally:
        again.close()
    wait_until(lambda: ps(root)["term"]["status"] == "exited", what="the container to end")
    ok(dockscope(root, "rm", "term"))
