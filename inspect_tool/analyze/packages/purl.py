"""Package URLs (github.com/package-url/purl-spec) for the packages read: the identifier SBOMs
carry. The distribution (``deb``, ``rpm``, ``apk`` namespaces) comes from os-release."""

from __future__ import annotations

from urllib.parse import quote

from inspect_tool.analyze.packages.model import Ecosystem, Package


def _q(text: str) -> str:
    return quote(text, safe=".-_~")


def purl(package: Package, *, distro: str = "") -> str | None:
    """The package's purl, or None when its ecosystem's identity is not known (a jar
    without Maven coordinates)."""
    name, version = package.name, package.version
    qualifiers: list[tuple[str, str]] = []
    if package.ecosystem in (Ecosystem.DEB, Ecosystem.RPM, Ecosystem.APK):
        kind = package.ecosystem.value
        namespace = distro.lower() or {"deb": "debian", "apk": "alpine"}.get(kind, "")
        if package.arch:
            qualifiers.append(("arch", package.arch))
        if package.ecosystem is Ecosystem.RPM and ":" in version:
            epoch, _, version = version.partition(":")
            qualifiers.append(("epoch", epoch))
        if distro:
            qualifiers.append(("distro", distro.lower()))
        path = f"{_q(namespace)}/{_q(name)}" if namespace else _q(name)
    elif package.ecosystem is Ecosystem.PYTHON:
        kind = "pypi"
        path = _q(_normalise(name))
    elif package.ecosystem is Ecosystem.NPM:
        kind = "npm"
        scope, slash, bare = name.partition("/")
        path = f"{_q(scope)}/{_q(bare)}" if slash and scope.startswith("@") else _q(name)
    elif package.ecosystem is Ecosystem.GO:
        kind = "golang"
        namespace, _, bare = name.rpartition("/")
        path = (
            "/".join(_q(p) for p in namespace.split("/")) + "/" + _q(bare)
            if namespace
            else _q(bare)
        )
    elif package.ecosystem is Ecosystem.JAVA:
        group, colon, artifact = name.partition(":")
        if not colon:
            return None
        kind = "maven"
        path = f"{_q(group)}/{_q(artifact)}"
    else:
        return None
    text = f"pkg:{kind}/{path}"
    if version:
        text += f"@{_q(version)}"
    if qualifiers:
        text += "?" + "&".join(f"{k}={_q(v)}" for k, v in sorted(qualifiers))
    return text


def _normalise(name: str) -> str:
    """PEP 503's normal form, which the pypi purl type asks for."""
    import re

    return re.sub(r"[-_.]+", "-", name).lower()
