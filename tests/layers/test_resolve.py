"""The one path resolver (``inspect_tool/model/resolve.py``) against the hostile table, over an
in-memory tree: what every caller (unpack, export, ``cat``/``ls``, engine evidence, image
directories and archives, volume mount points) relies on. The callers' own tests check their
I/O; here only the walk."""

from __future__ import annotations

import pytest

from inspect_tool.model.resolve import (
    DIRECTORY,
    MAX_SYMLINKS,
    NOT_DIRECTORY,
    Escape,
    Missing,
    Node,
    Reason,
    Refusal,
    Resolved,
    Via,
    resolve,
    symlink,
)

Parts = tuple[str, ...]


class Tree:
    """Paths (without a leading slash) to nodes; every query is recorded."""

    def __init__(self, **nodes: Node) -> None:
        self.nodes = {name.replace("__", "/"): node for name, node in nodes.items()}
        self.asked: list[str] = []

    def __call__(self, parts: Parts) -> Node | None:
        name = "/".join(parts)
        self.asked.append(name)
        return self.nodes.get(name)


def tree(*dirs: str, files: tuple[str, ...] = (), **links: str) -> Tree:
    nodes = {d.replace("/", "__"): DIRECTORY for d in dirs}
    nodes |= {f.replace("/", "__"): NOT_DIRECTORY for f in files}
    nodes |= {name: symlink(target) for name, target in links.items()}
    return Tree(**nodes)


def parts(found: Resolved | Refusal) -> str:
    assert isinstance(found, Resolved), found
    return "/".join(found.parts)


# (case, tree, path, resolved): each resolves inside the root, as if the root were /
INSIDE = [
    ("plain", tree("a", "a/b"), "a/b", "a/b"),
    ("dot and empty components", tree("a", "a/b"), "./a//./b/", "a/b"),
    ("absolute link restarts at the root", tree("etc", "d", d__l="/etc"), "d/l", "etc"),
    ("absolute link, path below it", tree("d", "etc", "etc/x", d__l="/etc"), "d/l/x", "etc/x"),
    ("dotdot above the root stays at it", tree("etc"), "../../etc", "etc"),
    ("link up and out", tree("d", up="../../../../.."), "up", ""),
    ("link up and out, then down", tree("tmp", up="../../.."), "up/tmp", "tmp"),
    ("links through links", tree("c", "c/d", a="b", b="c/d"), "a", "c/d"),
    ("multiple absolute links", tree("x", "x/y", a="/b", b="/x/c", x__c="/x/y"), "a", "x/y"),
    ("multiple relative links", tree("x", "x/y", a="b", b="x/c", x__c="y"), "a", "x/y"),
    ("a link replacing a directory", tree("other", "other/f", dir="/other"), "dir/f", "other/f"),
    ("dotdot is the kernel's, not lexical", tree("a", "a/b", l="a/b"), "l/..", "a"),
    ("slash-ended link target", tree("d", l="d/"), "l", "d"),
    ("empty link target stays put", tree("d", d__l=""), "d/l", "d"),
    ("a last link is followed", tree("t", l="t"), "l", "t"),
]


@pytest.mark.parametrize(("case", "lookup", "path", "expected"), INSIDE, ids=[c[0] for c in INSIDE])
def test_paths_resolve_inside_the_root(case: str, lookup: Tree, path: str, expected: str) -> None:
    assert parts(resolve(path, lookup)) == expected


def test_lookup_is_asked_only_below_resolved_directories() -> None:
    lookup = tree("a", "etc", a__l="/etc", up="../..")
    assert parts(resolve("a/l/../up/etc", lookup)) == "etc"
    assert lookup.asked == ["a", "a/l", "etc", "up", "etc"]


def test_clamped_says_a_dotdot_stopped_at_the_root() -> None:
    found = resolve("up/x", tree("x", up=".."))
    assert isinstance(found, Resolved) and found.clamped and found.parts == ("x",)
    found = resolve("a/../x", tree("a", "x"))
    assert isinstance(found, Resolved) and not found.clamped


@pytest.mark.parametrize(
    ("links", "path"),
    [
        ({"loop": "loop"}, "loop"),
        ({"a": "b", "b": "a"}, "a/x"),
        ({"a": "./a"}, "a"),
        ({"a": "/a/x"}, "a"),
    ],
    ids=["self", "pair", "dot", "absolute"],
)
def test_loops_are_refused(links: dict[str, str], path: str) -> None:
    found = resolve(path, tree(**links))
    assert isinstance(found, Refusal) and found.reason is Reason.LOOP


