"""``dockscope copy`` between the local transports: digests kept, the copy verified, and
nothing left behind when it fails (the comparison with skopeo's own copies is in
tests/interop/test_transports_skopeo.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from inspect_tool.render.console import human_size
from tests.support.cli import invoke, ok

ZSTD = "oci-archive-zstd-dive.tar"
LEGACY = "docker-save-legacy-dive.tar"
DOCKER25 = "docker-save-v25-hello-world.tar"
GGCR = "oci-layout-index-ggcr"

SOURCES = {
    "oci-archive-zstd": f"oci-archive:{{corpus}}/{ZSTD}",
    "oci-ggcr-docker-manifest": f"oci:{{corpus}}/{GGCR}:2",
    "docker-archive-legacy": f"docker-archive:{{corpus}}/{LEGACY}",
    "docker-archive-v25": f"docker-archive:{{corpus}}/{DOCKER25}:@0",
    "dir": "dir:{tmp}/source-dir",  # made from the zstd archive by copy itself
}
DESTINATIONS = {
    "oci": "oci:{out}/layout:copied",
    "oci-archive": "oci-archive:{out}/image.tar:copied",
    "docker-archive": "docker-archive:{out}/saved.tar:example.org/copied:1",
    "dir": "dir:{out}/dir",
}


def _inspect(where: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ok(invoke("inspect", "--json", where)))
    assert document["kind"] == "image"
    return document


def _copy(src: str, dest: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ok(invoke("copy", "--json", src, dest)))
    return document


@pytest.mark.parametrize("dest_name", sorted(DESTINATIONS))
@pytest.mark.parametrize("source_name", sorted(SOURCES))
def test_copy_keeps_every_digest(
    corpus: Path, tmp_path: Path, source_name: str, dest_name: str
) -> None:
    src = SOURCES[source_name].format(corpus=corpus, tmp=tmp_path)
    if source_name == "dir":
        _copy(f"oci-archive:{corpus / ZSTD}", src)
    dest = DESTINATIONS[dest_name].format(out=tmp_path)
    before = _inspect(src)
    result = _copy(src, dest)
    assert result["ok"] is True
    assert result["verified"]["failed"] == []
    after = _inspect(dest)
    assert after["image_id"] == before["image_id"]
    assert after["diff_ids"] == before["diff_ids"] if "diff_ids" in before else True
    layers_before = [layer["diff_id"] for layer in before["layers"]]
    assert [layer["diff_id"] for layer in after["layers"]] == layers_before
    if dest_name == "docker-archive":
        # docker save: no manifest, each layer its uncompressed tar
        assert [layer["digest"] for layer in after["layers"]] == layers_before
        assert after["repo_tags"] == ["example.org/copied:1"]
        assert result["manifest_digest"] is None
    else:
        assert [layer["digest"] for layer in after["layers"]] == [
            layer["digest"] for layer in before["layers"]
        ]
        assert after["manifest_digest"] == result["manifest_digest"]
        if before["manifest_digest"] is not None:
            assert after["manifest_digest"] == before["manifest_digest"]
            assert result["manifest_preserved"] is True
    ok(invoke("verify", dest))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_zstd_stays_zstd_byte_for_byte(corpus: Path, tmp_path: Path) -> None:
    _copy(f"oci-archive:{corpus / ZSTD}", f"oci:{tmp_path / 'out'}")
    source = _inspect(f"oci-archive:{corpus / ZSTD}")
    for layer in source["layers"]:
        blob = tmp_path / "out" / "blobs" / "sha256" / layer["digest"].split(":")[1]
        assert blob.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd's magic


def test_a_plain_directory_is_an_oci_layout(corpus: Path, tmp_path: Path) -> None:
    _copy(str(corpus / ZSTD), str(tmp_path / "plain"))
    assert (tmp_path / "plain" / "index.json").is_file()
    assert (tmp_path / "plain" / "oci-layout").is_file()


def test_an_existing_layout_is_added_to(corpus: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    first = _copy(f"oci-archive:{corpus / ZSTD}", f"oci:{layout}:zstd")
    second = _copy(f"oci:{corpus / GGCR}:1", f"oci:{layout}:ggcr")
    index = json.loads((layout / "index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert names == ["zstd", "ggcr"]
    assert _inspect(f"oci:{layout}:zstd")["manifest_digest"] == first["manifest_digest"]
    assert _inspect(f"oci:{layout}:ggcr")["manifest_digest"] == second["manifest_digest"]
    # the same name again names the new image, as skopeo does
    third = _copy(f"oci:{corpus / GGCR}:3", f"oci:{layout}:zstd")
    index = json.loads((layout / "index.json").read_text())
    assert len(index["manifests"]) == 2
    assert _inspect(f"oci:{layout}:zstd")["manifest_digest"] == third["manifest_digest"]
    ok(invoke("verify", str(layout)))


def test_a_new_name_in_the_same_layout(corpus: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    _copy(f"oci-archive:{corpus / ZSTD}", f"oci:{layout}:one")
    _copy(f"oci:{layout}:one", f"oci:{layout}:two")
    assert (
        _inspect(f"oci:{layout}:one")["manifest_digest"]
        == (_inspect(f"oci:{layout}:two")["manifest_digest"])
    )


def test_a_multi_image_source_needs_a_choice(corpus: Path, tmp_path: Path) -> None:
    code, _, err = invoke("copy", str(corpus / GGCR), f"oci:{tmp_path / 'x'}")
    assert code == 2
    assert "holds 4 images; choose one" in err
    ok(invoke("copy", "--ref", "2", str(corpus / GGCR), f"oci:{tmp_path / 'x'}"))


# -- hostile and failing copies -------------------------------------------------------------


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_destination_inside_the_source(corpus_copy: Any, tmp_path: Path) -> None:
    layout = corpus_copy(GGCR)
    before = sorted(str(p) for p in layout.rglob("*"))
    for dest in (f"oci:{layout}/inner", f"dir:{layout}/blobs/d", f"oci-archive:{layout}/x.tar"):
        code, _, err = invoke("copy", f"oci:{layout}:1", dest)
        assert code == 2, err
        assert "inside the source" in err
    assert sorted(str(p) for p in layout.rglob("*")) == before


def test_source_inside_the_destination(corpus_copy: Any, tmp_path: Path) -> None:
    layout = corpus_copy(GGCR)
    code, _, err = invoke("copy", f"oci:{layout}:1", f"dir:{layout.parent}")
    assert code == 2
    assert "is inside the destination" in err


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_an_existing_file_is_never_replaced(corpus: Path, tmp_path: Path, transport: str) -> None:
    target = tmp_path / "taken.tar"
    target.write_bytes(b"precious")
    code, _, err = invoke("copy", str(corpus / ZSTD), f"{transport}:{target}")
    assert code == 2
    assert "exists" in err
    assert target.read_bytes() == b"precious"
    assert _leftovers(tmp_path) == ["taken.tar"]


@pytest.mark.parametrize("transport", ["oci", "dir"])
def test_an_existing_file_or_foreign_directory_is_refused(
    corpus: Path, tmp_path: Path, transport: str
) -> None:
    target = tmp_path / "taken"
    target.write_bytes(b"precious")
    code, _, _ = invoke("copy", str(corpus / ZSTD), f"{transport}:{target}")
    assert code == 2
    assert target.read_bytes() == b"precious"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, _, err = invoke("copy", str(corpus / ZSTD), f"{transport}:{foreign}")
    assert code == 2, err
    assert _leftovers(foreign) == ["notes.txt"]
    assert _leftovers(tmp_path) == ["foreign", "taken"]


@pytest.mark.parametrize("dest_name", sorted(DESTINATIONS))
def test_a_broken_source_blob_leaves_nothing(
    corpus_copy: Any, tmp_path: Path, dest_name: str
) -> None:
    layout = corpus_copy(GGCR)
    manifest = json.loads(ok(invoke("inspect", "--json", f"oci:{layout}:1")))
    blob = layout / "blobs" / "sha256" / manifest["layers"][-1]["digest"].split(":")[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    dest = DESTINATIONS[dest_name].format(out=out)
    code, _, err = invoke("copy", f"oci:{layout}:1", dest)
    assert code == 3, err
    assert "mismatch" in err or "corrupt" in err  # docker-archive decompresses as it copies
    assert _leftovers(out) == []


def test_a_broken_blob_leaves_an_existing_layout_as_it_was(
    corpus_copy: Any, corpus: Path, tmp_path: Path
) -> None:
    target = tmp_path / "layout"
    _copy(f"oci-archive:{corpus / ZSTD}", f"oci:{target}:kept")
    index_before = (target / "index.json").read_bytes()
    layout = corpus_copy(GGCR)
    manifest = json.loads(ok(invoke("inspect", "--json", f"oci:{layout}:1")))
    blob = layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].split(":")[1]
    blob.write_bytes(blob.read_bytes()[:-10])
    code, _, _ = invoke("copy", f"oci:{layout}:1", f"oci:{target}:new")
    assert code == 3
    assert (target / "index.json").read_bytes() == index_before
    assert not [p for p in (target / "blobs" / "sha256").iterdir() if p.name.startswith(".")]
    ok(invoke("verify", str(target)))


def test_registry_destinations_go_to_the_registry_client(corpus: Path) -> None:
    """docker:// as a destination (copy) or a source (pull) is the registry client's: a
    host that does not resolve is one line naming the reference, exit 3."""
    code, _, err = invoke("copy", str(corpus / ZSTD), "docker://registry.invalid/app:1")
    assert code == 3
    assert err.startswith("dockscope: docker://registry.invalid/app:1: cannot reach"), err
    code, _, err = invoke("pull", "registry.invalid/app:1", "oci:/nonexistent/x")
    assert code == 3
    assert "docker://registry.invalid/app:1" in err


@pytest.mark.parametrize(
    "source",
    [
        "./local/image.tar",
        "{corpus}/" + ZSTD,
        "oci-archive:{corpus}/" + ZSTD,
        "oci:{corpus}/" + GGCR,
    ],
)
def test_pull_of_a_local_image_names_the_copy_command(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """pull reads from a registry: a path or a local transport is one usage line giving the
    copy command that does it (it never reaches for Docker Hub), and nothing is written."""
    monkeypatch.chdir(tmp_path)
    source = source.format(corpus=corpus)
    code, _, err = invoke("pull", source, "my layout")
    assert (code, err) == (
        2,
        f"dockscope: pull: {source}: a local image: pull reads from a registry; copy it with "
        f"dockscope copy {source} 'my layout'\n",
    )
    assert list(tmp_path.iterdir()) == []


def test_pull_of_a_name_that_is_a_file_here_says_how_to_mean_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "busybox").mkdir()
    code, _, err = invoke("pull", "busybox", "out")
    assert code == 2
    assert err.endswith(
        "copy it with dockscope copy busybox out (an image in a registry: docker://busybox)\n"
    ), err
    code, _, err = invoke("pull", "docker://registry.invalid/busybox", "out")
    assert code == 3 and "cannot reach registry.invalid" in err


def test_copy_json_and_text(corpus: Path, tmp_path: Path) -> None:
    result = _copy(f"oci-archive:{corpus / ZSTD}", f"dir:{tmp_path / 'd'}")
    assert result["kind"] == "copy"
    assert result["transport"] == "dir"
    assert result["source"] == f"oci-archive:{corpus / ZSTD}"
    assert result["destination"] == f"dir:{tmp_path / 'd'}"
    assert result["bytes_copied"] == sum(layer["size"] for layer in result["layers"]) + (
        os.path.getsize(tmp_path / "d" / result["config_digest"].split(":")[1])
    )
    assert (tmp_path / "d" / "version").read_text() == "Directory Transport Version: 1.1\n"
    text = ok(invoke("copy", f"oci-archive:{corpus / ZSTD}", f"dir:{tmp_path / 'e'}"))
    assert text.startswith(f"Copied oci-archive:{corpus / ZSTD} to dir:{tmp_path / 'e'}")
    assert "(the source's)" in text
    # sizes as the other commands show them; the JSON above keeps the exact byte counts
    assert f"; {human_size(result['bytes_copied'])} copied" in text
    for layer in result["layers"]:
        assert f"{layer['digest']}  {human_size(layer['size'])}" in text
    assert " bytes" not in text
    assert str(result["bytes_copied"]) not in text
    shutil.rmtree(tmp_path / "e")


def test_the_copy_is_verified_from_the_hashes_taken_as_it_was_written(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With check_diff_ids (--verify), each layer is decompressed once, beside the copy: the
    verification of the written copy reads no layer again, and still checks every diff_id."""
    from inspect_tool.analyze import verify as verify_module
    from inspect_tool.transfer.copy import copy_image

    reread: list[object] = []
    real = verify_module.hash_layer

    def counting(*args: Any, **kwargs: Any) -> Any:
        reread.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(verify_module, "hash_layer", counting)
    result = copy_image(
        f"oci-archive:{corpus / ZSTD}", f"oci:{tmp_path / 'layout'}", check_diff_ids=True
    )
    assert reread == []
    assert result.diff_ids_checked
    assert result.report is not None and result.report.ok
    diff_ids = [f for f in result.report.findings if f.check == "diff-id"]
    assert [f.actual for f in diff_ids] == [layer.diff_id for layer in result.layers]
    assert len(diff_ids) == len(result.layers) > 0


