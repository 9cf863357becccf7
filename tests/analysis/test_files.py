"""layers, ls, cat, find and diff on the sample images and the corpus."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import invoke
from tests.support.images import layer_tar, oci_layout
from tests.support.paths import SAMPLES

LEGACY = str(SAMPLES / "docker-archive-legacy.tar")
OCI = str(SAMPLES / "oci-layout")


def as_json(*args: str) -> tuple[int, Any]:
    code, out, err = invoke(*args, "--json")
    assert out, err
    return code, json.loads(out)


def test_layers_counts_changes_and_waste() -> None:
    code, doc = as_json("layers", LEGACY)
    assert code == 0
    rows = doc["layers"]
    assert [r["deleted"] for r in rows] == [0, 0, 3, 0]
    # layer 2 deleted README (330 B) and, through an opaque directory, two cache files
    _, base = as_json("ls", "-R", "--at", "1", LEGACY, "/")
    sizes = {e["path"]: e["size"] for e in base["entries"]}
    removed = [
        "/usr/share/doc/dockscope/README",
        "/var/cache/app/index.db",
        "/var/cache/app/old.log",
    ]
    assert rows[2]["wasted_bytes"] == sum(sizes[p] for p in removed)
    # layer 1 rewrote /etc/os-release: the layer-0 copy is wasted
    _, layer0 = as_json("ls", "--at", "0", LEGACY, "/etc/os-release")
    assert rows[1]["modified"] == 1
    assert rows[1]["wasted_bytes"] == layer0["entries"][0]["size"]


def test_layers_on_dive_image(corpus: Path) -> None:
    code, doc = as_json("layers", str(corpus / "docker-save-legacy-dive.tar"))
    assert code == 0
    rows = doc["layers"]
    assert len(rows) == 14
    assert rows[9]["deleted"] == 1 and rows[9]["wasted_bytes"] == 2 * 6405  # rm -rf /root/example
    assert rows[4]["modified"] == 1  # chmod 444 rewrites the file
    assert rows[0]["added"] > 400  # busybox


def test_ls_at_a_layer_and_recursive() -> None:
    code, doc = as_json("ls", "--at", "0", LEGACY, "/usr/share/doc/dockscope")
    assert code == 0
    assert "/usr/share/doc/dockscope/README" in [e["path"] for e in doc["entries"]]
    code, doc = as_json("ls", LEGACY, "/usr/share/doc/dockscope")
    assert "/usr/share/doc/dockscope/README" not in [e["path"] for e in doc["entries"]]
    code, doc = as_json("ls", "-R", LEGACY, "/")
    by_path = {e["path"]: e for e in doc["entries"]}
    assert by_path["/bin/sh-link"]["type"] == "symlink"
    assert by_path["/bin/sh-link"]["link"] == "hello"
    assert by_path["/bin/hi"]["type"] == "hardlink"
    assert by_path["/var/cache/app/stamp"]["layer"] == 2
    assert by_path["/tmp"]["mode"] == "1777"
    code, out, _ = invoke("ls", "-l", LEGACY, "/bin")
    assert "lrwxrwxrwx" in out and "sh-link -> hello" in out and "L0" in out


def test_ls_missing_path_and_bad_layer() -> None:
    code, _, err = invoke("ls", LEGACY, "/nope")
    assert code == 2 and "no such file" in err
    code, _, err = invoke("ls", "--at", "9", LEGACY)
    assert code == 2 and "layers 0 to 3" in err


def test_cat_follows_links_inside_the_image() -> None:
    code, hello, _ = invoke("cat", LEGACY, "/bin/hello")
    assert code == 0 and hello.startswith("#!/bin/sh")
    assert invoke("cat", LEGACY, "/bin/sh-link")[1] == hello  # symlink
    assert invoke("cat", LEGACY, "/bin/hi")[1] == hello  # hard link
    code, _, err = invoke("cat", LEGACY, "/etc")
    assert code == 2 and "directory" in err


def test_cat_recovers_a_deleted_file() -> None:
    code, _, err = invoke("cat", LEGACY, "/usr/share/doc/dockscope/README")
    assert code == 2 and "no such file" in err
    # the error names the layer that deleted it and the --at that still has it
    assert "deleted by layer 2 (added by layer 0); recover it with --at 1" in err
    assert len(err.strip().splitlines()) == 1
    code, text, _ = invoke("cat", "--at", "1", LEGACY, "/usr/share/doc/dockscope/README")
    assert code == 0 and len(text) > 100


def test_cat_names_the_layer_that_deleted_a_parent(tmp_path: Path) -> None:
    from tests.support.images import write_image
    from tests.support.tar_entries import build_layer, dir_entry, file_entry

    lower = build_layer(
        [dir_entry("opt/gone"), file_entry("opt/gone/file", b"g\n"), file_entry("keep", b"k")]
    )
    middle = build_layer([file_entry("other", b"o")])
    upper = build_layer([file_entry("opt/.wh.gone")])
    image = str(write_image(tmp_path / "i.tar", [lower, middle, upper]))
    code, _, err = invoke("cat", image, "/opt/gone/file")
    assert code == 2
    assert "its directory /opt/gone was deleted by layer 2" in err
    assert "recover it with --at 1" in err
    assert invoke("cat", "--at", "1", image, "/opt/gone/file")[1] == "g\n"
    # never deleted: the plain message, nothing invented
    code, _, err = invoke("cat", image, "/opt/never")
    assert code == 2 and "deleted" not in err and "no such file" in err


def test_ls_and_cat_take_their_old_layer_option_for_one_release() -> None:
    """--layer N in ls and cat meant the filesystem after layer N: it still does, with a line
    naming the new option, as --layer means only layer N's changes everywhere else."""
    code, text, err = invoke("cat", "--layer", "1", LEGACY, "/usr/share/doc/dockscope/README")
    assert code == 0 and len(text) > 100
    assert err == (
        "dockscope: cat --layer N is now --at N (the filesystem after layer N); "
        "the old name goes in the next release\n"
    )
    assert (
        invoke("ls", "-L", "0", LEGACY, "/etc")[1] == invoke("ls", "--at", "0", LEGACY, "/etc")[1]
    )
    code, _, err = invoke("ls", "--at", "0", "--layer", "1", LEGACY)
    assert code == 2 and err == "dockscope: ls: give --at N only (--layer is its old name)\n"


