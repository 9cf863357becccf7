"""dockscope graph: DOT text from the model (golden files), shared layers as one node, the
multi-platform index, hostile labels, and drawing through Graphviz's dot."""

from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from inspect_tool.render.dot import FILLS, graph_images, label, size_fill, to_dot
from inspect_tool.render.text import visible
from inspect_tool.sources import open_source
from tests.support.cli import invoke
from tests.support.images import sha256, write_image
from tests.support.paths import CORPUS, GOLDEN, SAMPLES
from tests.support.tar_entries import build_layer, file_entry

UPDATE = os.environ.get("DOCKSCOPE_UPDATE_GOLDEN") == "1"
EDGE = re.compile(r'^  "([^"]+)" -> "([^"]+)"', re.MULTILINE)
NODE = re.compile(r'^  "([^"]+)" \[label="((?:[^"\\]|\\.)*)"', re.MULTILINE)

CASES = {
    "oci-multiplatform": [SAMPLES / "oci-multiplatform"],
    "docker-archive-multi": [SAMPLES / "docker-archive-multi.tar"],
    "several-sources": [
        SAMPLES / "docker-archive-legacy.tar",
        SAMPLES / "oci-layout",
        SAMPLES / "docker-archive-v25.tar",
    ],
    "ggcr-nested-index": [CORPUS / "oci-layout-index-ggcr"],
    "dive-legacy": [CORPUS / "docker-save-legacy-dive.tar"],
}


def dot_of(*paths: Path, reverse: bool = False) -> str:
    opened = [open_source(p) for p in paths]
    try:
        chosen = [(s, list(reversed(s.candidates)) if reverse else s.candidates) for s in opened]
        return to_dot(graph_images(chosen))
    finally:
        for source in opened:
            source.close()


def edges(dot: str) -> list[tuple[str, str]]:
    return EDGE.findall(dot)


def labels(dot: str) -> dict[str, str]:
    return dict(NODE.findall(dot))


@pytest.mark.parametrize("name", sorted(CASES))
def test_dot_matches_golden(name: str) -> None:
    dot = dot_of(*CASES[name])
    golden = GOLDEN / f"{name}.dot"
    if UPDATE:
        golden.write_text(dot)
    assert golden.is_file(), f"missing {golden}: run with DOCKSCOPE_UPDATE_GOLDEN=1"
    assert dot == golden.read_text()


@pytest.mark.parametrize("name", sorted(CASES))
def test_dot_is_sorted_and_independent_of_candidate_order(name: str) -> None:
    dot = dot_of(*CASES[name])
    nodes = [node for node, _ in NODE.findall(dot)]
    assert nodes == sorted(nodes)
    assert edges(dot) == sorted(edges(dot))
    assert dot_of(*CASES[name], reverse=True) == dot


def test_multiplatform_index_forks_above_one_shared_base_layer() -> None:
    dot = dot_of(SAMPLES / "oci-multiplatform")
    found = labels(dot)
    manifests = [n for n in found if n.startswith("manifest:")]
    assert len(manifests) == 3
    platforms = sorted(found[m].split("\\n")[1] for m in manifests)
    assert platforms == ["linux/amd64", "linux/arm/v7", "linux/arm64/v8"]
    index = [n for n in found if n.startswith("index:")]
    assert len(index) == 1
    all_edges = edges(dot)
    assert ("source:1", index[0]) in all_edges
    assert sorted(head for tail, head in all_edges if tail == index[0]) == sorted(manifests)
    layer_nodes = [n for n in found if n.startswith("layer:")]
    assert len(layer_nodes) == 4  # one shared base, three per-platform top layers
    base = [n for n in layer_nodes if found[n].startswith("layer 0 ")]
    assert len(base) == 1
    tops = [tail for tail, head in all_edges if head == base[0]]
    assert len(tops) == 3 and all(found[t].startswith("layer 1 ") for t in tops)
    # each manifest leads to its own top layer and its own config
    for manifest in manifests:
        heads = [head for tail, head in all_edges if tail == manifest]
        assert sum(h.startswith("config:") for h in heads) == 1
        assert sum(h in tops for h in heads) == 1


