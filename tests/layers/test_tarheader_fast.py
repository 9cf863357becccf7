"""The one-match reading of a header's numbers gives what the five field parsers give."""

from __future__ import annotations

import io
import re
import tarfile

import pytest

from inspect_tool.layers import tarformat


def _headers() -> list[bytes]:
    blocks = []
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        for size, mode, uid, mtime in ((0, 0o755, 0, 0), (12345, 0o4711, 65534, 1_700_000_000)):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
                info = tarfile.TarInfo("a/file")
                info.size, info.mode, info.uid, info.gid, info.mtime = size, mode, uid, 7, mtime
                tar.addfile(info, io.BytesIO(b"x" * size))
            blocks.append(buf.getvalue()[:512])
    # an old writer's form: octal digits ended by a space and a NUL (no fast match)
    old = bytearray(blocks[0])
    old[100:108] = b"000755 \x00"
    old[148:156] = b"        "
    old[148:156] = b"%06o\x00 " % sum(old)
    blocks.append(bytes(old))
    return blocks


@pytest.mark.parametrize("block", _headers())
def test_fast_numbers_equal_the_field_parsers(
    block: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = tarformat.parse_header(block, 0)
    monkeypatch.setattr(tarformat, "_CANONICAL_NUMBERS", re.compile(rb"(?!)"))
    slow = tarformat.parse_header(block, 0)
    assert fast == slow
    assert (fast.mode, fast.uid, fast.gid) == (slow.mode, slow.uid, slow.gid)


def test_the_old_form_is_read_by_the_field_parsers() -> None:
    block = _headers()[-1]
    assert tarformat._CANONICAL_NUMBERS.match(block, 100, 148) is None
    assert tarformat.parse_header(block, 0).mode == 0o755