def test_cat_symlinks_never_leave_the_image_root(tmp_path: Path) -> None:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        for name, target in (("escape", "../../../../etc/passwd"), ("abs", "/etc/passwd")):
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
        info = tarfile.TarInfo("etc/passwd")
        info.size = 12
        tf.addfile(info, io.BytesIO(b"image:x:0:0\n"))
    oci_layout(tmp_path / "img", [buffer.getvalue()])
    for link in ("/escape", "/abs"):
        code, out, _ = invoke("cat", str(tmp_path / "img"), link)
        assert code == 0 and out == "image:x:0:0\n"


def test_find_reports_fates(corpus: Path) -> None:
    code, doc = as_json("find", "--deleted", str(corpus / "docker-save-legacy-dive.tar"), "/root/*")
    assert code == 0
    fates = {(e["path"], e["layer"]): (e["fate"], e["by_layer"]) for e in doc["entries"]}
    assert fates[("/root/example/somefile1.txt", 3)] == ("replaced", 4)
    assert fates[("/root/example/somefile1.txt", 4)] == ("deleted", 9)
    assert fates[("/root/example/somefile3.txt", 6)] == ("deleted", 7)
    assert fates[("/root/saved.txt", 7)] == ("replaced", 13)
    code, doc = as_json("find", str(corpus / "docker-save-legacy-dive.tar"), "saved.txt")
    assert [(e["layer"], e["fate"]) for e in doc["entries"]] == [(7, "replaced"), (13, "present")]


def test_diff_two_images_in_one_archive() -> None:
    multi = str(SAMPLES / "docker-archive-multi.tar")
    code, doc = as_json("diff", multi, multi, "--image", "1", "--image-b", "2")
    assert code == 1
    assert doc["shared_layers"] == 3 and doc["equal"] is False
    changes = {(f["path"], f["change"]) for f in doc["files"]}
    assert changes == {
        ("/usr/local/bin/docker-entrypoint.sh", "removed"),
        ("/usr/local/bin/worker.sh", "added"),
    }
    keys = {c["key"] for c in doc["config"]}
    assert {"Cmd", "Entrypoint"} <= keys
    assert doc["history"]["added"] and doc["history"]["removed"]