def test_forty_links_resolve_and_forty_one_are_a_loop() -> None:
    chain = {f"l{i}": f"l{i + 1}" for i in range(MAX_SYMLINKS + 1)}
    assert MAX_SYMLINKS == 40
    lookup = tree("l41", **chain)
    assert parts(resolve(f"l{1}", lookup)) == "l41"  # l1 -> ... -> l41: 40 links
    found = resolve("l0", lookup)  # 41 links
    assert isinstance(found, Refusal) and found.reason is Reason.LOOP


def test_a_parent_that_is_not_a_directory_is_refused_with_its_origin() -> None:
    lookup = tree("d", files=("f", "d/g"), l="d/g")
    found = resolve("f/x", lookup)
    assert found == Refusal(Reason.NOT_DIRECTORY, ("f",), None, NOT_DIRECTORY.kind)
    found = resolve("l/x", lookup)
    assert found == Refusal(
        Reason.NOT_DIRECTORY, ("d", "g"), Via(("l",), "d/g"), NOT_DIRECTORY.kind
    )
    assert parts(resolve("l", lookup)) == "d/g"  # the last component may be a file
    found = resolve("l", lookup, directory=True)
    assert isinstance(found, Refusal) and found.reason is Reason.NOT_DIRECTORY


def test_follow_last_false_keeps_a_last_link() -> None:
    lookup = tree("t", "t/u", l="t", m="l/u")
    assert parts(resolve("l", lookup, follow_last=False)) == "l"
    assert parts(resolve("m", lookup, follow_last=False)) == "m"
    assert parts(resolve("l/u", lookup, follow_last=False)) == "t/u"  # parents still followed


def test_missing_components() -> None:
    lookup = tree("a", d="/a/new")
    found = resolve("a/x/y", lookup)
    assert found == Refusal(Reason.MISSING, ("a", "x"))
    found = resolve("a/x/y", lookup, missing=Missing.LEXICAL)
    assert found == Resolved(("a",), ("x", "y"))
    # taken lexically: a later .. cancels a missing component, and lookups resume after it
    lookup.asked.clear()
    found = resolve("d/x/../../z", lookup, missing=Missing.LEXICAL)
    assert found == Resolved(("a",), ("z",))
    assert lookup.asked == ["d", "a", "a/new", "a/z"]
    # a link through a missing component is never looked up
    assert resolve("a/x/d", lookup, missing=Missing.LEXICAL) == Resolved(("a",), ("x", "d"))


def test_missing_components_created_as_the_caller_asks() -> None:
    lookup = tree("etc", abs="/etc")
    made: list[tuple[str, bool]] = []

    def create(path: Parts, last: bool) -> Node:
        made.append(("/".join(path), last))
        lookup.nodes["/".join(path)] = NOT_DIRECTORY if last else DIRECTORY
        return lookup.nodes["/".join(path)]

    found = resolve("abs/new/file", lookup, missing=Missing.CREATE, create=create)
    assert parts(found) == "etc/new/file"
    assert made == [("etc/new", False), ("etc/new/file", True)]


def test_escape_refused_names_the_link() -> None:
    lookup = tree("d", "d/e", d__up="../..", d__abs="/etc", d__deep="e/../..")
    found = resolve("d/up/x", lookup, escape=Escape.REFUSE)
    assert found == Refusal(Reason.ESCAPES, (), Via(("d", "up"), "../.."))
    found = resolve("d/abs", lookup, escape=Escape.REFUSE)
    assert found == Refusal(Reason.ABSOLUTE, ("d", "abs"), Via(("d", "abs"), "/etc"))
    assert parts(resolve("d/deep", lookup, escape=Escape.REFUSE)) == ""
    found = resolve("d/deep/..", lookup, escape=Escape.REFUSE)
    assert isinstance(found, Refusal) and found.reason is Reason.ESCAPES and found.via is None


def test_start_resumes_below_a_resolved_directory() -> None:
    lookup = tree("a", "a/b", "c", a__b__l="../../c")
    found = resolve("b/l", lookup, start=("a",))
    assert parts(found) == "c"
    found = resolve("../..", lookup, start=("a",))
    assert isinstance(found, Resolved) and found.parts == () and found.clamped
