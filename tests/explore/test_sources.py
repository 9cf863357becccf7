"""The explorer reads every source dockscope reads (through ``open_image``), picks a platform
as every command does, and its efficiency panel agrees with ``dockscope efficiency`` on each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from inspect_tool.sources import ImageSelection
from tests.explore.pilot import explore, static_text, synchronous, tree_names
from tests.support.cli import invoke
from tests.support.paths import SAMPLES


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("oci-archive-zstd-dive.tar", None),
        ("oci-archive-gzip-dive.tar", None),
        ("docker-save-v25-hello-world.tar", None),
        ("oci-layout-index-ggcr", "2"),
        ("docker-save-whiteouts-ggcr.tar", None),
    ],
)
@synchronous
async def test_every_source_opens_with_efficiencys_figures(
    corpus_copy,  # type: ignore[no-untyped-def]
    name: str,
    image: str | None,
) -> None:
    path = corpus_copy(name)
    chosen = ("--image", image) if image else ()
    document = json.loads(invoke("efficiency", "--json", *chosen, str(path)).out)
    async with explore(path, selection=ImageSelection(image=image)) as (app, _):
        assert app.tree_error is None and tree_names(app)
        panel = static_text(app, "#efficiency")
        value = document["efficiency"]
        assert f"Efficiency: {value * 100:.4f} % ({value!r})" in panel
        assert f"Wasted bytes: {document['wasted_bytes']} (" in panel


@synchronous
async def test_a_platform_of_a_multi_platform_index(tmp_path: Path) -> None:
    layout = tmp_path / "multi"
    shutil.copytree(SAMPLES / "oci-multiplatform", layout)
    seen = {}
    for platform in ("linux/amd64", "linux/arm64/v8"):
        selection = ImageSelection(platform=platform)
        async with explore(layout, selection=selection) as (app, _):
            seen[platform] = str(app.first.image.image_id)
            assert app.first.image.platform is not None
            assert str(app.first.image.platform) == platform
    assert seen["linux/amd64"] != seen["linux/arm64/v8"]


def test_a_platform_that_is_not_there_is_a_usage_error() -> None:
    code, _, err = invoke(
        "explore", "--platform", "linux/s390x", str(SAMPLES / "oci-multiplatform")
    )
    assert code == 2 and err.count("\n") == 1 and "linux/s390x" in err