def test_by_default_the_copy_checks_what_the_transport_proves(corpus: Path, tmp_path: Path) -> None:
    """No layer decompressed: every blob's size and digest, the manifest's and the config's
    digests, the layers' compression against their media types; no diff_id finding."""
    from inspect_tool.transfer.copy import copy_image

    result = copy_image(f"oci-archive:{corpus / ZSTD}", f"oci:{tmp_path / 'layout'}")
    assert result.report is not None and result.report.ok
    assert not result.diff_ids_checked
    checks = {f.check for f in result.report.findings}
    assert {"blob-exists", "blob-size", "blob-digest", "manifest-digest", "image-id"} <= checks
    assert {"media-type", "diff-id-count"} <= checks
    assert not checks & {"diff-id", "chain-id", "layer-tar"}
    digests = [f for f in result.report.findings if f.check == "blob-digest"]
    assert [f.actual for f in digests] == [layer.digest for layer in result.layers]
    # what verify says of the copy afterwards
    document = invoke("verify", "--json", str(tmp_path / "layout")).json()
    assert document["ok"] is True


def test_diff_ids_in_worker_processes(corpus: Path, tmp_path: Path) -> None:
    """transfer/diffids.py: layers decompressed in worker processes give verify's diff_ids;
    without workers, the same in this process."""
    from inspect_tool.model.digest import Digest
    from inspect_tool.transfer.diffids import DiffIds

    layout = tmp_path / "layout"
    ok(invoke("copy", f"oci-archive:{corpus / ZSTD}", f"oci:{layout}"))
    document = invoke("inspect", "--json", str(layout)).json()
    layers = document["images"][0]["layers"] if "images" in document else document["layers"]
    for workers in (1, 0):
        with DiffIds(workers) as ids:
            for layer in layers:
                digest = Digest.parse(layer["digest"])
                path = layout / "blobs" / "sha256" / digest.hex
                ids.submit(digest, path, path.stat().st_size)
            got = ids.results()
        assert {str(d): f"sha256:{h.diff_id_hex}" for d, h in got.items()} == {
            layer["digest"]: layer["diff_id"] for layer in layers
        }


