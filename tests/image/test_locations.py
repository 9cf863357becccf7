"""skopeo's transport syntax on every IMAGE argument (sources/location.py): parsing, the
plain-path rule, selections the location carries, and errors that name the location."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from inspect_tool.errors import UsageError
from inspect_tool.sources.location import (
    DEFAULT_GRAPH_ROOT,
    Store,
    Transport,
    local_image,
    parse_location,
    written_path,
)
from tests.support.cli import invoke, ok
from tests.support.images import layer_tar, oci_layout

GGCR = "oci-layout-index-ggcr"
LEGACY = "docker-save-legacy-dive.tar"
OCI_ARCHIVE = "oci-archive-gzip-dive.tar"


@pytest.mark.parametrize(
    ("text", "transport", "path", "ref", "image"),
    [
        ("image.tar", Transport.PATH, "image.tar", None, None),
        ("a:b/c.tar", Transport.PATH, "a:b/c.tar", None, None),  # not a transport: a path
        ("./oci:x", Transport.PATH, "oci:x", None, None),
        ("/abs/oci:x", Transport.PATH, "/abs/oci:x", None, None),
        ("oci:dir", Transport.OCI, "dir", None, None),
        ("oci:dir:v1", Transport.OCI, "dir", "v1", None),
        ("oci:dir:name:tag", Transport.OCI, "dir", "name:tag", None),  # DIR ends at a colon
        ("oci-archive:f.tar:latest", Transport.OCI_ARCHIVE, "f.tar", "latest", None),
        ("docker-archive:f.tar", Transport.DOCKER_ARCHIVE, "f.tar", None, None),
        ("docker-archive:f.tar:busybox:1", Transport.DOCKER_ARCHIVE, "f.tar", None, "busybox:1"),
        ("docker-archive:f.tar:@0", Transport.DOCKER_ARCHIVE, "f.tar", None, "1"),  # 0-based
        ("docker-archive:f.tar:@12", Transport.DOCKER_ARCHIVE, "f.tar", None, "13"),
        ("dir:some/dir:with:colons", Transport.DIR, "some/dir:with:colons", None, None),
    ],
)
def test_parse(
    text: str, transport: Transport, path: str, ref: str | None, image: str | None
) -> None:
    location = parse_location(text)
    assert (location.transport, location.text) == (transport, text)
    assert location.path == Path(path)
    assert (location.ref, location.image) == (ref, image)


def test_parse_containers_storage() -> None:
    full = parse_location("containers-storage:[overlay@/g/root+/run/root:a=b,c=d]busybox:1")
    assert full.store == Store(Path("/g/root"), "overlay", Path("/run/root"), ("a=b", "c=d"))
    assert full.name == "busybox:1"
    plain = parse_location("containers-storage:localhost/app@sha256:" + "a" * 64)
    assert plain.store == Store(DEFAULT_GRAPH_ROOT)
    assert plain.name == "localhost/app@sha256:" + "a" * 64
    graph_only = parse_location("containers-storage:[/g]app")
    assert graph_only.store == Store(Path("/g"))


def test_parse_docker() -> None:
    location = parse_location("docker://registry.example:5000/ns/app:1")
    assert location.transport is Transport.DOCKER
    assert location.name == "registry.example:5000/ns/app:1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("oci:", "names no file or directory"),
        ("docker:busybox", "docker://HOST/NAME"),
        ("docker://", "docker://HOST/NAME"),
        ("docker-archive:f.tar:@x", "must be a number"),
        ("docker-archive:f.tar:app@sha256:" + "a" * 64, "not a digest"),
        ("docker-archive:f.tar:3", "choose an image by position with @N"),
        ("containers-storage:", "names no image"),
        ("containers-storage:[relative]app", "not absolute"),
        ("containers-storage:[vfs@/g", "no closing"),
        ("containers-storage:[@/g]app", "[driver@graphroot"),
    ],
)
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[")):
        parse_location(text)


KNOWN = "known: docker://, oci:, oci-archive:, docker-archive:, dir:, containers-storage:"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("oci-archiv:foo.tar", "; did you mean oci-archive:?"),
        ("dokcer://registry.example/app:1", "; did you mean docker://?"),
        ("containers-storag:app", "; did you mean containers-storage:?"),
        ("docker-archiv:f.tar:app:1", "; did you mean docker-archive:?"),
        ("busybox:latest", "; an image in a registry is docker://busybox:latest"),
        ("https://registry.example/app", ""),
    ],
)
def test_a_mistyped_transport_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, hint: str
) -> None:
    monkeypatch.chdir(tmp_path)
    prefix = text.partition(":")[0]
    with pytest.raises(UsageError) as raised:
        parse_location(text)
    assert str(raised.value) == f'{text}: unknown transport "{prefix}" ({KNOWN}){hint}'


@pytest.mark.parametrize("text", ["oci-archiv:foo.tar", "ab:c", "dokcer:x"])
def test_a_path_that_exists_is_never_a_mistyped_transport(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path(text).write_bytes(b"x")
    location = parse_location(text)
    assert (location.transport, location.path) == (Transport.PATH, Path(text))
    Path(text).unlink()
    Path(text).symlink_to("nowhere")  # a dangling link exists as a path too
    assert parse_location(text).transport is Transport.PATH


@pytest.mark.parametrize("text", ["a:b", "C:image.tar", "./oci-archiv:x", "Oci-archiv:x", "1a:b"])
def test_text_that_is_no_transport_name_stays_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_location(written_path(text)).transport is Transport.PATH


@pytest.mark.parametrize(
    ("text", "local"),
    [
        ("./image.tar", True),
        ("/srv/image.tar", True),
        ("~/image.tar", True),
        ("oci:layout", True),
        ("docker-archive:a.tar:app:1", True),
        ("containers-storage:app", True),
        ("here.tar", True),  # it exists
        ("docker://busybox", False),
        ("busybox", False),
        ("registry.example:5000/app:1", False),
        ("localhost:5000/app", False),
    ],
)
def test_what_pull_takes_for_a_local_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, local: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.tar").write_bytes(b"x")
    assert local_image(text) is local


def test_a_library_path_is_always_a_path() -> None:
    location = parse_location(Path("oci:x"))
    assert location.transport is Transport.PATH
    assert location.path == Path("oci:x")
    assert parse_location(Path("oci-archiv:x")).path == Path("oci-archiv:x")


def test_the_command_line_keeps_what_was_typed() -> None:
    """pathlib folds ./oci:x into oci:x and docker:// into docker:/; the argument does not."""
    assert parse_location(written_path("./oci:x")).transport is Transport.PATH
    assert parse_location(written_path("oci:x")).transport is Transport.OCI
    assert parse_location(written_path("docker://h/n")).name == "h/n"


