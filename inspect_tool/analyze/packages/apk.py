"""apk's database, ``lib/apk/db/installed``: one block per package, ``X:value`` lines
(apk-tools' ``apk_db_index_read``): P name, V version, A arch, L licence, o origin,
I installed size, F a directory (relative), R a file in the last F."""

from __future__ import annotations

from inspect_tool.analyze.packages.model import Ecosystem, Package, PackageDataError, text

MAX_LINES = 10_000_000


def parse_installed(data: bytes, *, database: str, location: str) -> list[Package]:
    lines = text(data).split("\n")
    if len(lines) > MAX_LINES:
        raise PackageDataError(f"more than {MAX_LINES} lines", subject=database)
    packages: list[Package] = []
    fields: dict[str, str] = {}
    files: list[str] = []
    directory = ""

    def flush(number: int) -> None:
        if not fields and not files:
            return
        name = fields.get("P", "")
        if not name:
            raise PackageDataError(
                f"a package without a name (P:) before line {number}", subject=database
            )
        size = fields.get("I", "")
        packages.append(
            Package(
                Ecosystem.APK,
                name,
                fields.get("V", ""),
                location,
                database,
                source=fields.get("o", ""),
                arch=fields.get("A", ""),
                license=fields.get("L", ""),
                installed_size=int(size) if size.isdigit() and len(size) <= 15 else None,
                files=tuple(files),
            )
        )

    for number, line in enumerate(lines, 1):
        if not line:
            flush(number)
            fields, files, directory = {}, [], ""
            continue
        if len(line) < 2 or line[1] != ":":
            raise PackageDataError(f"line {number}: not a 'X:value' line", subject=database)
        key, value = line[0], line[2:]
        if key == "F":
            directory = value.strip("/")
        elif key == "R":
            files.append(f"/{directory}/{value}" if directory else f"/{value}")
        elif key not in fields:
            fields[key] = value
    flush(len(lines))
    return packages
