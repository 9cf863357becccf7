"""Version ordering per ecosystem: Debian (python-debian), rpm (rpmvercmp on
epoch:version-release), apk (apk-tools' rules), PEP 440 (packaging), semver (npm, Go) and a
generic numeric/alphabetic comparison for Java. ``compare`` returns -1, 0 or 1, or None when a
version is not valid in its ecosystem (then the two are only known to differ)."""

from __future__ import annotations

import re

from inspect_tool.analyze.packages.model import Ecosystem

MAX_VERSION = 256  # longer strings are not compared (every comparison stays cheap)


def compare(ecosystem: Ecosystem, a: str, b: str) -> int | None:
    if a == b:
        return 0
    if len(a) > MAX_VERSION or len(b) > MAX_VERSION:
        return None
    try:
        if ecosystem is Ecosystem.DEB:
            from debian.debian_support import version_compare

            return _sign(version_compare(a, b))
        if ecosystem is Ecosystem.RPM:
            return compare_rpm(a, b)
        if ecosystem is Ecosystem.APK:
            return compare_apk(a, b)
        if ecosystem is Ecosystem.PYTHON:
            from packaging.version import InvalidVersion, Version

            try:
                return _sign((Version(a) > Version(b)) - (Version(a) < Version(b)))
            except InvalidVersion:
                return None
        if ecosystem in (Ecosystem.NPM, Ecosystem.GO):
            return compare_semver(a, b)
        return _sign(rpmvercmp(a, b))
    except ValueError:
        return None


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


_RPM_SEGMENT = re.compile(r"~|\^|\d+|[A-Za-z]+")


def rpmvercmp(a: str, b: str) -> int:
    """rpm's rpmvercmp: alternating digit and letter segments, other characters separate,
    digits beat letters, ``~`` sorts before anything (even the end), ``^`` after the end."""
    if a == b:
        return 0
    sa, sb = _RPM_SEGMENT.findall(a), _RPM_SEGMENT.findall(b)
    i = 0
    while True:
        x = sa[i] if i < len(sa) else None
        y = sb[i] if i < len(sb) else None
        if x == "~" or y == "~":
            if x != y:
                return -1 if x == "~" else 1
        elif x == "^" or y == "^":
            if x is None:
                return -1
            if y is None:
                return 1
            if x != y:
                return 1 if x == "^" else -1
        elif x is None or y is None:
            if x is None and y is None:
                return 0
            return -1 if x is None else 1
        elif x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        elif x.isdigit():
            nx, ny = x.lstrip("0"), y.lstrip("0")
            if len(nx) != len(ny):
                return 1 if len(nx) > len(ny) else -1
            if nx != ny:
                return 1 if nx > ny else -1
        elif x != y:
            return 1 if x > y else -1
        i += 1


def compare_rpm(a: str, b: str) -> int:
    """``[EPOCH:]VERSION[-RELEASE]`` as rpm orders them (a missing epoch is 0)."""

    def split(evr: str) -> tuple[int, str, str]:
        epoch, colon, rest = evr.partition(":")
        if not colon:
            epoch, rest = "0", evr
        if not epoch.isdigit() or len(epoch) > 10:
            raise ValueError(evr)
        version, _, release = rest.rpartition("-") if "-" in rest else (rest, "", "")
        return int(epoch), version, release

    ea, va, ra = split(a)
    eb, vb, rb = split(b)
    if ea != eb:
        return 1 if ea > eb else -1
    return rpmvercmp(va, vb) or rpmvercmp(ra, rb)


_APK = re.compile(
    r"^(\d+(?:\.\d+)*)([a-z]?)((?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)\d*)*)(?:-r(\d+))?$"
)
_APK_SUFFIX = {
    "alpha": -4,
    "beta": -3,
    "pre": -2,
    "rc": -1,
    "cvs": 1,
    "svn": 2,
    "git": 3,
    "hg": 4,
    "p": 5,
}


def compare_apk(a: str, b: str) -> int:
    """apk-tools' order: numbers (after the first, a leading zero compares as a string),
    a letter, suffixes (_alpha < _beta < _pre < _rc < none < _cvs … < _p), then -rN."""

    def key(version: str) -> tuple[list[tuple[int, int | str]], str, list[tuple[int, int]], int]:
        match = _APK.match(version)
        if match is None:
            raise ValueError(version)
        numbers: list[tuple[int, int | str]] = []
        for index, part in enumerate(match.group(1).split(".")):
            if index and part.startswith("0") and len(part) > 1:
                numbers.append((0, part))  # apk compares these as fractions: as strings
            else:
                numbers.append((1, int(part)))
        suffixes = [
            (_APK_SUFFIX[name], int(number or 0))
            for name, number in re.findall(r"_([a-z]+)(\d*)", match.group(3))
        ]
        return numbers, match.group(2), suffixes, int(match.group(4) or 0)

    na, la, sa, ra = key(a)
    nb, lb, sb, rb = key(b)
    for x, y in zip(na, nb, strict=False):
        if x != y:
            if x[0] != y[0]:
                return 1 if x[0] > y[0] else -1
            return 1 if x[1] > y[1] else -1  # type: ignore[operator]
    if len(na) != len(nb):
        return 1 if len(na) > len(nb) else -1
    if la != lb:
        return 1 if la > lb else -1
    for i in range(max(len(sa), len(sb))):
        x = sa[i] if i < len(sa) else (0, 0)
        y = sb[i] if i < len(sb) else (0, 0)
        if x != y:
            return 1 if x > y else -1
    return _sign(ra - rb)


_SEMVER = re.compile(
    r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


def compare_semver(a: str, b: str) -> int:
    """Semantic Versioning 2.0.0 precedence (a leading ``v``, as Go writes, is allowed; the
    build metadata is ignored)."""

    def key(version: str) -> tuple[tuple[int, int, int], list[str] | None]:
        match = _SEMVER.match(version)
        if match is None:
            raise ValueError(version)
        core = tuple(int(match.group(i) or 0) for i in (1, 2, 3))
        pre = match.group(4)
        return (core[0], core[1], core[2]), pre.split(".") if pre else None

    ca, pa = key(a)
    cb, pb = key(b)
    if ca != cb:
        return 1 if ca > cb else -1
    if pa is None or pb is None:
        return 0 if pa == pb else (1 if pa is None else -1)
    for x, y in zip(pa, pb, strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return 1 if int(x) > int(y) else -1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1
        return 1 if x > y else -1
    return _sign(len(pa) - len(pb))
