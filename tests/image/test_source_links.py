"""Links inside an image archive or directory (``sources/tree.py``): resolved through the one
resolver as if the tree were ``/``, and any that leaves the tree refused. The same table for a
tar and for a directory, so the two readers cannot drift apart."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from inspect_tool.errors import UnsafePathError
from inspect_tool.sources.tree import Tree, open_tree

# (name, kind, data or link target); no directory entries: a tar need not hold them
LAYOUT = [
    ("blobs/sha256/aa", "file", "layer bytes"),
    ("xyz/layer.tar", "file", "the layer"),
    ("abc/layer.tar", "symlink", "../xyz/layer.tar"),  # docker save's shared layer
    ("current", "symlink", "blobs/sha256"),
    ("via/deep", "symlink", "../current/aa"),
    ("chain1", "symlink", "chain2"),
    ("chain2", "symlink", "current/aa"),
    ("dotdot", "symlink", "current/../xyz/layer.tar"),  # the kernel's '..': blobs/xyz
    ("abs", "symlink", "/etc/passwd"),
    ("absdir", "symlink", "/etc"),
    ("up", "symlink", "../../etc/passwd"),
    ("nested/up", "symlink", "../.."),
    ("loop", "symlink", "loop"),
    ("file/", "file", "not a directory"),
]


def _tar(path: Path) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, kind, value in LAYOUT:
            info = tarfile.TarInfo(name.rstrip("/"))
            if kind == "file":
                data = value.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                info.type, info.linkname = tarfile.SYMTYPE, value
                tf.addfile(info)
        hard = tarfile.TarInfo("hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "abc/layer.tar"
        tf.addfile(hard)
    return path


def _dir(path: Path) -> Path:
    for name, kind, value in LAYOUT:
        target = path / name.rstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "file":
            target.write_text(value)
        else:
            target.symlink_to(value)
    os.link(path / "xyz/layer.tar", path / "hard")
    return path


@pytest.fixture(params=["tar", "directory"])
def tree(request: pytest.FixtureRequest, tmp_path: Path) -> Tree:
    if request.param == "tar":
        return open_tree(_tar(tmp_path / "image.tar"))
    return open_tree(_dir(tmp_path / "image"))


def _read(tree: Tree, path: str) -> str | None:
    entry = tree.entry(path)
    if entry is None:
        return None
    return tree.read(path, 1 << 20).decode()


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("blobs/sha256/aa", "layer bytes"),
        ("abc/layer.tar", "the layer"),
        ("current/aa", "layer bytes"),
        ("via/deep", "layer bytes"),
        ("chain1", "layer bytes"),
        ("hard", "the layer"),
        ("./blobs//sha256/aa", "layer bytes"),
        ("blobs/sha256/missing", None),
        ("dotdot", None),  # blobs/xyz/layer.tar does not exist
        ("file/x", None),
        ("blobs", None),  # a directory is no file
    ],
)
def test_links_resolve_inside_the_tree(tree: Tree, path: str, content: str | None) -> None:
    assert _read(tree, path) == content


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("abs", "'abs' is a symlink to an absolute path (/etc/passwd)"),
        ("absdir/passwd", "'absdir' is a symlink to an absolute path (/etc)"),
        ("up", "'up' is a symlink that points outside"),
        ("nested/up/etc", "'nested/up' is a symlink that points outside"),
        ("loop", "too many levels of links"),
    ],
)
def test_links_that_leave_the_tree_are_refused(tree: Tree, path: str, message: str) -> None:
    with pytest.raises(UnsafePathError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tree.entry(path)
