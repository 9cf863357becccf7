"""``dockscope unpack`` and ``dockscope export``: the merged root filesystem, written safely."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Commands are added as they land (see inspect_tool/layers/safe_extract.py)."""
