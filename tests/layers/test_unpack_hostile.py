"""Hostile layers: whatever the image holds, nothing is created, changed or deleted outside DEST.

The cases are modelled on containerd's ``pkg/archive`` TestBreakouts (names kept), moby's
``pkg/archive`` TestUntarInvalidFilenames, TestUntarInvalidHardlink, TestUntarInvalidSymlink
and TestUntarHardlinkToSymlink (a ``victim`` directory beside the destination), and umoci's
``oci/layer`` tar_extract tests (TestUnpackEntrySanitiseScoping, TestUnpackEntrySymlinkScoping,
TestUnpackEntryWhiteout, TestUnpackHardlink), plus the issue's own list: whiteouts that
escape, a root turned into a symlink, one path with several types, symlink loops, devices.

Every case runs through ``unpack`` and asserts that the whole temporary directory outside
DEST (the victim, the image, the root of it all) is byte for byte and inode for inode as it
was (ctime included: no chmod, chown, link or write happened), that nothing appeared under
the host's own /etc, and that the audit lists exactly the expected refusals. Then ``export``
runs on the same image: same audit, and its tar holds exactly the tree ``unpack`` wrote.
"""

from __future__ import annotations

import io
import os
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from inspect_tool.layers.export import export
from inspect_tool.layers.unpack import UnpackOptions, UnpackResult, unpack
from inspect_tool.sources import open_source
from tests.support.images import oci_layout
from tests.support.sandbox import sandboxed
from tests.support.snapshots import snapshot
from tests.support.tar_entries import (
    Entry,
    build_layer,
    dir_entry,
    file_entry,
    hardlink_entry,
    symlink_entry,
)
from tests.support.trees import dest_tree, tar_tree

ROOT = os.geteuid() == 0
HOST_FILES = ("/etc/passwd", "/etc/hostname", "/etc")


@dataclass
class Env:
    tmp: Path
    dest: Path
    victim: Path
    marker: str  # a name no host directory holds: finding it under /etc means a breakout

    @property
    def outside(self) -> str:
        """An absolute path outside DEST, as a hostile symlink would name it."""
        return str(self.victim)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "hello").write_bytes(b"hello victim")
    (victim / "sub" / "inner").write_bytes(b"inner")
    (victim / "perm400").write_bytes(b"...")
    (victim / "perm400").chmod(0o400)
    (victim / "link").symlink_to("hello")
    (tmp_path / "file").write_bytes(b"host content")  # umoci's scoping tests
    dest = tmp_path / "dest"
    dest.mkdir()
    return Env(tmp_path, dest, victim, f"dockscope-breakout-{uuid.uuid4().hex}")


def _host_state() -> dict[str, tuple[int, int, int, int]]:
    state = {}
    for name in HOST_FILES:
        with _suppress():
            st = os.lstat(name)
            state[name] = (st.st_ino, st.st_nlink, st.st_ctime_ns, st.st_mode)
    return state


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *rest: object) -> bool:
        return kind is not None and issubclass(kind, OSError)  # type: ignore[arg-type]


def run(
    env: Env, layers: list[list[Entry]], *, devices: bool = False, two_pass: bool | None = None
) -> UnpackResult:
    """Unpack in a sandbox, checking that nothing outside DEST changed and that export
    agrees. ``two_pass``: as ``UnpackOptions`` takes it (None: two passes where they pay)."""
    image = env.tmp / "image"
    oci_layout(image, [build_layer(layer) for layer in layers])
    before, host_before = snapshot(env.tmp, skip=env.dest), _host_state()

    def unpack_image() -> UnpackResult:
        with open_source(image) as source:
            selected = source.candidates[0].image()
            options = UnpackOptions(devices=devices, two_pass=two_pass)
            return unpack(source, selected, env.dest, options=options)

    # as root, in a mount namespace where only env.tmp is writable: a regression fails the
    # test there instead of writing into the host's /etc
    result: UnpackResult = sandboxed(unpack_image, [env.tmp])
    assert snapshot(env.tmp, skip=env.dest) == before, "something outside DEST changed"
    assert _host_state() == host_before, "a host file changed"
    for directory in ("/etc", "/", "/tmp", str(env.tmp)):
        assert not (Path(directory) / env.marker).exists()
    tar = io.BytesIO()
    with open_source(image) as source:
        exported = export(source, source.candidates[0].image(), tar)
    assert snapshot(env.tmp, skip=env.dest) == before
    # export writes device nodes into the tar (no privilege needed): the only difference
    assert _audit(exported.audit) == [a for a in _audit(result.audit) if a[3] != "device"]
    from_tar = tar_tree(tar.getvalue())
    if not devices or not ROOT:
        from_tar = {k: v for k, v in from_tar.items() if v[0] not in ("char", "block")}
    assert from_tar == dest_tree(env.dest), "export and unpack disagree"
    return result


