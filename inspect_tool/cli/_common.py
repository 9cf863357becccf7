"""Shared CLI pieces: error mapping, consoles, progress, image selection options (the
selection itself is inspect_tool.sources.ImageSelection)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

import typer

from inspect_tool.cli._errors import exit_code, say
from inspect_tool.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from inspect_tool.model.image import Layer

IMAGE_OPTION = typer.Option(
    None,
    "--image",
    "-i",
    metavar="NAME:TAG|N",
    help="Choose an image of a multi-image archive by tag or by 1-based position.",
)
REF_OPTION = typer.Option(
    None,
    "--ref",
    metavar="NAME",
    help="Choose a manifest by its org.opencontainers.image.ref.name annotation.",
)
PLATFORM_OPTION = typer.Option(
    None,
    "--platform",
    metavar="OS/ARCH[/VARIANT]",
    help="Choose the image for one platform of a multi-platform index.",
)
JSON_OPTION = typer.Option(False, "--json", help="Write one JSON document (docs/JSON.md).")
TAR_OUTPUT_OPTION = typer.Option(
    ...,
    "--output",
    "-o",
    metavar="FILE|-",
    help="Where to write the tar: a file (replaced once complete), or - for stdout.",
    show_default=False,
)


def image_location(text: str) -> Path:
    """The parser of every IMAGE argument: the path keeps the text as typed, so a transport
    (``oci:DIR:REF``, ``docker://…``) or ``./oci:x`` reaches sources/location.py intact."""
    from inspect_tool.sources.location import written_path

    return written_path(text)


IMAGE_ARGUMENT = typer.Argument(
    ...,
    metavar="IMAGE",
    help="An image archive (.tar, .tar.gz, .tar.zst) or layout directory, or a location: "
    "oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG|@N], dir:DIR, "
    "containers-storage:[STORE]NAME, docker://REF (docs/CLI.md, Transports).",
    show_default=False,
    parser=image_location,
)


def tar_to_stdout(output: str, *, json_output: bool) -> bool:
    """Whether ``-o OUTPUT`` (TAR_OUTPUT_OPTION) sends the tar to stdout (``-``), refusing
    what cannot go with it: --json (stdout carries the tar) and a terminal."""
    to_stdout = output == "-"
    if to_stdout and json_output:
        raise UsageError("--json needs -o FILE: with -o - stdout carries the tar")
    if to_stdout and sys.stdout.isatty():
        raise UsageError("refusing to write a tar to a terminal; use -o FILE or a pipe")
    return to_stdout


def limit_option(help: str) -> Any:
    """``--limit N``: how many rows a listing shows (20 unless told; 0: all)."""
    return typer.Option(20, "--limit", min=0, metavar="N", help=help)


def fail(message: str, code: ExitCode) -> typer.Exit:
    """One error line on stderr (escaped: cli/_errors.py), and the exit to raise."""
    say(message)
    return typer.Exit(int(code))


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Map library errors to one line on stderr and a documented exit code (cli/_errors.py)."""
    from inspect_tool.cli._usage import ClickException

    try:
        yield
    except (typer.Exit, typer.Abort, BrokenPipeError):  # main() ends a closed pipe quietly
        raise
    except ClickException:  # a usage error: the root group words it (cli/_usage.py)
        raise
    except (Exception, KeyboardInterrupt) as exc:
        code = exit_code(exc)
        if code is None:
            raise
        raise typer.Exit(code) from None


# The width of human output written to a file or a pipe when COLUMNS does not say: wide
# enough that no table is cut or folded (a path is at most 4096 bytes).
PIPE_WIDTH = 10_000


def stdout_console() -> Console:
    """The rich console of human output: what it writes is sanitised (render/text.py). On a
    file or a pipe, tables are not cut at 80 columns (COLUMNS when set, else PIPE_WIDTH) and
    no line ends in blanks."""
    from inspect_tool.render.text import safe_console

    width = None
    if not may_be_terminal(sys.stdout) and not os.environ.get("COLUMNS", "").isdigit():
        width = PIPE_WIDTH
    return safe_console(highlight=False, width=width, trim_lines=True)


def may_be_terminal(stream: TextIO) -> bool:
    """False when rich would certainly not see a terminal on ``stream`` (a pipe or file, and
    none of the variables that make rich treat one as a terminal): checked without rich."""
    if os.environ.get("TTY_COMPATIBLE", "") == "1" or os.environ.get("FORCE_COLOR"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def stderr_console() -> Console:
    from inspect_tool.render.text import safe_console

    return safe_console(stderr=True, highlight=False)


@contextlib.contextmanager
def output_stream(target: Path) -> Iterator[BinaryIO]:
    """Where a command writes the output file a user named.

    A regular file, or a name not taken yet, is written under a temporary name beside it and
    renamed over it only once complete: never half a file. Anything else already at that
    name (a device such as /dev/null, a FIFO, a terminal, a symlink) is opened and written in
    place, never replaced.
    """
    import stat
    import tempfile

    try:
        st: os.stat_result | None = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"cannot write: {exc.strerror}", subject=str(target)) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError("is a directory", subject=str(target))
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            out = open(target, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"cannot write: {exc.strerror}", subject=str(target)) from None
        with out:
            yield out
        return
    directory = target.absolute().parent
    try:
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.")
    except OSError as exc:
        raise UsageError(f"cannot write: {exc.strerror}", subject=str(target)) from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def use_color() -> bool:
    """Colour for plain-text output: only on a terminal, never with NO_COLOR set."""
    import os

    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def write_json(document: dict[str, Any]) -> None:
    from inspect_tool.render.json import dumps

    sys.stdout.write(dumps(document) + "\n")


class ByteProgress:
    """A rich progress bar on stderr, shown only when stderr is a terminal."""

    def __init__(self, description: str) -> None:
        self._description = description
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ByteProgress:
        if not may_be_terminal(sys.stderr):
            return self  # rich is not even imported: most runs that are timed are piped
        console = stderr_console()
        if console.is_terminal:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._progress.start()
        return self

    def start(self, total: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(self._description, total=total)

    def advance(self, amount: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextlib.contextmanager
def layer_progress(description: str, layers: Iterable[Layer]) -> Iterator[ByteProgress]:
    """A ByteProgress over the compressed bytes of ``layers``: the work of reading them."""
    with ByteProgress(description) as progress:
        progress.start(sum(layer.size or 0 for layer in layers))
        yield progress
