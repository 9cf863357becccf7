"""Output files a user names: written whole or not at all, and a device, FIFO or symlink at
that name is written in place, never replaced (``-o /dev/null`` once replaced /dev/null)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support.cli import invoke
from tests.support.paths import SAMPLES

OCI = str(SAMPLES / "oci-layout")


@pytest.mark.parametrize(
    "args",
    [["export", OCI, "-o"], ["graph", OCI, "-o"]],
    ids=["export", "graph"],
)
def test_a_device_at_the_output_name_is_written_not_replaced(
    tmp_path: Path, args: list[str]
) -> None:
    if os.geteuid() != 0:
        pytest.fail("creating a character device needs root (CI runs as root)")
    target = tmp_path / "null.dot"
    os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    result = invoke(*args, str(target))
    assert result.code == 0, result.err
    st = os.lstat(target)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.dot"]  # no temporary left


def test_a_symlink_at_the_output_name_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "real.dot"
    link = tmp_path / "link.dot"
    link.symlink_to(real.name)
    result = invoke("graph", OCI, "-o", str(link))
    assert result.code == 0, result.err
    assert link.is_symlink() and real.read_text().startswith("digraph")


def test_a_regular_file_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "out.tar"
    target.write_bytes(b"old")
    result = invoke("export", OCI, "-o", str(target))
    assert result.code == 0, result.err
    assert target.stat().st_size > 1024
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar"]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    result = invoke("export", OCI, "-o", str(tmp_path))
    assert result.code == 2
    assert "is a directory" in result.err