def _audit(audit: list) -> list[tuple[int, str, str, str]]:  # type: ignore[type-arg]
    return [(a.layer, a.name, a.action.value, a.reason.value) for a in audit]


def reasons(result: UnpackResult) -> list[str]:
    return [f"{a.action.value}:{a.reason.value}" for a in result.audit]


# -- assertions on DEST ------------------------------------------------------------------------
def inside(dest: Path, rel: str) -> Path:
    """DEST/rel, asserting that no component of it is a symlink (so reading it stays inside)."""
    path = dest
    for part in rel.split("/"):
        assert not path.is_symlink(), f"{path} is a symlink"
        path = path / part
    return path


def content(dest: Path, rel: str) -> bytes:
    path = inside(dest, rel)
    assert not path.is_symlink() and path.is_file(), f"{rel} is not a regular file"
    return path.read_bytes()


def same_inode(dest: Path, a: str, b: str) -> bool:
    return os.lstat(inside(dest, a)).st_ino == os.lstat(inside(dest, b)).st_ino


def link_of(dest: Path, rel: str) -> str:
    path = inside(dest, rel)
    assert path.is_symlink(), f"{rel} is not a symlink"
    return os.readlink(path)


def absent(dest: Path, rel: str) -> bool:
    return not os.path.lexists(dest / rel)


# -- the cases ---------------------------------------------------------------------------------
Check = Callable[[Env], None]


@dataclass
class Case:
    id: str
    layers: Callable[[Env], list[list[Entry]]]
    audit: list[str] = field(default_factory=list)  # "action:reason", in order
    check: Check | None = None


def etc_passwd() -> list[Entry]:
    return [dir_entry("etc", mode=0o770), file_entry("etc/passwd", b"inside")]


def marker_written_into_dest_etc(e: Env) -> None:
    """The file a symlink to /etc was to carry out landed in DEST/etc."""
    _eq(content(e.dest, f"etc/{e.marker}"), b"unbroken")


def passwd_kept(e: Env) -> None:
    _eq(content(e.dest, "etc/passwd"), b"inside")


