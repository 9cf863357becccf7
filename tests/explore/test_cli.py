"""``dockscope explore`` on the command line: its errors, its lazy import, and the real
command in a real terminal (tmux)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import invoke
from tests.support.paths import REPO


def test_help_shows_examples() -> None:
    code, out, _ = invoke("explore", "-h")
    assert code == 0
    assert "dockscope explore old.tar new.tar" in out and "--trace" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "missing argument IMAGE"),
        (("--trace", "t.jsonl", "image.tar"), "--trace FILE opens a trace: give no IMAGE"),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], message: str) -> None:
    code, _, err = invoke("explore", *args)
    assert code == 2
    assert err.strip().count("\n") == 0 and message in err


def test_needs_a_terminal(corpus_copy) -> None:  # type: ignore[no-untyped-def]
    code, _, err = invoke("explore", str(corpus_copy("docker-save-v25-hello-world.tar")))
    assert (code, err.strip()) == (
        2,
        "dockscope: explore: it is interactive: run it in a terminal",
    )


def test_bad_input_is_named_before_the_screen_opens(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not an image")
    code, _, err = invoke("explore", str(bad))
    assert code == 3 and err.startswith(f"dockscope: {bad}") and "Traceback" not in err
    trace = tmp_path / "trace.jsonl"
    trace.write_text("{}\n")
    code, _, err = invoke("explore", "--trace", str(trace))
    assert code == 3 and err.strip() == f"dockscope: {trace}: line 1: 'step' is not a string"


def test_other_commands_never_load_textual() -> None:
    code = (
        "import sys; from inspect_tool.cli import build_app; build_app(); "
        "build_app('explore'); print(sorted(m for m in sys.modules "
        "if m.split('.')[0] == 'textual' or m.startswith('inspect_tool.explore')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"


# -- the real command in a real terminal ---------------------------------------------------------


class Tmux:
    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def run(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=True
        )
        return result.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "explore")

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen:\n{screen}")
            time.sleep(0.2)

    def wait_until_gone(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text in self.screen():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} is still on the screen")
            time.sleep(0.2)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", "explore", key)
            time.sleep(0.15)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: apt-get install tmux (make debs-test)")
    session = Tmux(tmp_path / "tmux.sock")
    yield session
    subprocess.run(["tmux", "-S", str(session.socket), "kill-server"], capture_output=True)


def test_explore_in_a_real_terminal(tmux: Tmux, corpus_copy) -> None:  # type: ignore[no-untyped-def]
    image = corpus_copy("docker-save-legacy-dive.tar")
    command = f"cd {REPO} && {sys.executable} -m inspect_tool explore {image}"
    tmux.run(
        "new-session", "-d", "-s", "explore", "-x", "80", "-y", "24",
        "-e", "TERM=xterm-256color", "sh", "-c", command + "; sleep 30",
    )  # fmt: skip
    screen = tmux.wait_for("Efficiency: 98.4421 %")
    lines = screen.splitlines()
    assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
    assert "after layer 0" in screen and "ADD file:ce" in screen
    tmux.keys("Down", "Down", "Down", "Down")  # layer 4: chmod 444 /root/example/somefile1.txt
    tmux.wait_for("after layer 4")
    tmux.keys("Tab", "a")  # the tree, this layer's changes only
    tmux.wait_for("layer 4 only")
    tmux.keys("Space", "Down", "Space")  # /root (the only entry left) open, then example/
    screen = tmux.wait_for("somefile1")
    assert "~ -r--r--r--" in screen
    tmux.keys("Down", "Enter")  # the file's content
    tmux.wait_for("after layer 4 (6.4 kB)")
    tmux.keys("q")  # closes the viewer (Escape too, but ESC then a key reads as Alt+key)
    tmux.wait_until_gone("h Text/hex")
    tmux.keys("?")
    tmux.wait_for("Keys (the footer shows the most used)")
    tmux.keys("q")
    tmux.wait_until_gone("Keys (the footer")
    tmux.keys("q")
    tmux.wait_until_gone("Layer details")


@pytest.mark.parametrize("show", [False, True], ids=["redacted", "show-secrets"])
def test_packages_and_secrets_in_a_real_terminal(tmux: Tmux, tmp_path: Path, show: bool) -> None:
    from tests.explore.images import TOKEN, inventory

    image = inventory(tmp_path / "inventory.tar")
    flag = " --show-secrets" if show else ""
    command = f"cd {REPO} && {sys.executable} -m inspect_tool explore{flag} {image}"
    tmux.run(
        "new-session", "-d", "-s", "explore", "-x", "80", "-y", "24",
        "-e", "TERM=xterm-256color", "sh", "-c", command + "; sleep 30",
    )  # fmt: skip
    tmux.wait_for("Efficiency:")
    tmux.keys("S")
    screen = tmux.wait_for("dotenv-secret")
    assert "deleted by L2" in screen and "/srv/.env:2" in screen
    # whole, the token runs past 80 columns (the table scrolls sideways)
    assert (TOKEN[:16] in screen) is show and ("ghp_********" in screen) is not show
    tmux.keys("q", "p")
    screen = tmux.wait_for("libtiny1")
    assert "L1 upgraded from 1.4-1" in screen
    tmux.keys("Enter")  # hello, the first row: its files in the tree after layer 0
    screen = tmux.wait_for("files of hello 2.10-3")
    assert "hello" in screen and "var/" not in screen
    tmux.keys("q")
    tmux.wait_until_gone("Layer details")


def test_trace_in_a_real_terminal(tmux: Tmux, tmp_path: Path) -> None:
    import json

    steps = [
        {"step": "unshare", "title": "Unshare the namespaces", "explanation": "own views",
         "syscall": "unshare", "args": {"flags": "CLONE_NEWNS"}, "result": "ok", "evidence": {},
         "pid": 4242, "host_pid": None, "time": 5.0, "phase": "done"},
        {"step": "exec", "title": "Execute the command", "explanation": "the program runs",
         "syscall": "execve", "args": {"argv": ["true"]}, "result": "ok", "evidence": {},
         "pid": 1, "host_pid": 4243, "time": 5.5, "phase": "done"},
    ]  # fmt: skip
    trace = tmp_path / "run.jsonl"
    trace.write_text("".join(json.dumps(s) + "\n" for s in steps))
    command = f"cd {REPO} && {sys.executable} -m inspect_tool explore --trace {trace}"
    tmux.run(
        "new-session", "-d", "-s", "explore", "-x", "80", "-y", "24",
        "-e", "TERM=xterm-256color", "sh", "-c", command + "; sleep 30",
    )  # fmt: skip
    screen = tmux.wait_for("Execute the command")
    assert "0.500" in screen and "step: unshare" in screen
    tmux.keys("Down")
    tmux.wait_for('args.argv: ["true"]')
    tmux.keys("q")
    tmux.wait_until_gone("Execute the command")
