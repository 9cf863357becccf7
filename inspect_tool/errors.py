"""The one error hierarchy. The library raises these; only the CLI turns them into exit codes."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes of every dockscope command (docs/CLI.md)."""

    OK = 0
    PROBLEMS = 1  # the command ran and found problems: verify failures, differences, gates
    USAGE = 2  # bad arguments or options, or a selection that matches nothing
    BAD_INPUT = 3  # the input is unreadable or is not a valid image
    INTERNAL = 4  # a bug in dockscope: please report it


class DockscopeError(Exception):
    """Base of every error dockscope raises on purpose.

    ``subject`` names the file (or archive member) the problem is about, so the CLI can print
    one line: ``dockscope: <subject>: <message>``.
    """

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, subject: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.subject = subject

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}" if self.subject else self.message

    def with_subject(self, subject: str) -> DockscopeError:
        if self.subject is None:
            self.subject = subject
        return self


class UsageError(DockscopeError):
    """The user asked for something that cannot be done as asked (exit 2)."""

    exit_code = ExitCode.USAGE


class SelectionError(UsageError):
    """``--image``, ``--ref`` or ``--platform`` matched nothing, or the choice is ambiguous."""


class InvalidImageError(DockscopeError):
    """The input is not an image dockscope can read, or its structure is invalid (exit 3)."""


class InvalidDigestError(InvalidImageError):
    """A digest string is malformed. Never used to build a path."""


class InvalidJSONError(InvalidImageError):
    """A JSON document is malformed, too large or too deeply nested."""


class BlobNotFoundError(InvalidImageError):
    """A descriptor or manifest entry names content that the source does not hold."""


class UnsafePathError(InvalidImageError):
    """A path or link inside the image points outside the archive or directory."""


class TruncatedError(InvalidImageError):
    """An archive or blob ends before its headers say it should."""


class RegistryError(DockscopeError):
    """A registry could not be reached, refused us, lacks the image or sent bytes that do not
    match their digest (exit 3). ``subject`` is the docker:// reference; the message never
    holds credentials."""