def test_two_images_of_one_archive_share_three_layer_nodes() -> None:
    source = open_source(SAMPLES / "docker-archive-multi.tar")
    with source:
        images = [c.image() for c in source.candidates]
        dot = to_dot(graph_images([(source, source.candidates)]))
    shared = [lyr.chain_id for lyr in images[0].layers[:3]]
    assert shared == [lyr.chain_id for lyr in images[1].layers[:3]]
    found = labels(dot)
    for chain in shared:
        assert sum(n == f"layer:{chain}" for n in found) == 1
    tops = {f"layer:{img.layers[3].chain_id}" for img in images}
    assert len(tops) == 2 and tops <= set(found)
    # the images fork at layer 3: both top layers point at the one layer 2
    layer2 = f"layer:{shared[2]}"
    assert sorted(t for t, h in edges(dot) if h == layer2) == sorted(tops)
    entries = [n for n in found if n.startswith("entry:")]
    assert len(entries) == 2 and "dockscope/sample:other" in found["entry:1:2"]


def test_several_sources_share_layers_by_chain_id_across_compressions() -> None:
    dot = dot_of(*CASES["several-sources"])
    found = labels(dot)
    assert [n for n in found if n.startswith("source:")] == ["source:1", "source:2", "source:3"]
    layer_nodes = [n for n in found if n.startswith("layer:")]
    assert len(layer_nodes) == 4  # the same four layers in three archives
    # layer 0 is stored uncompressed (legacy, v25) and as gzip (oci-layout): both sizes shown
    base = next(n for n in layer_nodes if found[n].startswith("layer 0 "))
    assert "18.9 kB / " in found[base] or " / 18.9 kB" in found[base]
    assert "gzip" in found[base]
    # the legacy config differs from BuildKit's, which oci-layout and v25 share
    assert len([n for n in found if n.startswith("config:")]) == 2


def test_a_manifest_listed_three_times_is_one_node() -> None:
    dot = dot_of(CORPUS / "oci-layout-index-ggcr")
    manifest = "manifest:sha256:eebff607b1628d67459b0596643fc07de70d702eccf030f0bc7bb6fc2b278650"
    parents = sorted(t for t, h in edges(dot) if h == manifest)
    assert len(parents) == 3
    assert parents[-1] == "source:1" and all(p.startswith("index:") for p in parents[:-1])


def test_empty_history_steps_label_the_edges_they_sit_on() -> None:
    dot = dot_of(SAMPLES / "docker-archive-legacy.tar")
    image_edges = dict(
        re.findall(r'^  "(entry:1:1)" -> "layer:[^"]+" \[label="([^"]*)"', dot, re.MULTILINE)
    )
    # the steps after the top layer: WORKDIR … CMD (8 of them: four shown, "+4 more")
    assert image_edges["entry:1:1"].split("\\n") == [
        "WORKDIR /opt/app",
        "USER app",
        "EXPOSE 8080",
        "VOLUME [/data]",
        "+4 more",
    ]
    below_layer1 = re.search(r'-> "layer:sha256:efe3[^"]*" \[label="((?:[^"\\]|\\.)*)"', dot)
    assert below_layer1 is not None
    assert below_layer1.group(1).split("\\n")[0] == 'CMD [\\"/bin/sh\\"]'


def test_layer_fill_darkens_with_size() -> None:
    assert size_fill(None) == (FILLS[0], "black")
    assert size_fill(999) == (FILLS[0], "black")
    assert size_fill(1000) == (FILLS[1], "black")
    assert size_fill(1_400_000) == (FILLS[4], "black")
    assert size_fill(10**9) == (FILLS[7], "white")
    assert size_fill(10**15) == (FILLS[-1], "white")
    dot = dot_of(CORPUS / "docker-save-legacy-dive.tar")
    fills = {
        int(number): fill
        for number, fill in re.findall(
            r'^  "layer:[^"]+" \[label="layer (\d+) [^\n]*fillcolor="([^"]+)"', dot, re.MULTILINE
        )
    }
    assert fills[0] == FILLS[4]  # 1.4 MB of busybox
    assert fills[13] == FILLS[1]  # 8.7 kB


HOSTILE = 'RUN echo "a\\N\\l" &lt; <script>alert(1)</script> \x1b[31m'


def hostile_image(tmp_path: Path) -> Path:
    layer = build_layer([file_entry("x", b"1")])
    return write_image(
        tmp_path / "hostile.tar",
        [layer],
        tag='evil:"tag"\\',
        history=[{"created_by": "/bin/sh -c " + HOSTILE[4:]}],
    )