CASES: list[Case] = [
    # containerd pkg/archive TestBreakouts ------------------------------------------------
    *[
        # DEST/etc, then links to it; a file written through them lands in DEST/etc
        Case(
            f"containerd-{label}",
            lambda e, links=links, through=through: [
                [dir_entry("etc"), *links, file_entry(f"/{through}/{e.marker}", b"unbroken")]
            ],
            check=marker_written_into_dest_etc,
        )
        for label, links, through in (
            ("SymlinkAbsolute", [symlink_entry("localetc", "/etc")], "localetc"),
            (
                "SymlinkUpAndOut",
                [dir_entry("dummy"), symlink_entry("localetc", "/dummy/../etc")],
                "localetc",
            ),
            (
                "SymlinkMultipleAbsolute",
                [
                    dir_entry("dummy"),
                    symlink_entry("/dummy/etc", "/etc"),
                    symlink_entry("localetc", "/dummy/etc"),
                ],
                "dummy/etc",
            ),
            (
                "SymlinkMultipleRelative",
                [
                    dir_entry("dummy"),
                    symlink_entry("/dummy/etc", "/etc"),
                    symlink_entry("localetc", "./dummy/etc"),
                ],
                "localetc",
            ),
        )
    ],
    Case(
        "containerd-SymlinkEmptyFile",
        lambda e: [
            [
                dir_entry("etc"),
                file_entry("etc/emptied", b"notempty"),
                symlink_entry("localetc", "/etc"),
                file_entry("/localetc/emptied", b""),
            ]
        ],
        check=lambda e: _eq(content(e.dest, "etc/emptied"), b""),
    ),
    Case(
        "containerd-HardlinkRelative",
        lambda e: [
            [
                *etc_passwd(),
                dir_entry("breakouts"),
                symlink_entry("breakouts/d1", "../../etc"),
                hardlink_entry("breakouts/mypasswd", "/breakouts/d1/passwd"),
            ]
        ],
        audit=["neutralised:symlink-clamped"],
        check=lambda e: _true(same_inode(e.dest, "breakouts/mypasswd", "etc/passwd")),
    ),
    Case(
        "containerd-HardlinkDownAndOut",
        lambda e: [
            [
                *etc_passwd(),
                dir_entry("breakouts"),
                dir_entry("downandout"),
                symlink_entry("breakouts/d1", "../downandout/../../etc"),
                hardlink_entry("breakouts/mypasswd", "/breakouts/d1/passwd"),
            ]
        ],
        audit=["neutralised:symlink-clamped"],
        check=lambda e: _true(same_inode(e.dest, "breakouts/mypasswd", "etc/passwd")),
    ),
    Case(
        "containerd-HardlinkAbsolute",
        lambda e: [
            [
                *etc_passwd(),
                symlink_entry("localetc", "/etc"),
                hardlink_entry("localpasswd", "/localetc/passwd"),
            ]
        ],
        check=lambda e: _true(same_inode(e.dest, "localpasswd", "etc/passwd")),
    ),
    Case(
        "containerd-HardlinkRelativeLong",
        lambda e: [
            [
                *etc_passwd(),
                symlink_entry("localetc", "../../../../../../../etc"),
                hardlink_entry("localpasswd", "/localetc/passwd"),
            ]
        ],
        audit=["neutralised:symlink-clamped"],
        check=lambda e: _true(same_inode(e.dest, "localpasswd", "etc/passwd")),
    ),
    Case(
        "containerd-HardlinkRelativeUpAndOut",
        lambda e: [
            [
                *etc_passwd(),
                symlink_entry("localetc", "upandout/../../../etc"),
                hardlink_entry("localpasswd", "/localetc/passwd"),
            ]
        ],
        audit=["neutralised:symlink-clamped"],
        check=lambda e: _true(
            same_inode(e.dest, "localpasswd", "etc/passwd") and absent(e.dest, "upandout")
        ),
    ),
    Case(
        # containerd links it to DEST/etc/passwd; a name that climbs out is refused here
        # (the host's /etc/passwd is on the same filesystem: its link count is checked)
        "containerd-HardlinkDirectRelative",
        lambda e: [[*etc_passwd(), hardlink_entry("localpasswd", "../../../../../etc/passwd")]],
        audit=["refused:link-escapes"],
        check=lambda e: _true(absent(e.dest, "localpasswd")),
    ),
    Case(
        "containerd-HardlinkDirectAbsolute",
        lambda e: [[*etc_passwd(), hardlink_entry("localpasswd", "/etc/passwd")]],
        check=lambda e: _true(same_inode(e.dest, "localpasswd", "etc/passwd")),
    ),
    Case(
        "containerd-SymlinkParentDirectory",
        lambda e: [
            [
                *etc_passwd(),
                symlink_entry("..", "/etc/"),
                hardlink_entry("localpasswd", "/etc/passwd"),
            ]
        ],
        audit=["refused:name-escapes"],
        check=lambda e: _true(same_inode(e.dest, "localpasswd", "etc/passwd")),
    ),
    Case(
        "containerd-SymlinkEmptyFilename",
        lambda e: [
            [
                *etc_passwd(),
                symlink_entry("", "/etc/"),
                hardlink_entry("localpasswd", "/etc/passwd"),
            ]
        ],
        audit=["refused:root-type"],
        check=lambda e: _true(
            same_inode(e.dest, "localpasswd", "etc/passwd") and not e.dest.is_symlink()
        ),
    ),
    Case(
        "containerd-SymlinkParentRelative",
        lambda e: [
            [
                *etc_passwd(),
                symlink_entry("localetc/sub/..", "/etc/"),
                hardlink_entry("/localetc/localpasswd", "/etc/passwd"),
            ]
        ],
        check=lambda e: _true(
            link_of(e.dest, "localetc") == "/etc/"
            and same_inode(e.dest, "etc/localpasswd", "etc/passwd")
        ),
    ),
    Case(
        "containerd-SymlinkSlashEnded",
        lambda e: [
            [
                *etc_passwd(),
                dir_entry("localetc/"),
                hardlink_entry("/localetc/localpasswd", "/etc/passwd"),
            ]
        ],
        check=lambda e: _true(same_inode(e.dest, "localetc/localpasswd", "etc/passwd")),
    ),
    Case(
        "containerd-SymlinkOverrideDirectory",
        lambda e: [
            [*etc_passwd(), dir_entry("localetc")],
            [
                symlink_entry("localetc", "/etc"),
                hardlink_entry("/localetc/localpasswd", "/etc/passwd"),
            ],
        ],
        check=lambda e: _true(
            link_of(e.dest, "localetc") == "/etc"
            and same_inode(e.dest, "etc/localpasswd", "etc/passwd")
        ),
    ),
    Case(
        "containerd-SymlinkOverrideDirectoryRelative",
        lambda e: [
            [*etc_passwd(), dir_entry("localetc")],
            [
                symlink_entry("localetc", "../../etc"),
                hardlink_entry("/localetc/localpasswd", "/etc/passwd"),
            ],
        ],
        audit=["neutralised:symlink-clamped"],
        check=lambda e: _true(same_inode(e.dest, "etc/localpasswd", "etc/passwd")),
    ),
    Case(
        "containerd-DirectoryOverrideSymlink",
        lambda e: [
            [*etc_passwd(), symlink_entry("localetc", "/etc")],
            [dir_entry("/localetc/"), hardlink_entry("/localetc/localpasswd", "/etc/passwd")],
        ],
        check=lambda e: _true(
            inside(e.dest, "localetc").is_dir()
            and same_inode(e.dest, "localetc/localpasswd", "etc/passwd")
        ),
    ),
    Case(
        "containerd-DirectoryOverrideSymlinkAndHardlink",
        lambda e: [
            [
                *etc_passwd(),
                symlink_entry("localetc", "etc"),
                hardlink_entry("localetc/localpasswd", "/etc/passwd"),
            ],
            [dir_entry("/localetc/"), file_entry("/localetc/localpasswd", b"different")],
        ],
        check=lambda e: _true(
            not same_inode(e.dest, "localetc/localpasswd", "etc/passwd")
            and content(e.dest, "etc/passwd") == b"inside"
            and content(e.dest, "localetc/localpasswd") == b"different"
        ),
    ),
    *[
        # a whiteout of "..", or of ".", is refused: the lower layer stays
        Case(
            f"containerd-{label}",
            lambda e, whiteout=whiteout: [etc_passwd(), [file_entry(whiteout)]],
            audit=["refused:whiteout-invalid"],
            check=passwd_kept,
        )
        for label, whiteout in (
            ("WhiteoutRootParent", ".wh..."),
            ("WhiteoutParent", "etc/.wh..."),
            ("WhiteoutRoot", ".wh.."),
            ("WhiteoutCurrentDirectory", "etc/.wh.."),
        )
    ],
    Case(
        "containerd-WhiteoutSymlink",
        lambda e: [
            [
                dir_entry("etc"),
                file_entry("etc/passwd", b"all users"),
                symlink_entry("localetc", "/etc"),
            ],
            [file_entry(".wh.localetc")],
        ],
        check=lambda e: _true(
            content(e.dest, "etc/passwd") == b"all users" and absent(e.dest, "localetc")
        ),
    ),
    Case(
        "containerd-WhiteoutSymlinkPath",
        lambda e: [
            [
                dir_entry("etc"),
                file_entry("etc/passwd", b"all users"),
                file_entry("etc/whitedout", b"ahhhh whiteout"),
                symlink_entry("localetc", "/etc"),
            ],
            [file_entry("localetc/.wh.whitedout")],
        ],
        check=lambda e: _true(
            content(e.dest, "etc/passwd") == b"all users" and absent(e.dest, "etc/whitedout")
        ),
    ),
    Case(
        "containerd-WhiteoutDirectoryName",
        lambda e: [
            [
                dir_entry("etc"),
                file_entry("etc/passwd", b"all users"),
                symlink_entry("localetc", "/etc"),
            ],
            [file_entry(".wh.etc/somefile", b"non-empty")],
        ],
        check=lambda e: _true(
            content(e.dest, "etc/passwd") == b"all users"
            and content(e.dest, ".wh.etc/somefile") == b"non-empty"
        ),
    ),
    Case(
        "containerd-WhiteoutDeadSymlinkParent",
        lambda e: [
            [
                dir_entry("etc"),
                file_entry("etc/passwd", b"all users"),
                symlink_entry("localetc", "/dne"),
            ],
            [file_entry("localetc/.wh.etc")],
        ],
        check=lambda e: _eq(content(e.dest, "etc/passwd"), b"all users"),
    ),
    Case(
        "containerd-WhiteoutRelativePath",
        lambda e: [
            [
                dir_entry("etc"),
                file_entry("etc/passwd", b"all users"),
                symlink_entry("localetc", "/dne"),
            ],
            [file_entry("dne/../.wh.etc")],
        ],
        check=lambda e: _true(absent(e.dest, "etc")),
    ),
    Case(
        "containerd-HardlinkSymlinkBeforeCreateTarget",
        lambda e: [
            [
                dir_entry("etc", mode=0o770),
                symlink_entry("localpasswd", "/etc/passwd"),
                hardlink_entry("localpasswd-dup", "localpasswd"),
                file_entry("/etc/passwd", b"after"),
            ]
        ],
        check=lambda e: _true(
            same_inode(e.dest, "localpasswd-dup", "localpasswd")
            and link_of(e.dest, "localpasswd-dup") == "/etc/passwd"
            and content(e.dest, "etc/passwd") == b"after"
        ),
    ),
    Case(
        "containerd-HardlinkSymlinkRelative",
        lambda e: [
            [
                *etc_passwd(),
                symlink_entry("passwdlink", "../../../../../etc/passwd"),
                hardlink_entry("localpasswd", "/passwdlink"),
            ]
        ],
        check=lambda e: _true(
            same_inode(e.dest, "localpasswd", "passwdlink")
            and link_of(e.dest, "localpasswd") == "../../../../../etc/passwd"
        ),
    ),
    Case(
        "containerd-HardlinkSymlinkAbsolute",
        lambda e: [
            [
                *etc_passwd(),
                symlink_entry("passwdlink", "/etc/passwd"),
                hardlink_entry("localpasswd", "/passwdlink"),
            ]
        ],
        check=lambda e: _true(same_inode(e.dest, "localpasswd", "passwdlink")),
    ),
    Case(
        # a symlink whose *name* is an absolute host path, pointing at a 0400 host file, then
        # a hard link to it: the host file's mode must stay 0400 (nothing chmods through it)
        "containerd-HardlinkSymlinkChmod",
        lambda e: [
            [
                symlink_entry(str(e.tmp / "also-exists-outside-root"), str(e.victim / "perm400")),
                hardlink_entry("sketchylink", str(e.tmp / "also-exists-outside-root")),
            ]
        ],
        check=lambda e: _true(
            stat.S_IMODE(os.lstat(e.victim / "perm400").st_mode) == 0o400
            and same_inode(
                e.dest, "sketchylink", str(e.tmp / "also-exists-outside-root").lstrip("/")
            )
        ),
    ),
    # moby pkg/archive TestUntarInvalid* -----------------------------------------------------
    *[
        Case(
            f"moby-InvalidFilenames-{label}",
            lambda e, up=up, label=label: [[file_entry(f"{up}victim/{label}")]],
            audit=["refused:name-escapes"],
        )
        for label, up in (("dotdot", "../"), ("slash-dotdot", "/../"))
    ],
    *[
        Case(
            f"moby-InvalidHardlink-{label}",
            lambda e, up=up, label=label: [[hardlink_entry(label, f"{up}victim/hello")]],
            audit=["refused:link-escapes"],
        )
        for label, up in (("dotdot", "../"), ("slash-dotdot", "/../"))
    ],
    Case(
        "moby-InvalidHardlink-write",
        lambda e: [
            [
                hardlink_entry("loophole-victim", "../victim"),
                file_entry("loophole-victim/file", b"x"),
            ]
        ],
        audit=["refused:link-escapes"],
        check=lambda e: _eq(content(e.dest, "loophole-victim/file"), b"x"),
    ),
    Case(
        "moby-InvalidHardlink-then-symlink",
        lambda e: [
            [
                hardlink_entry("loophole-victim", "../victim"),
                symlink_entry("symlink", "loophole-victim/hello"),
            ]
        ],
        audit=["refused:link-escapes"],
        check=lambda e: _eq(link_of(e.dest, "symlink"), "loophole-victim/hello"),
    ),
    Case(
        "moby-InvalidHardlink-then-hardlink",
        lambda e: [
            [
                hardlink_entry("loophole-victim", "../victim"),
                hardlink_entry("hardlink", "loophole-victim/hello"),
            ]
        ],
        audit=["refused:link-escapes", "refused:link-target-missing"],
    ),
    Case(
        "moby-InvalidHardlink-remove-victim",
        lambda e: [[hardlink_entry("loophole-victim", "../victim"), file_entry("loophole-victim")]],
        audit=["refused:link-escapes"],
        check=lambda e: _eq(content(e.dest, "loophole-victim"), b""),
    ),
    Case(
        "moby-InvalidSymlink-dotdot",
        lambda e: [[symlink_entry("dotdot", "../victim/hello")]],
        check=lambda e: _eq(link_of(e.dest, "dotdot"), "../victim/hello"),
    ),
    Case(
        "moby-InvalidSymlink-slash-dotdot",
        lambda e: [[symlink_entry("slash-dotdot", "/../victim/hello")]],
        check=lambda e: _eq(link_of(e.dest, "slash-dotdot"), "/../victim/hello"),
    ),
    Case(
        "moby-InvalidSymlink-write",
        lambda e: [
            [
                symlink_entry("loophole-victim", "../victim"),
                file_entry("loophole-victim/file", b"x"),
            ]
        ],
        audit=["neutralised:symlink-clamped"],
        check=lambda e: _eq(content(e.dest, "victim/file"), b"x"),
    ),
    Case(
        "moby-InvalidSymlink-symlink",
        lambda e: [
            [
                symlink_entry("loophole-victim", "../victim"),
                symlink_entry("symlink", "loophole-victim/hello"),
            ]
        ],
        check=lambda e: _eq(link_of(e.dest, "symlink"), "loophole-victim/hello"),
    ),
    Case(
        "moby-InvalidSymlink-hardlink",
        lambda e: [
            [
                symlink_entry("loophole-victim", "../victim"),
                hardlink_entry("hardlink", "loophole-victim/hello"),
            ]
        ],
        audit=["refused:link-target-missing"],
    ),
    Case(
        "moby-InvalidSymlink-remove-victim",
        lambda e: [[symlink_entry("loophole-victim", "../victim"), file_entry("loophole-victim")]],
        audit=["neutralised:duplicate"],
        check=lambda e: _eq(content(e.dest, "loophole-victim"), b""),
    ),
    Case(
        "moby-InvalidSymlink-newdir",
        lambda e: [
            [
                symlink_entry("dir/loophole", "../../victim"),
                file_entry("dir/loophole/newdir/newfile", b"x"),
            ]
        ],
        audit=["neutralised:symlink-clamped"],
        check=lambda e: _eq(content(e.dest, "victim/newdir/newfile"), b"x"),
    ),
    Case(
        "moby-HardlinkToSymlink",
        lambda e: [
            [
                symlink_entry("symlink1", "regfile"),
                hardlink_entry("symlink2", "symlink1"),
                file_entry("regfile", b"r"),
            ]
        ],
        check=lambda e: _true(
            same_inode(e.dest, "symlink1", "symlink2") and link_of(e.dest, "symlink2") == "regfile"
        ),
    ),
    # umoci oci/layer tar_extract tests --------------------------------------------------------
    Case(
        "umoci-SanitiseScoping-GarbagePrefix",
        lambda e: [[file_entry("/../file", b"container content")]],
        audit=["refused:name-escapes"],
    ),
    Case(
        "umoci-SanitiseScoping-DotDotPrefix",
        lambda e: [[file_entry("../file", b"container content")]],
        audit=["refused:name-escapes"],
    ),
    *[
        Case(
            f"umoci-SymlinkScoping-{label}",
            lambda e, target=target: [
                [symlink_entry("link", target)],
                [file_entry("link/file", b"container content")],
            ],
            audit=clamp,
            check=lambda e: _eq(content(e.dest, "file"), b"container content"),
        )
        for label, target, clamp in (
            ("RootPrefix", "/", []),
            ("GarbagePrefix1", "/../", ["neutralised:symlink-clamped"]),
            (
                "GarbagePrefix2",
                "/../../../../../../../../../../../../../../../",
                ["neutralised:symlink-clamped"],
            ),
            (
                "GarbagePrefix3",
                "/./.././.././.././.././.././.././.././.././../",
                ["neutralised:symlink-clamped"],
            ),
            ("DotDotPrefix", "..", ["neutralised:symlink-clamped"]),
        )
    ],
    Case(
        "umoci-UnpackHardlink",
        lambda e: [
            [
                file_entry("regular", b"some content"),
                hardlink_entry("hard link", "/regular", uid=1337, gid=2020),
                symlink_entry("link", "../../../regular"),
                hardlink_entry("hard link to symlink", "link", uid=1337, gid=2020),
            ]
        ],
        check=lambda e: _true(
            same_inode(e.dest, "hard link", "regular")
            and same_inode(e.dest, "hard link to symlink", "link")
            and os.lstat(e.dest / "regular").st_uid == 0
            and link_of(e.dest, "hard link to symlink") == "../../../regular"
        ),
    ),
    # the list -------------------------------------------------------------------------
    Case(
        "root-as-symlink",
        lambda e: [
            [symlink_entry("./", "/"), symlink_entry(".", e.outside), file_entry("x", b"x")]
        ],
        audit=["refused:root-type", "refused:root-type"],
        check=lambda e: _true(not e.dest.is_symlink() and content(e.dest, "x") == b"x"),
    ),
    Case(
        "root-as-file-and-hardlink",
        lambda e: [[file_entry("/", b"x"), hardlink_entry(".", "x"), file_entry("x", b"x")]],
        audit=["refused:root-type", "refused:root-type"],
    ),
    Case(
        "same-path-dir-then-symlink",
        lambda e: [
            [
                dir_entry("a"),
                file_entry("a/f", b"1"),
                symlink_entry("a", e.outside),
                file_entry("a/g", b"2"),
            ]
        ],
        audit=["neutralised:duplicate"],
        check=lambda e: _true(
            link_of(e.dest, "a") == e.outside
            and content(e.dest, e.outside.lstrip("/") + "/g") == b"2"
        ),
    ),
    Case(
        "same-path-file-then-dir",
        lambda e: [[file_entry("a", b"1"), dir_entry("a"), file_entry("a/g", b"2")]],
        audit=["neutralised:duplicate"],
        check=lambda e: _eq(content(e.dest, "a/g"), b"2"),
    ),
    Case(
        "same-path-file-then-implied-dir",
        lambda e: [[file_entry("a", b"1"), file_entry("a/g", b"2")]],
        audit=["neutralised:duplicate"],
        check=lambda e: _eq(content(e.dest, "a/g"), b"2"),
    ),
    Case(
        "symlink-loop",
        lambda e: [[symlink_entry("a", "b"), symlink_entry("b", "a"), file_entry("a/x", b"x")]],
        audit=["refused:symlink-loop"],
    ),
    Case(
        # the example taken literally: /etc -> /etc is a loop (filepath-securejoin
        # answers ELOOP too); the host's /etc is never involved
        "symlink-self-loop-across-layers",
        lambda e: [[symlink_entry("etc", "/etc")], [file_entry(f"etc/{e.marker}", b"x")]],
        audit=["refused:symlink-loop"],
        check=lambda e: _eq(link_of(e.dest, "etc"), "/etc"),
    ),
    Case(
        "symlink-chain-40-is-fine",
        lambda e: [
            [
                dir_entry("real"),
                *[symlink_entry(f"l{i}", f"l{i + 1}") for i in range(39)],
                symlink_entry("l39", "real"),
            ],
            [file_entry("l0/x", b"x")],
        ],
        check=lambda e: _eq(content(e.dest, "real/x"), b"x"),
    ),
    Case(
        "symlink-chain-41-is-a-loop",
        lambda e: [
            [
                dir_entry("real"),
                *[symlink_entry(f"l{i}", f"l{i + 1}") for i in range(40)],
                symlink_entry("l40", "real"),
            ],
            [file_entry("l0/x", b"x")],
        ],
        audit=["refused:symlink-loop"],
    ),
    Case(
        "symlink-to-outside-written-through-next-layer",
        lambda e: [
            [symlink_entry("evil", e.outside)],
            [file_entry("evil/hello", b"owned"), dir_entry("evil/sub", mode=0o777)],
        ],
        check=lambda e: _eq(content(e.dest, e.outside.lstrip("/") + "/hello"), b"owned"),
    ),
    Case(
        "symlink-to-outside-file-replaced-by-file",
        lambda e: [
            [symlink_entry("f", e.outside + "/hello")],
            [file_entry("f", b"new", mode=0o777)],
        ],
        check=lambda e: _eq(content(e.dest, "f"), b"new"),
    ),
    Case(
        "symlink-to-outside-dir-replaced-by-dir",
        lambda e: [
            [symlink_entry("d", e.outside)],
            [dir_entry("d", mode=0o777), file_entry("d/x", b"x")],
        ],
        check=lambda e: _true(
            stat.S_IMODE(os.lstat(inside(e.dest, "d")).st_mode) == 0o777
            and content(e.dest, "d/x") == b"x"
        ),
    ),
    Case(
        "hardlink-to-absolute-host-path",
        lambda e: [[hardlink_entry("x", e.outside + "/hello")]],
        audit=["refused:link-target-missing"],
    ),
    Case(
        "hardlink-through-symlink-to-outside",
        lambda e: [[symlink_entry("out", e.outside)], [hardlink_entry("x", "out/hello")]],
        audit=["refused:link-target-missing"],
    ),
    Case(
        "hardlink-to-directory",
        lambda e: [[dir_entry("dir"), hardlink_entry("x", "dir")]],
        audit=["refused:link-to-directory"],
    ),
    Case(
        "hardlink-to-itself",
        lambda e: [[file_entry("x", b"1"), hardlink_entry("x", "x")]],
        audit=["refused:link-to-itself"],
        check=lambda e: _eq(content(e.dest, "x"), b"1"),
    ),
    Case(
        "whiteout-through-symlink-to-outside",
        lambda e: [
            [symlink_entry("loophole", e.outside)],
            [file_entry("loophole/.wh.hello"), file_entry("loophole/.wh.sub")],
        ],
    ),
    Case(
        "opaque-through-symlink-to-outside",
        lambda e: [[symlink_entry("loophole", e.outside)], [file_entry("loophole/.wh..wh..opq")]],
    ),
    Case(
        "opaque-through-clamped-symlink",
        lambda e: [
            [
                dir_entry("victim"),
                file_entry("victim/mine", b"m"),
                symlink_entry("loophole", "../../victim"),
            ],
            [file_entry("loophole/.wh..wh..opq")],
        ],
        audit=["neutralised:symlink-clamped"],
        check=lambda e: _true(absent(e.dest, "victim/mine") and inside(e.dest, "victim").is_dir()),
    ),
    Case(
        "whiteout-of-symlink-to-outside-dir",
        lambda e: [[symlink_entry("loophole", e.outside)], [file_entry(".wh.loophole")]],
        check=lambda e: _true(absent(e.dest, "loophole")),
    ),
    Case(
        "pax-path-escape",
        lambda e: [
            [
                file_entry("../../victim/pax", b"x", pax_path=True),
                file_entry("ok", b"ok", pax_path=True),
            ]
        ],
        audit=["refused:name-escapes"],
        check=lambda e: _eq(content(e.dest, "ok"), b"ok"),
    ),
    Case(
        "aufs-metadata-hidden",
        lambda e: [[file_entry(".wh..wh.plnk/123.456", b"x"), file_entry("kept", b"k")]],
        check=lambda e: _true(absent(e.dest, ".wh..wh.plnk") and content(e.dest, "kept") == b"k"),
    ),
    Case(
        "device-nodes-skipped",
        lambda e: [
            [Entry("null", "char", devmajor=1, devminor=3), Entry("sda", "block", devmajor=8)]
        ],
        audit=["skipped:device", "skipped:device"],
        check=lambda e: _true(absent(e.dest, "null") and absent(e.dest, "sda")),
    ),
    Case(
        # the kernel takes 4,095 bytes; a tar carries 70 KB as easily, and export wrote it
        "symlink-target-beyond-PATH_MAX",
        lambda e: [
            [
                symlink_entry("max", "t" * 4095),
                symlink_entry("long", "t" * 4096),
                symlink_entry("huge", "t" * 70_000),
            ]
        ],
        audit=["refused:symlink-target-too-long"] * 2,
        check=lambda e: _true(
            link_of(e.dest, "max") == "t" * 4095
            and absent(e.dest, "long")
            and absent(e.dest, "huge")
        ),
    ),
    Case(
        "unsupported-type",
        lambda e: [[Entry("sparse", "Z", data=b"x"), file_entry("after", b"a")]],
        audit=["skipped:unsupported-type"],
        check=lambda e: _true(absent(e.dest, "sparse") and content(e.dest, "after") == b"a"),
    ),
]