# -- every command, through the command line -----------------------------------------------


def test_oci_ref_selects_like_dash_dash_ref(corpus: Path) -> None:
    by_location = ok(invoke("inspect", "--json", f"oci:{corpus / GGCR}:2"))
    by_option = ok(invoke("inspect", "--json", "--ref", "2", str(corpus / GGCR)))
    a, b = json.loads(by_location), json.loads(by_option)
    assert a["kind"] == b["kind"] == "image"
    assert a["manifest_digest"] == b["manifest_digest"]
    assert a["source"] == f"oci:{corpus / GGCR}:2"  # documents name the location as written
    # the same ref twice is no conflict
    ok(invoke("inspect", "--ref", "2", f"oci:{corpus / GGCR}:2"))


def test_a_selection_given_twice_differently_is_a_usage_error(corpus: Path) -> None:
    code, _, err = invoke("inspect", "--ref", "1", f"oci:{corpus / GGCR}:2")
    assert code == 2
    assert "the location chooses ref 2 and --ref 1" in err
    code, _, err = invoke("ls", "--image", "2", f"docker-archive:{corpus / LEGACY}:@0")
    assert code == 2
    assert "image @0 and --image 2" in err


def test_a_missing_ref_is_named_as_written(corpus: Path) -> None:
    code, _, err = invoke("inspect", f"oci:{corpus / GGCR}:nine")
    assert code == 2
    assert f"oci:{corpus / GGCR}:nine: ref nine: no manifest with that ref name" in err


