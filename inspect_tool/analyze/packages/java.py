"""Java archives (``.jar``, ``.war``, ``.ear``): Maven's ``META-INF/maven/*/*/pom.properties``
(one per artifact the archive holds: a shaded or fat jar holds several) or else the
``META-INF/MANIFEST.MF`` main attributes. Archives nested in the archive (Spring Boot's
``BOOT-INF/lib/*.jar``) are listed by their own pom.properties when the outer one has them."""

from __future__ import annotations

import io
import posixpath

from inspect_tool.analyze.packages.model import Ecosystem, Package, PackageDataError, text

MAX_ARCHIVE = 256 * 1024 * 1024
MAX_MEMBER = 1024 * 1024  # a manifest or a pom.properties, decompressed
MAX_ENTRIES = 200_000


def parse_archive(data: bytes, *, database: str) -> list[Package]:
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise PackageDataError(f"not a zip archive: {exc}", subject=database) from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise PackageDataError(f"more than {MAX_ENTRIES} entries", subject=database)
        packages = []
        for entry in entries:
            if entry.filename.startswith("META-INF/maven/") and entry.filename.endswith(
                "/pom.properties"
            ):
                properties = _properties(_read(archive, entry, database))
                group, artifact = properties.get("groupId", ""), properties.get("artifactId", "")
                if artifact:
                    packages.append(
                        Package(
                            Ecosystem.JAVA,
                            f"{group}:{artifact}" if group else artifact,
                            properties.get("version", ""),
                            database,
                            database,
                        )
                    )
        if packages:
            return packages
        try:
            manifest = archive.getinfo("META-INF/MANIFEST.MF")
        except KeyError:
            return []
        attributes = _manifest(_read(archive, manifest, database))
    name = (
        attributes.get("Implementation-Title")
        or attributes.get("Bundle-SymbolicName", "").split(";")[0]
        or posixpath.basename(database).rsplit(".", 1)[0]
    )
    version = attributes.get("Implementation-Version") or attributes.get("Bundle-Version", "")
    licence = attributes.get("Bundle-License", "")
    return [Package(Ecosystem.JAVA, name, version, database, database, license=licence)]


def _read(archive: object, entry: object, database: str) -> str:
    import zipfile

    assert isinstance(archive, zipfile.ZipFile) and isinstance(entry, zipfile.ZipInfo)
    try:
        with archive.open(entry) as handle:
            return text(handle.read(MAX_MEMBER))
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError) as exc:
        raise PackageDataError(f"{entry.filename}: {exc}", subject=database) from None


def _properties(content: str) -> dict[str, str]:
    found = {}
    for line in content.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def _manifest(content: str) -> dict[str, str]:
    """The main section's attributes (continuation lines start with one space)."""
    found: dict[str, str] = {}
    last = ""
    for line in content.replace("\r\n", "\n").split("\n"):
        if not line:
            break  # the main section ends at the first blank line
        if line.startswith(" ") and last:
            found[last] += line[1:]
        elif ":" in line:
            last, _, value = line.partition(":")
            found[last] = value.strip()
    return found
