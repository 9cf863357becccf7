"""Times as engines write them (RFC 3339 with nanoseconds) and as users type them."""

from __future__ import annotations

import datetime as dt
import re
import time

from inspect_tool.errors import UsageError

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?"
)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}


def parse_rfc3339_ns(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time (no zone: UTC); None if not one."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=dt.UTC,
        )
    except ValueError:
        return None
    offset = 0
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    nanos = int((fraction or "").ljust(9, "0")) if fraction else 0
    return (int(moment.timestamp()) - offset) * 1_000_000_000 + nanos


def parse_since(text: str, *, now_ns: int | None = None) -> int:
    """``--since``: an RFC 3339 time or date (``2024-05-01T10:00:00Z``, ``2024-05-01``), Unix
    seconds (``1714557600``), or a duration before now (``10m``, ``1h30m``, ``2d``)."""
    value = text.strip()
    parsed = parse_rfc3339_ns(value)
    if parsed is not None:
        return parsed
    if re.fullmatch(r"\d+(\.\d{1,9})?", value):
        seconds, _, fraction = value.partition(".")
        return int(seconds) * 1_000_000_000 + int(fraction.ljust(9, "0") if fraction else 0)
    if value and _DURATION.sub("", value) == "":
        total = sum(
            int(float(amount) * _UNITS_NS[unit]) for amount, unit in _DURATION.findall(value)
        )
        return (time.time_ns() if now_ns is None else now_ns) - total
    raise UsageError(
        f"--since {text!r}: give an RFC 3339 time (2024-05-01T10:00:00Z), a date, Unix "
        "seconds or a duration before now (10m, 1h30m, 2d)"
    )


def format_ns(ns: int, *, fixed: bool = False) -> str:
    """RFC 3339 in UTC with the nanoseconds that are not zero: ``…T10:51:39.62598903Z``
    (Go's RFC3339Nano); ``fixed``: always nine digits, so that the text sorts by time."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if fixed:
        return f"{base}.{nanos:09d}Z"
    if nanos:
        base += "." + f"{nanos:09d}".rstrip("0")
    return base + "Z"