@pytest.mark.parametrize(
    "command",
    [
        ("layers",),
        ("ls",),
        ("cat", "/README.md"),
        ("find", "README*"),
        ("efficiency",),
        ("types",),
        ("history",),
        ("tree", "--layer", "0"),
        ("verify",),
    ],
)
def test_every_command_takes_a_transport(corpus: Path, command: tuple[str, ...]) -> None:
    name, *rest = command
    plain = invoke(name, str(corpus / OCI_ARCHIVE), *rest)
    located = invoke(name, f"oci-archive:{corpus / OCI_ARCHIVE}", *rest)
    assert plain.code == located.code == 0, located.err
    if command[0] != "verify":  # verify names its source
        assert located.out == plain.out


def test_docker_archive_by_tag_and_position(corpus: Path) -> None:
    by_tag = ok(invoke("inspect", "--json", f"docker-archive:{corpus / LEGACY}:dive-test:latest"))
    by_index = ok(invoke("inspect", "--json", f"docker-archive:{corpus / LEGACY}:@0"))
    a, b = json.loads(by_tag), json.loads(by_index)
    assert a["source"] == f"docker-archive:{corpus / LEGACY}:dive-test:latest"
    assert {**a, "source": ""} == {**b, "source": ""}
    code, _, err = invoke("inspect", f"docker-archive:{corpus / LEGACY}:other:tag")
    assert code == 2
    assert "image other:tag: no image with that tag" in err


def test_diff_and_graph_take_transports(corpus: Path) -> None:
    ok(invoke("diff", f"oci-archive:{corpus / OCI_ARCHIVE}", str(corpus / OCI_ARCHIVE)))
    dot = ok(
        invoke("graph", "-o", "-", f"oci:{corpus / GGCR}:1", f"docker-archive:{corpus / LEGACY}")
    )
    assert "digraph" in dot


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("oci-archive:{GGCR}", "is a directory, not an OCI layout tar"),
        ("oci:{LEGACY}", "is a file, not an OCI layout directory"),
        ("docker-archive:{OCI_ARCHIVE}", "is not a docker save tar"),
        ("dir:{GGCR}", "is not a skopeo dir: directory"),
        ("oci:{corpus}/missing", "no such file or directory"),
    ],
)
def test_the_wrong_transport_is_named(corpus: Path, location: str, message: str) -> None:
    written = location.format(
        GGCR=corpus / GGCR, LEGACY=corpus / LEGACY, OCI_ARCHIVE=corpus / OCI_ARCHIVE, corpus=corpus
    )
    code, _, err = invoke("inspect", written)
    assert code == 3
    assert err.startswith(f"dockscope: {written}: {message}"), err


def test_a_file_named_like_a_transport(tmp_path: Path, corpus: Path) -> None:
    """A known transport prefix wins; ./oci:x (or an absolute path) is the file."""
    shutil.copyfile(corpus / OCI_ARCHIVE, tmp_path / "oci:x")
    os.chdir(tmp_path)
    ok(invoke("inspect", "./oci:x"))
    ok(invoke("inspect", str(tmp_path / "oci:x")))
    code, _, err = invoke("inspect", "oci:x")
    assert code == 3
    assert "oci:x: no such file or directory" in err


def test_a_mistyped_transport_is_one_usage_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus: Path
) -> None:
    """Not "no such file" for a file nobody meant: the transport is named, exit 2; the same
    text naming a file that exists is that file, and ./ keeps a missing one a path."""
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("inspect", "oci-archiv:foo.tar")
    assert (code, err) == (
        2,
        f'dockscope: inspect: oci-archiv:foo.tar: unknown transport "oci-archiv" ({KNOWN}); '
        "did you mean oci-archive:?\n",
    )
    code, _, err = invoke("copy", str(corpus / OCI_ARCHIVE), "oci-archiv:out.tar")
    assert code == 2 and 'unknown transport "oci-archiv"' in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # no layout written under the mistyped name
    code, _, err = invoke("inspect", "./oci-archiv:foo.tar")
    assert (code, err) == (3, "dockscope: ./oci-archiv:foo.tar: no such file or directory\n")
    shutil.copyfile(corpus / OCI_ARCHIVE, tmp_path / "oci-archiv:foo.tar")
    ok(invoke("inspect", "oci-archiv:foo.tar"))
    shutil.copyfile(corpus / OCI_ARCHIVE, tmp_path / "a:b")
    ok(invoke("inspect", "a:b"))
    ok(invoke("inspect", "./a:b"))


