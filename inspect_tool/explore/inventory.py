"""What the explorer's packages and secrets screens list (pure: no Textual here).

The reports are ``dockscope packages``' and ``dockscope secrets``' own (``scan_packages``,
``scan_secrets``), so the layer each screen names is the one the commands print. A secret
reaches a row only redacted (the finding's excerpt) unless the explorer was started with
``--show-secrets``; a file viewed from the explorer has the secrets found in it redacted the
same way (``redacted``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from inspect_tool.analyze.packages.scan import LayerPackage, PackagesReport
from inspect_tool.analyze.secrets import SecretFinding, SecretsReport, redact
from inspect_tool.explore.content import Content


@dataclass(frozen=True, slots=True)
class PackageRow:
    """One package as the packages screen lists it (strings still raw: escape to show)."""

    item: LayerPackage
    removed: bool  # installed by some layer, gone after the top one

    @property
    def name(self) -> str:
        return self.item.package.name

    @property
    def version(self) -> str:
        return self.item.package.version

    @property
    def ecosystem(self) -> str:
        return self.item.package.ecosystem.value

    @property
    def layer(self) -> int:
        """The layer that installed this version (a removed package: the last version's)."""
        return self.item.layer

    @property
    def files(self) -> tuple[str, ...]:
        return self.item.package.files

    def changes(self) -> str:
        """What layers did to it after installing it: upgrades, downgrades, a removal, and
        how many of its files a later layer modified or deleted."""
        steps = []
        for event in self.item.events[1:]:
            if event.previous is not None:
                steps.append(f"L{event.layer} {event.action.value} from {event.previous}")
            else:
                steps.append(f"L{event.layer} {event.action.value}")
        if self.item.altered:
            steps.append(f"{len(self.item.altered)} files changed later")
        return "; ".join(steps)


def package_rows(report: PackagesReport) -> list[PackageRow]:
    """The installed packages by layer then name, then those a later layer removed."""
    rows = [PackageRow(p, False) for p in report.packages]
    rows.sort(key=lambda r: (r.layer, r.ecosystem, r.name.lower(), r.name))
    removed = [PackageRow(p, True) for p in report.removed]
    removed.sort(key=lambda r: (r.layer, r.ecosystem, r.name.lower(), r.name))
    return rows + removed


def filter_packages(rows: list[PackageRow], pattern: re.Pattern[str] | None) -> list[PackageRow]:
    """The rows whose "ecosystem name version" the pattern is found in (None: all)."""
    if pattern is None:
        return rows
    return [r for r in rows if pattern.search(f"{r.ecosystem} {r.name} {r.version}")]


@dataclass(frozen=True, slots=True)
class SecretRow:
    """One secret finding as the secrets screen lists it: where it is, whether a later layer deleted
    or overwrote it, and what may be shown of it."""

    finding: SecretFinding
    where: str  # the path and line (a file), or the config field
    fate: str  # "visible", "deleted by L2", "overwritten by L3"
    shown: str  # the redacted excerpt, or the secret itself (--show-secrets)


def secret_rows(report: SecretsReport, *, show: bool) -> list[SecretRow]:
    """The findings, config first, then by layer and path, each with what may be shown."""
    rows = []
    for f in report.findings:
        where = f.path if f.layer is None else f"{f.path}:{f.line}"
        fate = f.fate if f.by_layer is None else f"{f.fate} by L{f.by_layer}"
        shown = f.secret.split("\n", 1)[0] if show else f.excerpt
        if show and "\n" in f.secret:
            shown += " …"  # a private key: its first line here, whole in the file's view
        rows.append(SecretRow(f, where, fate, shown))
    rows.sort(key=lambda r: (-1 if r.finding.layer is None else r.finding.layer, r.where))
    return rows


def redacted(content: Content, report: SecretsReport | None) -> tuple[Content, int]:
    """``content`` with every secret found in that path (any layer's version) replaced by
    its redaction; and how many were replaced."""
    if report is None:
        return content, 0
    data = content.data
    count = 0
    for f in report.findings:
        if f.layer is None or f.path != content.path or not f.secret:
            continue
        secret = f.secret.encode("utf-8", "surrogateescape")
        hits = data.count(secret)
        if hits:
            # a private key: its header line and stars (its excerpt); others as excerpts show them
            hidden = f.excerpt if f.rule == "private-key" else redact(f.secret)
            data = data.replace(secret, hidden.encode("utf-8", "surrogateescape"))
            count += hits
    if not count:
        return content, 0
    return replace(content, data=data), count
