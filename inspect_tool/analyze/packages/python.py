"""Python distributions: ``NAME-VERSION.dist-info/METADATA`` (wheels, pip), ``*.egg-info/PKG-INFO``
or an ``*.egg-info`` file (setuptools, distutils): core metadata, email headers (PEP 566);
``RECORD`` (CSV, paths relative to the site directory) lists a dist-info's files."""

from __future__ import annotations

import posixpath

from inspect_tool.analyze.packages.model import Ecosystem, Package, PackageDataError, text

MAX_HEADER_BYTES = 1024 * 1024
MAX_RECORD_LINES = 1_000_000


def parse_metadata(data: bytes, *, database: str, location: str) -> Package:
    """A package from its core metadata; ``location`` is the site directory."""
    from email.parser import HeaderParser

    head = data[:MAX_HEADER_BYTES]
    end = head.find(b"\n\n")
    if end >= 0:
        head = head[:end]  # the description may follow: not needed
    headers = HeaderParser().parsestr(text(head), headersonly=True)
    name = _one(headers.get("Name"))
    version = _one(headers.get("Version"))
    if not name or not version:
        raise PackageDataError("core metadata without Name or Version", subject=database)
    licence = _one(headers.get("License-Expression")) or _one(headers.get("License"))
    if len(licence) > 200 or "\n" in licence:  # a whole licence text pasted in
        licence = ""
    if not licence:
        classifiers = [
            c.rsplit("::", 1)[-1].strip()
            for c in headers.get_all("Classifier") or []
            if str(c).startswith("License ::")
        ]
        licence = " AND ".join(classifiers)
    return Package(Ecosystem.PYTHON, name, version, location, database, license=licence)


def _one(value: object) -> str:
    return str(value).strip() if value is not None else ""


def parse_record(data: bytes, *, database: str, site: str) -> tuple[str, ...]:
    """The files of a ``RECORD``: each row's path joined to the site directory."""
    import csv

    lines = text(data).splitlines()
    if len(lines) > MAX_RECORD_LINES:
        raise PackageDataError(f"more than {MAX_RECORD_LINES} lines", subject=database)
    files = []
    try:
        for row in csv.reader(lines):
            if row and row[0]:
                files.append(_join(site, row[0]))
    except csv.Error as exc:
        raise PackageDataError(f"not a RECORD file: {exc}", subject=database) from None
    return tuple(files)


def parse_installed_files(data: bytes, *, database: str, egg_info: str) -> tuple[str, ...]:
    """The files of an egg-info's ``installed-files.txt`` (relative to the egg-info dir)."""
    lines = text(data).splitlines()
    if len(lines) > MAX_RECORD_LINES:
        raise PackageDataError(f"more than {MAX_RECORD_LINES} lines", subject=database)
    return tuple(_join(egg_info, line) for line in lines if line.strip())


def _join(base: str, relative: str) -> str:
    joined = posixpath.normpath(posixpath.join(base, relative))
    return joined if joined.startswith("/") else "/" + joined
