"""The explorer on a docker:// reference: it reads the registry through ``open_image`` as
every command does; its tree is the local archive's, its efficiency panel equal to
``dockscope efficiency`` on the same reference."""

from __future__ import annotations

import json

import pytest

from inspect_tool.registry.access import RegistryAccess
from inspect_tool.registry.push import push_image
from inspect_tool.sources import ImageSelection, open_image
from tests.explore.pilot import explore, static_text, synchronous, tree_names
from tests.registry.servers import Registry
from tests.support.cli import invoke
from tests.support.paths import CORPUS

pytestmark = pytest.mark.interop


@synchronous
async def test_explore_a_registry_image(registry_set: dict[str, Registry]) -> None:
    registry = registry_set["plain"]
    reference = registry.ref("explored/dive:v1")
    source, image = open_image(CORPUS / "oci-archive-gzip-dive.tar")
    with source:
        push_image(source, image, reference)
    document = json.loads(invoke("efficiency", "--json", reference).out)
    async with explore(CORPUS / "oci-archive-gzip-dive.tar") as (app, _):
        local = tree_names(app)
    assert local
    selection = ImageSelection(access=RegistryAccess())
    async with explore(reference, selection=selection) as (app, _):  # type: ignore[arg-type]
        assert app.tree_error is None
        assert tree_names(app) == local
        panel = static_text(app, "#efficiency")
        value = document["efficiency"]
        assert f"Efficiency: {value * 100:.4f} % ({value!r})" in panel
        assert f"Wasted bytes: {document['wasted_bytes']} (" in panel