def test_an_uncompressed_layer_is_checked_against_its_diff_id_by_default(tmp_path: Path) -> None:
    """A legacy docker save's layers are plain tars: their digest is their diff_id, so the
    default copy (which decompresses nothing) still catches a flipped byte."""
    from tests.support.paths import SAMPLES

    code, _, err = invoke(
        "copy", str(SAMPLES / "tampered" / "layer-byte-flipped.tar"), f"oci:{tmp_path / 'out'}"
    )
    assert code == 1, err
    assert "diff-id layer 1" in err
    assert ", not sha256:be5089623486" in err  # the config's diff_id, beside what was found
    assert _leftovers(tmp_path) == []
    result = _copy(str(SAMPLES / "docker-archive-legacy.tar"), f"oci:{tmp_path / 'good'}")
    assert "diff-id" in result["verified"]["checked"]
    assert result["verified"]["ok"] is True and result["verified"]["failed"] == []


def test_a_plain_destination_with_a_colon_is_a_layout(corpus: Path, tmp_path: Path) -> None:
    target = tmp_path / "a:b"
    document = _copy(str(corpus / ZSTD), str(target))
    assert document["ok"] is True
    assert (target / "index.json").is_file()
    assert _leftovers(tmp_path) == ["a:b"]


@pytest.mark.parametrize("dest", ["oci:/proc/dockscope-copy", "/proc/dockscope-copy"])
def test_a_destination_that_cannot_be_written_is_a_usage_error(corpus: Path, dest: str) -> None:
    code, _, err = invoke("copy", str(corpus / ZSTD), dest)
    assert code == 2, err
    assert err == (
        "dockscope: copy: /proc/dockscope-copy: cannot write: No such file or directory\n"
    )
