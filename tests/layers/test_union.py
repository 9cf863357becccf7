"""The merged filesystem: OCI whiteout and opaque semantics, replacement, hostile names."""

from __future__ import annotations

import itertools

import pytest

from inspect_tool.layers.tarformat import EntryType
from inspect_tool.layers.tarreader import TarMember
from inspect_tool.layers.union import (
    MAX_PATH_BYTES,
    ChangeKind,
    PathTooLongError,
    UnionFS,
    clean_member_path,
)

_offset = 0


def member(
    name: str, kind: EntryType = EntryType.FILE, size: int = 0, link: str = "", mode: int = 0o644
) -> TarMember:
    global _offset
    _offset += 512
    return TarMember(name, kind, "0", mode, 0, 0, "", "", 0.0, size, link, 0, 0, _offset)


def dir_member(name: str, mode: int = 0o755) -> TarMember:
    return member(name, EntryType.DIR, mode=mode)


def paths(union: UnionFS) -> list[str]:
    return [f.path for f in union.walk()]


def test_whiteout_removes_lower_entry_and_subtree() -> None:
    union = UnionFS()
    union.apply(
        0,
        [
            dir_member("a"),
            member("a/x", size=5),
            dir_member("a/sub"),
            member("a/sub/y", size=7),
            member("b", size=1),
        ],
    )
    changes = union.apply(1, [member("a/.wh.sub")])
    assert paths(union) == ["/a", "/a/x", "/b"]
    assert changes.deleted == 1 and changes.wasted == 7
    assert [(c.kind, c.path) for c in changes.changes] == [(ChangeKind.DELETED, "/a/sub")]


def test_whiteout_never_hides_an_entry_of_its_own_layer() -> None:
    for order in ([member(".wh.f"), member("f", size=2)], [member("f", size=2), member(".wh.f")]):
        union = UnionFS()
        union.apply(0, [member("f", size=1)])
        union.apply(1, order)
        info = union.get("/f")
        assert info is not None and info.size == 2 and info.layer == 1


def test_opaque_directory_hides_lower_children_only() -> None:
    union = UnionFS()
    union.apply(
        0,
        [
            dir_member("etc"),
            member("etc/old", size=3),
            dir_member("etc/deep"),
            member("etc/deep/z", size=4),
        ],
    )
    changes = union.apply(
        1, [member("etc/new", size=1), member("etc/.wh..wh..opq"), member("etc/deep/q")]
    )
    assert paths(union) == ["/etc", "/etc/deep", "/etc/deep/q", "/etc/new"]
    assert changes.wasted == 7


def test_aufs_metadata_is_hidden() -> None:
    union = UnionFS()
    union.apply(
        0,
        [
            dir_member(".wh..wh.plnk"),
            member(".wh..wh.plnk/123.456", size=9),
            member(".wh..wh.aufs"),
            member("real"),
        ],
    )
    assert paths(union) == ["/real"]


def test_replacement_by_another_type_and_implicit_parents() -> None:
    union = UnionFS()
    union.apply(
        0,
        [
            dir_member("x"),
            member("x/inner", size=10),
            member("link", EntryType.SYMLINK, link="/etc"),
        ],
    )
    changes = union.apply(1, [member("x", size=1), member("link/below", size=2)])
    x = union.get("/x")
    assert x is not None and x.type is EntryType.FILE
    link = union.get("/link")
    assert link is not None and link.type is EntryType.DIR and link.implicit
    assert paths(union) == ["/link", "/link/below", "/x"]
    assert changes.wasted == 10
    kinds = {c.path: c.kind for c in changes.changes}
    assert kinds["/x"] is ChangeKind.MODIFIED and kinds["/link"] is ChangeKind.MODIFIED


def test_restated_directory_keeps_children_and_counts_only_real_changes() -> None:
    union = UnionFS()
    union.apply(0, [dir_member("etc"), member("etc/a")])
    same = union.apply(1, [dir_member("etc"), member("etc/b")])
    assert same.modified == 0 and same.added == 1
    chmod = union.apply(2, [dir_member("etc", mode=0o700)])
    assert chmod.modified == 1
    assert paths(union) == ["/etc", "/etc/a", "/etc/b"]


def test_hostile_names_become_anomalies() -> None:
    union = UnionFS()
    result = union.apply(
        0,
        [
            member("../../etc/passwd"),
            member("a/../../b"),
            member(".wh.."),
            member(".wh..."),
            member(".wh."),
            member("ok/../fine"),
        ],
    )
    assert paths(union) == ["/fine"]
    assert len(result.anomalies) == 5


def test_on_remove_reports_reasons() -> None:
    seen: list[tuple[str, int, str]] = []
    union = UnionFS(on_remove=lambda info, layer, why: seen.append((info.path, layer, why)))
    union.apply(0, [member("a"), member("b"), dir_member("c"), member("c/d")])
    union.apply(1, [member("a", size=1), member(".wh.b"), member("c")])
    assert sorted(seen) == [
        ("/a", 1, "replaced"),
        ("/b", 1, "deleted"),
        ("/c", 1, "replaced"),
        ("/c/d", 1, "deleted"),
    ]


def test_deep_tree_does_not_hit_the_recursion_limit() -> None:
    union = UnionFS()
    deep = "/".join(["d"] * 2045)  # "/d/…/d/leaf" is 4,095 bytes: the longest path allowed
    union.apply(0, [member(f"{deep}/leaf", size=1)])
    assert sum(1 for _ in union.walk()) == 2046
    result = union.apply(1, [member(".wh.d")])
    assert result.wasted == 1 and paths(union) == []


def test_fork_is_independent() -> None:
    union = UnionFS()
    union.apply(0, [dir_member("a"), member("a/x")])
    twin = union.fork()
    twin.apply(1, [member("a/.wh.x"), member("a/y")])
    assert paths(union) == ["/a", "/a/x"]
    assert paths(twin) == ["/a", "/a/y"]


def test_clean_member_path_reads_every_name_part_by_part() -> None:
    # every name of up to seven characters from "a", "." and "/": the ones already clean take
    # a shortcut, which must give what the part-by-part reading gives
    names = ["".join(chars) for n in range(8) for chars in itertools.product("a./", repeat=n)] + [
        "usr/bin/",
        "./usr/bin",
        "usr/.hidden",
        "usr/..",
        "a/../../b",
        ".wh..wh..opq",
    ]
    for name in names:
        # a leading "/" never takes the shortcut: the same name cleaned part by part
        assert clean_member_path(name) == clean_member_path("/" + name), name
    assert [clean_member_path(name) for name in names[-6:]] == [
        "usr/bin",
        "usr/bin",
        "usr/.hidden",
        "",
        None,
        ".wh..wh..opq",
    ]


def test_clean_member_path_bounds_the_length_on_either_path() -> None:
    deep = "/".join(["d" * 200] * 21)  # 4,220 bytes
    for name in (deep, deep + "/", "./" + deep):
        with pytest.raises(PathTooLongError):
            clean_member_path(name)
    fits = "/".join(["d" * 200] * 20)[: MAX_PATH_BYTES - 1]
    assert clean_member_path(fits) == fits