def test_hostile_labels_are_escaped_for_dot() -> None:
    # the backslash is doubled once by render/text.py (the shown form) and once for DOT
    assert label(['a"b\\c']) == '"a\\"b\\\\\\\\c"'
    assert label(["x & y"]) == '"x &amp; y"'
    assert label(["one", "two"]) == '"one\\ntwo"'
    assert label(["a\nb\x1b\udcff"]) == '"a\\\\nb\\\\x1b\\\\udcff"'


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
def test_hostile_labels_reach_the_drawing_literally(tmp_path: Path) -> None:
    path = hostile_image(tmp_path)
    out = tmp_path / "g.svg"
    result = invoke("graph", str(path), "-o", str(out))
    assert result.code == 0, result.output
    root = ET.fromstring(out.read_bytes())
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    # the excerpt is cut at 44 characters; up to there every character is shown as written,
    # escaped as on a terminal
    assert visible(HOSTILE[:43] + "…") in texts
    assert 'evil:"tag"\\\\' in texts
    assert not list(root.iter("{http://www.w3.org/2000/svg}script"))


def test_cli_writes_dot_without_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot program anywhere
    out = tmp_path / "g.dot"
    result = invoke("graph", str(SAMPLES / "oci-multiplatform"), "-o", str(out))
    assert result.code == 0, result.output
    assert out.read_text() == (GOLDEN / "oci-multiplatform.dot").read_text()
    result = invoke("graph", str(SAMPLES / "oci-multiplatform"), "-o", str(tmp_path / "g.svg"))
    assert result.code == 2
    assert "needs Graphviz's dot program" in result.output
    assert not (tmp_path / "g.svg").exists()


def test_cli_dot_to_stdout() -> None:
    result = invoke("graph", str(SAMPLES / "oci-multiplatform"), "-o", "-")
    assert result.code == 0
    assert result.out == (GOLDEN / "oci-multiplatform.dot").read_text()


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")
@pytest.mark.parametrize(
    ("suffix", "magic"), [(".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF")]
)
def test_cli_draws_each_format(tmp_path: Path, suffix: str, magic: bytes) -> None:
    out = tmp_path / f"graph{suffix.upper()}"
    result = invoke(
        "graph",
        str(SAMPLES / "docker-archive-multi.tar"),
        str(SAMPLES / "oci-layout"),
        "-o",
        str(out),
    )
    assert result.code == 0, result.output
    assert out.read_bytes().startswith(magic)
    if suffix == ".svg":
        text = out.read_text()
        assert "dockscope/sample:other" in text and "linux/amd64" in text


def test_cli_refuses_an_unknown_suffix(tmp_path: Path) -> None:
    result = invoke("graph", str(SAMPLES / "oci-layout"), "-o", str(tmp_path / "g.jpg"))
    assert result.code == 2
    assert "end the name with .svg, .png, .pdf, .dot" in result.output


def test_cli_selection_narrows_the_graph(tmp_path: Path) -> None:
    out = tmp_path / "arm.dot"
    result = invoke(
        "graph", "--platform", "linux/arm64", str(SAMPLES / "oci-multiplatform"), "-o", str(out)
    )
    assert result.code == 0, result.output
    found = labels(out.read_text())
    assert [n for n in found if n.startswith("manifest:")] == [
        "manifest:sha256:c7ce6fd2c617cda4170af0577a2971be49cffbe67723e8857335246c69b041ff"
    ]


def test_an_unreadable_manifest_is_drawn_and_exits_1(tmp_path: Path) -> None:
    layout = tmp_path / "broken"
    shutil.copytree(SAMPLES / "oci-layout", layout)
    index = json.loads((layout / "index.json").read_text())
    missing = sha256(b"no such manifest")
    index["manifests"].append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": missing,
            "size": 10,
            "platform": {"os": "linux", "architecture": "s390x"},
        }
    )
    (layout / "index.json").write_text(json.dumps(index))
    out = tmp_path / "g.dot"
    result = invoke("graph", str(layout), "-o", str(out))
    assert result.code == 1
    found = labels(out.read_text())
    assert "unreadable: manifest blob" in found[f"manifest:{missing}"]
    assert "linux/s390x" in found[f"manifest:{missing}"]