def _eq(got: object, expected: object) -> None:
    assert got == expected


def _true(value: bool) -> None:
    assert value


@pytest.mark.parametrize("two_pass", [False, True], ids=["one-pass", "two-pass"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile(env: Env, case: Case, two_pass: bool) -> None:
    """Each case applied layer by layer, and planned then made (``twopass.py``, which runs
    for one layer too when asked): the same audit and the same tree."""
    result = run(env, case.layers(env), two_pass=two_pass)
    assert reasons(result) == case.audit
    if case.check is not None:
        case.check(env)


def test_there_are_at_least_40_hostile_cases() -> None:
    assert len({case.id for case in CASES}) == len(CASES) >= 40


# -- cases that need more than one image or a special set-up -----------------------------------
@pytest.mark.skipif(not ROOT, reason="device nodes need root")
def test_devices_created_as_root_with_devices(env: Env) -> None:
    result = run(
        env,
        [[Entry("null", "char", mode=0o666, devmajor=1, devminor=3), Entry("p", "fifo")]],
        devices=True,
    )
    assert reasons(result) == []
    st = os.lstat(inside(env.dest, "null"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666
    assert stat.S_ISFIFO(os.lstat(inside(env.dest, "p")).st_mode)


def test_deep_tree_then_opaque_whiteout(env: Env) -> None:
    """Removal is iterative and descriptor-based: a tree deeper than Python's recursion
    limit (and than PATH_MAX) goes away without a trace outside."""
    deep = "/".join(["d"] * 1500)
    result = run(
        env,
        [
            [file_entry(f"top/{deep}/leaf", b"x"), file_entry("top/keep", b"k")],
            [file_entry("top/.wh..wh..opq")],
        ],
    )
    assert reasons(result) == []
    assert list(inside(env.dest, "top").iterdir()) == []


def test_deep_tree_of_the_same_layer_survives_its_opaque_whiteout(env: Env) -> None:
    """An opaque whiteout walks down the layer's own deep tree (more levels than it keeps
    open at once) and removes only what lower layers left."""
    deep = "/".join(["d"] * 300)
    result = run(
        env,
        [
            [file_entry("top/lower", b"l"), file_entry(f"top/{'/'.join(['d'] * 200)}/lower", b"l")],
            [file_entry(f"top/{deep}/leaf", b"x"), file_entry("top/.wh..wh..opq")],
        ],
    )
    assert reasons(result) == []
    assert content(env.dest, f"top/{deep}/leaf") == b"x"
    assert absent(env.dest, "top/lower")
    assert absent(env.dest, f"top/{'/'.join(['d'] * 200)}/lower")


def test_names_the_system_refuses_are_reported(env: Env) -> None:
    result = run(
        env,
        [
            [
                file_entry("n" * 300, b"long"),
                symlink_entry("empty-target", ""),
                file_entry("fine", b"ok"),
            ]
        ],
    )
    # (a NUL in a PAX path is refused by Go's archive/tar, so the layer is:
    # tests/image/test_tar_go.py)
    assert reasons(result) == ["refused:write-failed"] * 2
    assert content(env.dest, "fine") == b"ok"


def test_umoci_whiteout_keeps_parent_mtime(env: Env) -> None:
    """umoci's TestUnpackEntryWhiteout: the path goes, its parent's metadata stays."""
    for path, is_dir in (
        ("rootpath", False),
        (".hiddenroot", False),
        ("some/path/file", False),
        ("another/path/.hiddenfile", False),
        ("dirpath", True),
        ("some/path/dir", True),
        ("another/path/.hiddendir", True),
    ):
        parent, _, name = path.rpartition("/")
        lower: list[Entry] = []
        if parent:
            lower.append(dir_entry(parent, mtime=123))
        if is_dir:
            lower += [
                dir_entry(path),
                file_entry(f"{path}/file1"),
                dir_entry(f"{path}/.subdir"),
                file_entry(f"{path}/.subdir/file3"),
            ]
        else:
            lower.append(file_entry(path, b"some value"))
        (env.tmp / "image").exists() and _rmtree(env.tmp / "image")
        _rmtree(env.dest)
        env.dest.mkdir()
        wh = f"{parent}/.wh.{name}" if parent else f".wh.{name}"
        assert reasons(run(env, [lower, [file_entry(wh)]])) == []
        assert absent(env.dest, path)
        if parent:
            assert os.lstat(inside(env.dest, parent)).st_mtime_ns == 123 * 10**9


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)
