"""Registries (the OCI distribution API): ``docker://`` references read as Sources, images
pushed, credentials stored. httpx is imported only when one of these functions runs."""

from __future__ import annotations

from inspect_tool.registry.access import RegistryAccess

TYPE_CHECKING = False
if TYPE_CHECKING:
    from inspect_tool.sources.source import Source

__all__ = ["RegistryAccess", "open_registry_source"]


def open_registry_source(text: str, access: RegistryAccess | None = None) -> Source:
    from inspect_tool.registry.source import open_registry_source as open_source

    return open_source(text, access)
