"""Two images' packages compared: added, removed, and versions moved up, down or sideways,
ordered by each ecosystem's rules (``versions.compare``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from inspect_tool.analyze.packages.scan import LayerPackage, PackagesReport
from inspect_tool.analyze.packages.versions import compare


class PackageChange(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    UPGRADED = "upgraded"
    DOWNGRADED = "downgraded"
    CHANGED = "changed"  # another version, not ordered (invalid in its ecosystem)


@dataclass(frozen=True, slots=True)
class PackageDifference:
    """One package that image B installs differently from image A: added, removed or at another
    version, with its entry in each image (None where it has none)."""

    change: PackageChange
    a: LayerPackage | None
    b: LayerPackage | None

    @property
    def package(self) -> LayerPackage:
        found = self.b or self.a
        assert found is not None
        return found


def diff_packages(a: PackagesReport, b: PackagesReport) -> list[PackageDifference]:
    """What B installs differently from A, keyed as ``Package.key`` (ecosystem, location,
    name, arch); the same version on both sides is no difference."""
    before = {item.package.key: item for item in a.packages}
    after = {item.package.key: item for item in b.packages}
    found: list[PackageDifference] = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is None:
            found.append(PackageDifference(PackageChange.ADDED, None, new))
        elif new is None:
            found.append(PackageDifference(PackageChange.REMOVED, old, None))
        elif old.package.version != new.package.version:
            order = compare(new.package.ecosystem, new.package.version, old.package.version)
            change = {1: PackageChange.UPGRADED, -1: PackageChange.DOWNGRADED}.get(
                order or 0, PackageChange.CHANGED
            )
            found.append(PackageDifference(change, old, new))
    return found