def test_docker_transport_goes_to_the_registry_client(corpus: Path) -> None:
    """docker:// is read from a registry; a host that does not resolve is one line, exit 3."""
    code, _, err = invoke("inspect", "docker://registry.invalid/app:1")
    assert code == 3
    assert err.startswith("dockscope: docker://registry.invalid/app:1: cannot reach"), err
    assert err.count("\n") == 1


# -- dir: ---------------------------------------------------------------------------------------


def _dir_transport(root: Path, tmp_path: Path) -> dict[str, str]:
    """A dir: directory as skopeo writes it, from an OCI layout made here."""
    layout = tmp_path / "layout"
    digests = oci_layout(layout, [layer_tar({"a.txt": b"a\n"}), layer_tar({"b.txt": b"b\n"})])
    root.mkdir()
    (root / "version").write_text("Directory Transport Version: 1.1\n")
    for blob in (layout / "blobs" / "sha256").iterdir():
        name = "manifest.json" if f"sha256:{blob.name}" == digests["manifest"] else blob.name
        shutil.copyfile(blob, root / name)
    return digests


def test_dir_transport_reads_and_verifies(tmp_path: Path) -> None:
    digests = _dir_transport(tmp_path / "d", tmp_path)
    for where in (f"dir:{tmp_path / 'd'}", str(tmp_path / "d")):  # detected without dir: too
        document = json.loads(ok(invoke("inspect", "--json", where)))
        assert document["format"] == "dir"
        assert document["manifest_digest"] == digests["manifest"]
        assert document["image_id"] == digests["config"]
    report = json.loads(ok(invoke("verify", "--json", f"dir:{tmp_path / 'd'}")))
    checks = {f["check"] for f in report["findings"]}
    assert "dir-version" in checks
    assert report["ok"] is True
    assert "b.txt" in ok(invoke("ls", f"dir:{tmp_path / 'd'}"))


def test_dir_transport_names_a_blob_whose_file_name_lies(tmp_path: Path) -> None:
    _dir_transport(tmp_path / "d", tmp_path)
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_bytes())
    layer = tmp_path / "d" / manifest["layers"][1]["digest"].split(":")[1]
    layer.write_bytes(layer.read_bytes()[:-1] + b"\x01")
    code, out, _ = invoke("verify", "--json", f"dir:{tmp_path / 'd'}")
    assert code == 1
    failed = [f for f in json.loads(out)["findings"] if not f["ok"]]
    assert any(f["check"] == "blob-digest" for f in failed)


def test_dir_transport_version_file_is_checked(tmp_path: Path) -> None:
    _dir_transport(tmp_path / "d", tmp_path)
    (tmp_path / "d" / "version").write_text("Directory Transport Version: 9\n")
    code, out, _ = invoke("verify", "--json", f"dir:{tmp_path / 'd'}")
    assert code == 1
    failed = [f for f in json.loads(out)["findings"] if not f["ok"]]
    assert [f["check"] for f in failed] == ["dir-version"]


def test_unpack_and_export_take_transports(corpus: Path, tmp_path: Path) -> None:
    ok(invoke("unpack", f"oci-archive:{corpus / OCI_ARCHIVE}", str(tmp_path / "root")))
    assert (tmp_path / "root" / "README.md").is_file()
    ok(invoke("export", f"docker-archive:{corpus / LEGACY}:@0", "-o", str(tmp_path / "flat.tar")))
    assert (tmp_path / "flat.tar").stat().st_size > 0


def test_run_records_the_location_as_written() -> None:
    """run keeps the location text (commit re-opens the image by it): ./oci:x stays a path,
    docker:// keeps its slashes."""
    from inspect_tool.sources.location import location_text

    assert location_text(written_path("./oci:x")) == "./oci:x"
    assert location_text(written_path("docker://h/n:1")) == "docker://h/n:1"
    assert location_text(Path("a/b")) == "a/b"