def test_diff_equal_images_and_same_layers_in_other_formats() -> None:
    code, doc = as_json("diff", OCI, OCI)
    assert code == 0 and doc["equal"] is True
    # the same layers, compressed differently, with another config: no file differs
    code, doc = as_json("diff", LEGACY, OCI)
    assert code == 1
    assert doc["files"] == [] and doc["shared_layers"] == 4
    assert "; 4 shared layers not compared\n" in invoke("diff", LEGACY, OCI)[1]


def _tar(files: dict[str, bytes]) -> bytes:
    return layer_tar(files)


def test_diff_compares_content_of_same_size_files(tmp_path: Path) -> None:
    base = _tar({"etc/conf": b"aaaa", "keep": b"k"})
    oci_layout(tmp_path / "a", [base, _tar({"etc/conf": b"bbbb"})])
    oci_layout(tmp_path / "b", [base, _tar({"new": b"n"})])
    code, doc = as_json("diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 1
    files = {f["path"]: f for f in doc["files"]}
    assert files["/etc/conf"]["change"] == "modified"
    assert files["/etc/conf"]["differences"] == ["content"]
    assert files["/etc/conf"]["a"]["sha256"] == "sha256:" + hashlib.sha256(b"bbbb").hexdigest()
    assert files["/etc/conf"]["b"]["sha256"] == "sha256:" + hashlib.sha256(b"aaaa").hexdigest()
    assert files["/new"]["change"] == "added"
    assert "/keep" not in files
    code, text, _ = invoke("diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 1 and "; 1 shared layer not compared\n" in text


def test_diff_layer_lists_changes_with_hashes() -> None:
    code, doc = as_json("diff", "--layer", "2", LEGACY)
    assert code == 0
    by_path = {f["path"]: f for f in doc["files"]}
    assert by_path["/usr/share/doc/dockscope/README"]["change"] == "removed"
    assert by_path["/var/cache/app/stamp"]["change"] == "added"
    stamp = by_path["/var/cache/app/stamp"]["entry"]
    assert stamp["sha256"] == "sha256:" + hashlib.sha256(b"cache rebuilt\n").hexdigest()
    code, out, _ = invoke("diff", "--layer", "2", LEGACY)
    assert "D /var/cache/app/old.log" in out and "A /var/cache/app/stamp" in out


@pytest.mark.parametrize("command", ["layers", "ls", "find"])
def test_commands_fail_cleanly_on_a_corrupt_layer(command: str) -> None:
    args = [command, str(SAMPLES / "tampered/layer-byte-flipped.tar")]
    if command == "find":
        args.append("*")
    code, _, err = invoke(*args)
    assert code == 3
    assert "diff_id mismatch" in err and "layer 1" in err


def test_diff_reuses_a_base_it_read_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second diff over the same shared base reads only the other layers: with the
    base's blob made unreadable in between, it still gives the same answer."""
    monkeypatch.setenv("DOCKSCOPE_CACHE", str(tmp_path / "cache"))
    base = layer_tar({"etc/conf": b"aaaa", "keep": b"k", "dir/x": b"1", "dir/y": b"2"})
    oci_layout(tmp_path / "a", [base, layer_tar({"etc/conf": b"bbbb", "dir/.wh.x": b""})])
    oci_layout(tmp_path / "b", [base, layer_tar({"new": b"n", "dir/.wh..wh..opq": b""})])
    first_code, first = as_json("diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert first_code == 1
    assert list((tmp_path / "cache").glob("*.v1"))
    base_blob = tmp_path / "a/blobs/sha256" / hashlib.sha256(base).hexdigest()
    base_blob.write_bytes(b"gone")
    (tmp_path / "b/blobs/sha256" / hashlib.sha256(base).hexdigest()).write_bytes(b"gone")
    second_code, second = as_json("diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert second_code == 1
    assert second["files"] == first["files"]
    changes = {f["path"]: f["change"] for f in second["files"]}
    assert changes["/etc/conf"] == "modified"
    assert changes["/new"] == "added"
    assert changes["/dir/y"] == "removed"  # B's opaque marker hid the base's dir/y
    assert "/dir/x" not in changes  # deleted on both sides
    assert second["files"][0]["a"] is not None


def test_diff_without_cache_reads_the_base_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKSCOPE_CACHE", "off")
    base = layer_tar({"etc/conf": b"aaaa"})
    oci_layout(tmp_path / "a", [base, layer_tar({"etc/conf": b"bbbb"})])
    oci_layout(tmp_path / "b", [base, layer_tar({"new": b"n"})])
    assert as_json("diff", str(tmp_path / "a"), str(tmp_path / "b"))[0] == 1
    (tmp_path / "a/blobs/sha256" / hashlib.sha256(base).hexdigest()).write_bytes(b"gone")
    code, _, err = invoke("diff", str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 3 and "layer 0" in err


# -- a hard link replaced by a regular file --------------------------------------------------
LINKED = b"hello linked\n"


def hardlink_images(tmp_path: Path, upper: bytes) -> tuple[str, str]:
    """A: /etc/a and /etc/b, a hard link to it; B: the same, then /etc/b a regular file."""
    from tests.support.images import write_image
    from tests.support.tar_entries import build_layer, dir_entry, file_entry, hardlink_entry

    lower = build_layer(
        [dir_entry("etc"), file_entry("etc/a", LINKED), hardlink_entry("etc/b", "etc/a")]
    )
    top = build_layer([file_entry("etc/b", upper)])
    a = write_image(tmp_path / "a.tar", [lower])
    b = write_image(tmp_path / "b.tar", [lower, top])
    return str(a), str(b)


@pytest.mark.parametrize("cache", ["on", "off"])
def test_diff_a_hard_link_replaced_by_a_file_compares_the_linked_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: str
) -> None:
    if cache == "off":
        monkeypatch.setenv("DOCKSCOPE_CACHE", "off")
    else:
        monkeypatch.setenv("DOCKSCOPE_CACHE", str(tmp_path / "cache"))
    same_size = b"other linked\n"
    assert len(same_size) == len(LINKED)
    a, b = hardlink_images(tmp_path, same_size)
    code, doc = as_json("diff", a, b)
    assert code == 1
    (changed,) = doc["files"]
    assert changed["path"] == "/etc/b"
    side_a = changed["a"]
    assert side_a["type"] == "hardlink" and side_a["link"] == "etc/a"
    assert side_a["size"] == len(LINKED)  # a hard link's content is its target's
    assert side_a["sha256"] == "sha256:" + hashlib.sha256(LINKED).hexdigest()
    assert changed["differences"] == ["type", "content"]
    assert "link" not in changed["differences"]  # B is no link: its type changed
    # a different size is reported as such
    (tmp_path / "sized").mkdir()
    a, b = hardlink_images(tmp_path / "sized", b"x\n")
    _, doc = as_json("diff", a, b)
    assert doc["files"][0]["differences"] == ["type", "size"]
    code, out, _ = invoke("diff", a, b)
    assert "C /etc/b  (size 13 → 2, type)" in out


def test_layer_diff_and_find_size_a_replaced_hard_link_by_its_content(tmp_path: Path) -> None:
    _, b = hardlink_images(tmp_path, b"new content, longer\n")
    _, doc = as_json("diff", "--layer", "1", b)
    (change,) = doc["files"]
    assert change["previous"]["type"] == "hardlink"
    assert change["previous"]["size"] == len(LINKED)
    _, found = as_json("find", "--deleted", b, "b")
    (entry,) = found["entries"]
    assert entry["fate"] == "replaced" and entry["size"] == len(LINKED)
    _, out, _ = invoke("find", "--deleted", b, "b")
    assert f"{len(LINKED)} B  /etc/b" in out
    # replacing a hard link frees no stored bytes: the content stays with /etc/a
    _, layers = as_json("layers", b)
    assert layers["layers"][1]["wasted_bytes"] == 0
    _, listing = as_json("ls", "--layer", "0", b, "/etc")
    assert {e["path"]: e["size"] for e in listing["entries"]}["/etc/b"] == len(LINKED)
