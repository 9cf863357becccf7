"""dpkg's database: ``var/lib/dpkg/status`` (deb822 paragraphs, python-debian reads them),
distroless ``var/lib/dpkg/status.d/NAME`` (one paragraph per file, ``NAME.md5sums`` beside it)
and ``var/lib/dpkg/info/NAME[:ARCH].list`` (the files each package owns)."""

from __future__ import annotations

from collections.abc import Mapping

from inspect_tool.analyze.packages.model import Ecosystem, Package, PackageDataError, text

MAX_PARAGRAPHS = 100_000
MAX_FIELDS = 1_000
MAX_LIST_LINES = 1_000_000
# the states in which dpkg has the package's files on disk
_PRESENT = {
    "installed",
    "half-configured",
    "unpacked",
    "half-installed",
    "triggers-awaited",
    "triggers-pending",
}


def parse_status(data: bytes, *, database: str, location: str) -> list[Package]:
    """Packages of a status file (or one status.d entry) whose files are installed."""
    from debian.deb822 import Deb822

    packages: list[Package] = []
    # dpkg keeps bytes; a maintainer's name in Latin-1 must not lose the whole database
    lines = data.decode("utf-8", "replace").splitlines()
    _check_fields(lines, database)
    try:
        paragraphs = Deb822.iter_paragraphs(lines, use_apt_pkg=False)
        for count, paragraph in enumerate(paragraphs):
            if count >= MAX_PARAGRAPHS:
                raise PackageDataError(f"more than {MAX_PARAGRAPHS} paragraphs", subject=database)
            package = _package(paragraph, database=database, location=location)
            if package is not None:
                packages.append(package)
    except PackageDataError:
        raise
    except (ValueError, KeyError, UnicodeError) as exc:
        raise PackageDataError(f"not a deb822 status file: {exc}", subject=database) from None
    return packages


def _check_fields(lines: list[str], database: str) -> None:
    """At most ``MAX_FIELDS`` fields in a paragraph (real ones hold a few dozen): python-debian
    slows down with every field a paragraph holds."""
    fields = 0
    for line in lines:
        if not line.strip():
            fields = 0
        elif not line[0].isspace():
            fields += 1
            if fields > MAX_FIELDS:
                raise PackageDataError(
                    f"a paragraph of more than {MAX_FIELDS} fields", subject=database
                )


def _package(paragraph: Mapping[str, str], *, database: str, location: str) -> Package | None:
    name = paragraph.get("Package", "").strip()
    if not name:
        if any(paragraph.values()):
            raise PackageDataError("a paragraph without a Package field", subject=database)
        return None
    status = paragraph.get("Status", "install ok installed").split()
    if len(status) == 3 and status[2] not in _PRESENT:
        return None  # config-files, not-installed: only its record is left
    source = paragraph.get("Source", "").strip()
    version = paragraph.get("Version", "").strip()
    if " (" in source:  # "Source: glibc (2.36-9)": the source's own version
        source = source.split(" (", 1)[0]
    size: int | None = None
    raw_size = paragraph.get("Installed-Size", "").strip()
    if raw_size.isdigit() and len(raw_size) <= 15:
        size = int(raw_size) * 1024  # KiB in dpkg's records
    return Package(
        Ecosystem.DEB,
        name,
        version,
        location,
        database,
        source=source or name,
        arch=paragraph.get("Architecture", "").strip(),
        installed_size=size,
    )


def parse_list(data: bytes, *, database: str) -> tuple[str, ...]:
    """The absolute paths of a ``.list`` file (directories included, as dpkg lists them)."""
    lines = text(data).split("\n")
    if len(lines) > MAX_LIST_LINES:
        raise PackageDataError(f"more than {MAX_LIST_LINES} lines", subject=database)
    return tuple(line for line in lines if line.startswith("/") and line != "/.")


def parse_md5sums(data: bytes, *, database: str) -> tuple[str, ...]:
    """The files of an ``md5sums`` file (``HASH  relative/path`` per line), made absolute."""
    lines = text(data).split("\n")
    if len(lines) > MAX_LIST_LINES:
        raise PackageDataError(f"more than {MAX_LIST_LINES} lines", subject=database)
    files = []
    for line in lines:
        _, sep, path = line.partition("  ")
        if sep and path:
            files.append("/" + path.lstrip("/"))
    return tuple(files)
