"""What the package readers return: one record per installed package, and their errors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from inspect_tool.errors import InvalidImageError


class Ecosystem(StrEnum):
    DEB = "deb"
    APK = "apk"
    RPM = "rpm"
    PYTHON = "python"
    NPM = "npm"
    GO = "go"
    JAVA = "java"


class PackageDataError(InvalidImageError):
    """A package database or manifest is malformed or exceeds a bound. The scanner turns it
    into a finding naming the layer and the file; the other packages are still read."""


@dataclass(frozen=True, slots=True)
class Package:
    """One installed package as its database records it. Every string comes from the image."""

    ecosystem: Ecosystem
    name: str
    version: str
    location: str  # what the package is installed into: the admin dir, site dir, binary, …
    database: str  # the file that records it
    source: str = ""  # source package (deb, rpm), origin (apk), main module (go)
    arch: str = ""
    license: str = ""
    installed_size: int | None = None  # bytes, as recorded
    files: tuple[str, ...] = ()  # absolute paths it owns, where the database lists them

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What stays the same across an upgrade: the same package in the same place."""
        return (self.ecosystem.value, self.location, self.name, self.arch)


def text(data: bytes) -> str:
    """Bytes from an image as text: UTF-8, anything else kept as lone surrogates (shown
    escaped by the renderers)."""
    return data.decode("utf-8", "surrogateescape")
