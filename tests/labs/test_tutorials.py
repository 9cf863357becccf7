"""The classroom labs in tutorials/ run exactly as written, so a lab never goes stale.

Every ```console block of a lab is parsed: a line ``$ COMMAND`` is typed into one bash that
lives for the whole lab (so ``cd``, variables and files carry over from step to step, as in
a student's terminal), and what the command prints (stdout and stderr together, as a
terminal shows them) must match the lines below it. The convention, documented for
instructors in tutorials/README.md:

- ``...`` inside a line matches any text within that line (IDs, times, PIDs, inodes);
- a line that is only ``...`` matches any number of lines, none included;
- trailing spaces and trailing empty lines are not compared;
- a command must exit 0: one that is meant to fail shows it, ``cmd; echo "exit $?"``;
- ``> `` lines after a ``$`` line continue a command that is not complete yet
  (a trailing backslash, an open quote, a here-document);
- ``<!-- lab: ... -->`` on the line before a block: ``enter`` presses Enter at every pause
  (stdin is a stream of newlines; otherwise stdin is empty); ``cgroup-v1`` runs the
  block only where cgroup v1 is mounted (elsewhere it is reported as skipped).
  ``<!-- lab: root -->`` near the top of a lab: it runs containers (needs root);
  ``<!-- lab: session-setup -->`` marks the block of tutorials/README.md that every lab
  runs first, in the checkout.

A mismatch names the lab file, the block and the line. Run one lab by hand, printing
every command's actual output (for writing a lab, or checking a classroom machine):

    .venv/bin/python -m tests.labs.test_tutorials tutorials/04-container.md
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.paths import REPO

TUTORIALS = REPO / "tutorials"
README = TUTORIALS / "README.md"
LABS = sorted(TUTORIALS.glob("[0-9][0-9]-*.md"))
BUSYBOX_IMAGE = REPO / "sample_images" / "busybox.tar"

SECTIONS = [
    "Goal",
    "Background",
    "Set-up",
    "Steps",
    "Questions",
    "Check your work",
    "Instructor notes",
]
COMMAND_TIMEOUT = 60.0  # seconds for one command; a lab's whole run is far below
ENTER = "\n" * 1000  # Enter, as often as a command asks
ANNOTATION = re.compile(r"^<!--\s*lab:\s*(.*?)\s*-->\s*$")
BLOCK_WORDS = {"enter", "cgroup-v1", "session-setup"}
FILE_WORDS = {"root"}


# -- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    text: str  # what is typed (continuation lines joined by newlines)
    line: int  # 1-based line of the `$ ` line in the file
    expected: tuple[str, ...]
    expected_line: int  # line of the first expected output line


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # line of the opening fence
    words: frozenset[str]
    commands: tuple[Command, ...]


@dataclass(frozen=True)
class Lab:
    path: Path
    words: frozenset[str]  # file-level annotations
    blocks: tuple[Block, ...]


class LabSyntaxError(Exception):
    pass


def _annotation_words(line: str) -> set[str] | None:
    match = ANNOTATION.match(line.strip())
    if not match:
        return None
    return set(match.group(1).split())


def _incomplete(command: str) -> bool:
    """True when bash would wait for more input (backslash, open quote, here-document)."""
    if command.endswith("\\"):
        return True
    check = subprocess.run(
        ["bash", "-n"], input=command + "\n", capture_output=True, text=True, check=False
    )
    # an open quote or compound command is an error; an open here-document only a warning
    return any(
        words in check.stderr for words in ("unexpected EOF", "end of file", "here-document")
    )


def parse(path: Path) -> Lab:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    file_words: set[str] = set()
    pending: set[str] = set()
    where = _display(path)
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        words = _annotation_words(line)
        if words is not None:
            unknown = words - BLOCK_WORDS - FILE_WORDS
            if unknown:
                raise LabSyntaxError(f"{where}:{number}: unknown lab annotation {sorted(unknown)}")
            file_words |= words & FILE_WORDS
            pending = words & BLOCK_WORDS
            continue
        if line.strip() == "```console":
            start = number
            indent = len(line) - len(line.lstrip(" "))  # a block inside a list item
            body: list[tuple[int, str]] = []
            while number < len(lines) and lines[number].strip() != "```":
                text = lines[number]
                body.append((number + 1, text[min(indent, len(text) - len(text.lstrip(" "))) :]))
                number += 1
            if number == len(lines):
                raise LabSyntaxError(f"{where}:{start}: console block never closed")
            number += 1
            blocks.append(Block(path, start, frozenset(pending), _commands(where, body)))
            pending = set()
        elif line.strip():
            pending = set()
    return Lab(path, frozenset(file_words), tuple(blocks))


def _commands(where: str, body: list[tuple[int, str]]) -> tuple[Command, ...]:
    commands: list[Command] = []
    index = 0
    while index < len(body):
        number, line = body[index]
        if not line.startswith("$ "):
            raise LabSyntaxError(f"{where}:{number}: output before any `$ ` command: {line!r}")
        text = line[2:]
        index += 1
        while (
            index < len(body)
            and (body[index][1] == ">" or body[index][1].startswith("> "))
            and _incomplete(text)
        ):
            text += "\n" + body[index][1][2:]
            index += 1
        if _incomplete(text):
            raise LabSyntaxError(
                f"{where}:{number}: the command is not complete (an open quote, a missing"
                f" `> ` line?): {text!r}"
            )
        expected_line = body[index][0] if index < len(body) else number + 1
        expected: list[str] = []
        while index < len(body) and not body[index][1].startswith("$ "):
            expected.append(body[index][1])
            index += 1
        commands.append(Command(text, number, tuple(expected), expected_line))
    return tuple(commands)


# -- matching --------------------------------------------------------------------------------


def _normalise(lines: list[str] | tuple[str, ...]) -> list[str]:
    out = [line.rstrip() for line in lines]
    while out and not out[-1]:
        out.pop()
    return out


@functools.lru_cache(maxsize=4096)
def _line_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("...")), re.DOTALL)


def _line_matches(pattern: str, text: str) -> bool:
    if "..." not in pattern:
        return pattern == text
    return _line_pattern(pattern).fullmatch(text) is not None


@dataclass
class Mismatch:
    expected_index: int  # index into the expected lines of the first line that fails
    actual_index: int  # index into the actual lines where it was tried


def match(expected: list[str] | tuple[str, ...], actual: list[str]) -> Mismatch | None:
    """None when ``actual`` matches ``expected`` under the convention, else where it fails
    (the furthest any alignment got)."""
    want = _normalise(expected)
    got = _normalise(actual)
    best = Mismatch(0, 0)

    @functools.cache
    def from_(i: int, j: int) -> bool:
        if (i, j) > (best.expected_index, best.actual_index):
            best.expected_index, best.actual_index = i, j
        if i == len(want):
            return j == len(got)
        if want[i].strip() == "...":
            return any(from_(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and _line_matches(want[i], got[j]) and from_(i + 1, j + 1)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * (len(want) + len(got)) + 100))
    return None if from_(0, 0) else best


# -- running ---------------------------------------------------------------------------------


class ShellDied(Exception):
    pass


class Shell:
    """One bash for a whole lab; each command's output goes to a file, a marker line on
    the shell's own stdout says it finished and with which status."""

    def __init__(self, cwd: Path, env: dict[str, str], scratch: Path) -> None:
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        (scratch / "enter").write_text(ENTER)
        (scratch / "nothing").write_text("")  # stdin as from /dev/null, whatever the host's is
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,  # no controlling terminal: --step reads stdin
        )
        self.count = 0

    def run(self, command: str, *, enter: bool, timeout: float) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.count += 1
        out = self.scratch / f"out.{self.count}"
        stdin = self.scratch / ("enter" if enter else "nothing")
        token = secrets.token_hex(8)
        script = (
            f"{{ {command}\n}} >{shlex.quote(str(out))} 2>&1 <{shlex.quote(str(stdin))}\n"
            f"printf '\\n{token} %d\\n' \"$?\"\n"
        )
        try:
            self.proc.stdin.write(script.encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ShellDied(self._read(out)) from None
        noise = b""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        status_line = re.compile(rb"\n" + token.encode() + rb" (\d+)\n")
        while True:
            found = status_line.search(noise)
            if found:
                extra = noise[: found.start()].decode(errors="replace")
                return int(found.group(1)), extra + self._read(out)
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise TimeoutError(self._read(out))
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise ShellDied(noise.decode(errors="replace") + self._read(out))
                noise += chunk

    def _read(self, path: Path) -> str:
        try:
            return path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class Outcome:
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    commands: int = 0
    transcript: list[str] = field(default_factory=list)


def cgroup_v1() -> bool:
    return Path("/sys/fs/cgroup/memory").is_dir()


def lab_environment(tmp: Path) -> dict[str, str]:
    """What a fresh root shell has, before tutorials/README.md's set-up: nothing of the
    environment pytest runs in leaks in (DOCKSCOPE_ROOT, COLUMNS, colours)."""
    (tmp / "home").mkdir(parents=True, exist_ok=True)
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    env = {
        # the project's dockscope first, whichever venv pytest runs in
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp / "home"),
        "TMPDIR": str(tmp / "tmp"),
        "LANG": "C.UTF-8",
        # stdout and stderr interleave as on a terminal (a pipe would buffer stdout)
        "PYTHONUNBUFFERED": "1",
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def _quote_output(lines: list[str], limit: int = 60) -> str:
    shown = [f"    | {line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"    | … ({len(lines) - limit} more lines)")
    return "\n".join(shown) if shown else "    | (no output)"


def _check(block: Block, command: Command, status: int, output: str) -> str | None:
    where = _display(block.path)
    head = f"{where}:{command.line}: `{command.text.splitlines()[0]}` (block at line {block.line})"
    actual = output.splitlines()
    if status != 0:
        return (
            f"{head}\n  exited with status {status}; a command meant to fail shows it "
            f'(`; echo "exit $?"`)\n  output:\n{_quote_output(_normalise(actual))}'
        )
    mismatch = match(command.expected, actual)
    if mismatch is None:
        return None
    want = _normalise(command.expected)
    got = _normalise(actual)
    if mismatch.expected_index < len(want):
        line = command.expected_line + mismatch.expected_index
        wanted = f"line {line} expects {want[mismatch.expected_index]!r}"
    else:
        wanted = "the expected output ends here"
    if mismatch.actual_index < len(got):
        seen = f"output line {mismatch.actual_index + 1} is {got[mismatch.actual_index]!r}"
    else:
        seen = "the output ends here"
    return f"{head}\n  {wanted}\n  but {seen}\n  output:\n{_quote_output(got)}"


def run_blocks(
    shell: Shell,
    blocks: tuple[Block, ...],
    outcome: Outcome,
    *,
    verbose: bool = False,
    timeout: float = COMMAND_TIMEOUT,
) -> bool:
    """Run the blocks' commands in order; False when the lab cannot go on (timeout, shell
    died)."""
    for block in blocks:
        if "cgroup-v1" in block.words and not cgroup_v1():
            outcome.skipped.append(
                f"{_display(block.path)}:{block.line}: cgroup v1 only, this host has v2"
            )
            continue
        for command in block.commands:
            outcome.commands += 1
            started = time.monotonic()
            try:
                status, output = shell.run(
                    command.text, enter="enter" in block.words, timeout=timeout
                )
            except TimeoutError as exc:
                outcome.failures.append(
                    f"{_display(block.path)}:{command.line}: `{command.text}` did not finish "
                    f"within {timeout:g} s\n  output:\n"
                    f"{_quote_output(str(exc).splitlines())}"
                )
                return False
            except ShellDied as exc:
                outcome.failures.append(
                    f"{_display(block.path)}:{command.line}: the shell died running "
                    f"`{command.text}`\n  output:\n{_quote_output(str(exc).splitlines())}"
                )
                return False
            failure = _check(block, command, status, output)
            if failure:
                outcome.failures.append(failure)
            if verbose:
                mark = "FAIL" if failure else "ok"
                elapsed = time.monotonic() - started
                outcome.transcript.append(
                    f"--- {mark} {_display(block.path)}:{command.line} ({elapsed:.2f} s)\n"
                    f"$ {command.text}\n{output.rstrip()}"
                )
    return True


def session_setup() -> tuple[Block, ...]:
    blocks = tuple(b for b in parse(README).blocks if "session-setup" in b.words)
    if len(blocks) != 1:
        raise LabSyntaxError(f"{_display(README)}: exactly one session-setup block, not {blocks}")
    return blocks


def run_lab(lab: Lab, tmp: Path, *, verbose: bool = False) -> Outcome:
    """tutorials/README.md's session set-up (in the checkout), then the lab's blocks."""
    outcome = Outcome()
    shell = Shell(REPO, lab_environment(tmp), tmp / ".shell")
    try:
        if run_blocks(shell, session_setup(), outcome, verbose=verbose):
            run_blocks(shell, lab.blocks, outcome, verbose=verbose)
    finally:
        shell.close()
        outcome.failures += _leftovers(tmp)
    return outcome


def _state_roots(tmp: Path) -> Iterator[Path]:
    """DOCKSCOPE_ROOT of each lab: somewhere below $TMPDIR (the labs live in $LABS)."""
    for depth in range(1, 5):
        for containers in tmp.glob("tmp/" + "*/" * depth + "containers"):
            if containers.is_dir():
                yield containers.parent


def _leftovers(tmp: Path) -> list[str]:
    """A lab ends with nothing running and nothing mounted; whatever a failed lab left is
    removed all the same."""
    problems = []
    for root in _state_roots(tmp):
        env = dict(lab_environment(tmp), DOCKSCOPE_ROOT=str(root), NO_COLOR="1")

        def dockscope(*args: str, env: dict[str, str] = env) -> str:
            return subprocess.run(
                [sys.executable, "-m", "inspect_tool", *args],
                capture_output=True,
                text=True,
                env=env,
                check=False,
                timeout=60,
            ).stdout

        listed = json.loads(dockscope("ps", "--json") or '{"containers": []}')
        running = [c["name"] for c in listed["containers"] if c["status"] == "running"]
        if running:
            problems.append(f"{root}: containers still running at the end: {running}")
        for container in sorted((root / "containers").iterdir()):
            dockscope("rm", "-f", container.name)
        dockscope("cleanup")
    with open("/proc/self/mountinfo") as mountinfo:
        mounts = [line for line in mountinfo if str(tmp) in line]
    if mounts:
        problems.append(f"mounts left below {tmp}: {mounts}")
    return problems


def _report(outcome: Outcome) -> str:
    return "\n\n".join(outcome.failures)


# -- tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def busybox_tar() -> Path:
    """sample_images/busybox.tar, built as `make` builds it when missing."""
    if not BUSYBOX_IMAGE.is_file():
        if not Path("/bin/busybox").is_file():
            pytest.fail("/bin/busybox is missing: apt-get install busybox-static")
        subprocess.run(
            [
                sys.executable,
                REPO / "sample_images" / "make_samples.py",
                "--busybox",
                BUSYBOX_IMAGE,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return BUSYBOX_IMAGE


def _needs_root(path: Path) -> bool:
    return any(
        (_annotation_words(line) or set()) & {"root"} for line in path.read_text().splitlines()
    )


LAB_PARAMS = [
    pytest.param(path, id=path.stem, marks=[pytest.mark.root] if _needs_root(path) else [])
    for path in LABS
]


@pytest.mark.parametrize("path", LAB_PARAMS)
def test_lab_runs_as_written(path: Path, tmp_path: Path, busybox_tar: Path) -> None:
    lab = parse(path)
    if "root" in lab.words and os.geteuid() != 0:
        pytest.skip("the lab runs containers: root only (CI runs as root)")
    outcome = run_lab(lab, tmp_path)
    assert outcome.commands > 0
    assert not outcome.failures, _report(outcome)


# -- the labs' shape -------------------------------------------------------------------------

README_ROW = re.compile(
    r"^\| (\d+) \| \[(?P<title>[^\]]+)\]\((?P<file>[^)]+)\) "
    r"\| (?P<minutes>\d+) \| (?P<root>yes|no) \|"
)


def _headings(text: str, level: str) -> list[str]:
    inside = False
    found = []
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and line.startswith(level + " "):
            found.append(line[len(level) + 1 :])
    return found


@pytest.mark.parametrize("path", LABS, ids=[p.stem for p in LABS])
def test_every_lab_has_the_parts_of_a_lab(path: Path) -> None:
    text = path.read_text()
    number = int(path.name[:2])
    title = _headings(text, "#")
    assert len(title) == 1 and title[0].startswith(f"Lab {number}: "), title
    sections = _headings(text, "##")
    assert sections == SECTIONS, f"{_display(path)}: sections {sections}"
    steps = _headings(text, "###")
    assert steps, f"{_display(path)}: no steps"
    assert [s.split(":")[0] for s in steps] == [f"Step {n}" for n in range(1, len(steps) + 1)]
    lab = parse(path)
    where = {name: text.index(f"\n## {name}\n") for name in SECTIONS}
    offsets = [sum(len(line) + 1 for line in text.splitlines()[: b.line - 1]) for b in lab.blocks]

    def blocks_in(section: str) -> int:
        start = where[section]
        after = [w for w in where.values() if w > start]
        end = min(after) if after else len(text)
        return sum(start < offset < end for offset in offsets)

    for section in ("Set-up", "Steps", "Check your work"):
        assert blocks_in(section), f"{_display(path)}: no ```console block in {section}"
    questions = text[where["Questions"] : where["Check your work"]]
    assert re.search(r"^1\. ", questions, re.MULTILINE), f"{_display(path)}: no questions"
    runs_containers = any(
        (
            re.search(r"\bdockscope (run|start|stop|rm|ps|logs)\b", command.text)
            or re.search(r"\bdockscope-runtime\b.*\b(create|start)\b", command.text)
        )
        and "--explain" not in command.text
        for block in lab.blocks
        for command in block.commands
    )
    assert runs_containers == ("root" in lab.words), (
        f"{_display(path)}: `<!-- lab: root -->` must mark exactly the labs that run containers"
    )


def test_readme_gives_the_order_the_time_and_the_set_up() -> None:
    text = README.read_text()
    rows = [m for m in map(README_ROW.match, text.splitlines()) if m]
    assert [row.group("file") for row in rows] == [p.name for p in LABS]
    assert len(LABS) == 10  # the session's nine, and lab 10 (podman, a follow-up)
    for row, path in zip(rows, LABS, strict=True):
        lab_text = path.read_text()
        assert f"*{row.group('minutes')} minutes." in lab_text, path.name
        assert row.group("title") == _headings(lab_text, "#")[0].split(": ", 1)[1]
        assert (row.group("root") == "yes") == ("root" in parse(path).words), path.name
    session = [row for row in rows if int(row.group("file")[:2]) <= 9]
    assert sum(int(row.group("minutes")) for row in session) == 135
    setup = session_setup()
    assert any("LABS=" in c.text for c in setup[0].commands)
    assert "..." in text and "<!-- lab: enter -->" in text  # the convention is documented


# -- the checker checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        (["a", "b"], ["a", "b"]),
        (["a   "], ["a", "", "  "]),  # trailing spaces and empty lines are not compared
        (["id ...", "done"], ["id 3f2a", "done"]),
        (["...", "end"], ["end"]),  # a `...` line may stand for no line at all
        (["start", "...", "end"], ["start", "x", "y", "end"]),
        (["a ... c ... e"], ["a b c d e"]),
        (["..."], []),
    ],
)
def test_the_convention_matches(expected: list[str], actual: list[str]) -> None:
    assert match(expected, actual) is None


@pytest.mark.parametrize(
    ("expected", "actual", "expected_index", "actual_index"),
    [
        (["a", "b"], ["a", "c"], 1, 1),
        (["a"], ["a", "b"], 1, 1),  # more output than expected
        (["a", "b"], ["a"], 1, 1),  # less
        (["id ..."], ["ID 3f2a"], 0, 0),
        (["...", "end"], ["x", "y"], 1, 2),
        (["start", "...", "x"], ["start", "y", "z"], 2, 3),
        ([" a"], ["a"], 0, 0),  # leading spaces count
    ],
)
def test_the_convention_finds_where_output_differs(
    expected: list[str], actual: list[str], expected_index: int, actual_index: int
) -> None:
    mismatch = match(expected, actual)
    assert mismatch is not None
    assert (mismatch.expected_index, mismatch.actual_index) == (expected_index, actual_index)


FIXTURE = """\
# A lab

```console
$ echo one
one
$ cd subdir && X=42
$ echo "$X in $(basename $PWD)"
42 in subdir
$ printf 'id %s\\n' 3f2a9c
id ...
```

Prose between blocks.

```console
$ echo right
wrong
$ for n in 1 2; do
>   echo "n=$n"
> done
n=1
n=2
```
"""


def _run_fixture(tmp_path: Path, text: str, timeout: float = COMMAND_TIMEOUT) -> Outcome:
    (tmp_path / "scratch" / "subdir").mkdir(parents=True)
    lab_file = tmp_path / "lab.md"
    lab_file.write_text(text)
    outcome = Outcome()
    shell = Shell(tmp_path / "scratch", lab_environment(tmp_path), tmp_path / ".shell")
    try:
        run_blocks(shell, parse(lab_file).blocks, outcome, timeout=timeout)
    finally:
        shell.close()
    return outcome


def test_a_wrong_expected_line_fails_naming_the_file_the_block_and_the_line(
    tmp_path: Path,
) -> None:
    outcome = _run_fixture(tmp_path, FIXTURE)
    assert outcome.commands == 6
    assert len(outcome.failures) == 1, outcome.failures
    failure = outcome.failures[0]
    assert f"{tmp_path / 'lab.md'}:16: `echo right` (block at line 15)" in failure
    assert "line 17 expects 'wrong'" in failure
    assert "output line 1 is 'right'" in failure


def test_the_same_lab_with_the_right_line_passes(tmp_path: Path) -> None:
    outcome = _run_fixture(tmp_path, FIXTURE.replace("wrong", "right"))
    assert outcome.failures == []


def test_a_command_that_fails_must_say_so(tmp_path: Path) -> None:
    text = '```console\n$ ls /nonexistent\n$ false; echo "exit $?"\nexit 1\n```\n'
    outcome = _run_fixture(tmp_path, text)
    assert len(outcome.failures) == 1
    assert "lab.md:2: `ls /nonexistent`" in outcome.failures[0]
    assert "exited with status 2" in outcome.failures[0]
    assert "No such file or directory" in outcome.failures[0]


def test_stdout_and_stderr_are_shown_in_the_order_written(tmp_path: Path) -> None:
    script = "import sys; print('out 1'); print('err', file=sys.stderr); print('out 2')"
    text = f'```console\n$ python3 -c "{script}"\nout 1\nerr\nout 2\n```\n'
    assert _run_fixture(tmp_path, text).failures == []


def test_here_documents_are_typed_whole(tmp_path: Path) -> None:
    text = (
        "```console\n$ cat > note <<EOF\n> $(echo first)\n>\n> last\n> EOF\n"
        "$ cat note\nfirst\n\nlast\n```\n"
    )
    assert _run_fixture(tmp_path, text).failures == []


def test_enter_is_pressed_only_where_the_block_asks(tmp_path: Path) -> None:
    pauses = "$ read first && read second && echo go on\ngo on\n"
    with_enter = f"<!-- lab: enter -->\n```console\n{pauses}```\n"
    without = f"```console\n{pauses}```\n"
    assert _run_fixture(tmp_path / "a", with_enter).failures == []
    failures = _run_fixture(tmp_path / "b", without).failures  # stdin is empty
    assert len(failures) == 1 and "exited with status 1" in failures[0]


def test_a_command_that_hangs_stops_the_lab(tmp_path: Path) -> None:
    text = "```console\n$ sleep 30\n$ echo never\nnever\n```\n"
    started = time.monotonic()
    outcome = _run_fixture(tmp_path, text, timeout=0.5)
    assert time.monotonic() - started < 10
    assert outcome.commands == 1
    assert len(outcome.failures) == 1 and "did not finish within 0.5 s" in outcome.failures[0]


def test_cgroup_v1_blocks_are_skipped_on_a_v2_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "cgroup_v1", lambda: False)
    text = "<!-- lab: cgroup-v1 -->\n```console\n$ echo v1\nnot run\n```\n"
    outcome = _run_fixture(tmp_path, text)
    assert outcome.failures == [] and outcome.commands == 0
    assert len(outcome.skipped) == 1 and "cgroup v1 only" in outcome.skipped[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("```console\n$ echo 'open\n```\n", "not complete"),
        ("```console\noutput first\n```\n", "output before any `$ ` command"),
        ("<!-- lab: sometimes -->\n```console\n$ true\n```\n", "unknown lab annotation"),
        ("```console\n$ true\n", "never closed"),
    ],
)
def test_a_malformed_lab_is_refused(tmp_path: Path, text: str, message: str) -> None:
    lab_file = tmp_path / "lab.md"
    lab_file.write_text(text)
    with pytest.raises(LabSyntaxError, match=re.escape(message)):
        parse(lab_file)


def main(argv: list[str]) -> int:
    """Run labs and print every command with its actual output (FAIL marks mismatches)."""
    import tempfile

    paths = [Path(arg).resolve() for arg in argv] or LABS
    status = 0
    for path in paths:
        with tempfile.TemporaryDirectory(prefix="dockscope-lab-") as tmp:
            started = time.monotonic()
            outcome = run_lab(parse(path), Path(tmp), verbose=True)
            elapsed = time.monotonic() - started
        print("\n".join(outcome.transcript))
        for line in outcome.skipped:
            print(f"skipped: {line}")
        if outcome.failures:
            status = 1
            print("\n" + _report(outcome))
        verdict = f"{len(outcome.failures)} failure(s)" if outcome.failures else "ok"
        print(f"=== {_display(path)}: {outcome.commands} commands, {elapsed:.1f} s, {verdict}\n")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
