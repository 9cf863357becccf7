"""Where dockscope keeps its caches, in one place: ``$DOCKSCOPE_CACHE`` when it names a
directory (``off``: no cache at all), else ``$XDG_CACHE_HOME/dockscope`` (``~/.cache``). The
registry's blob cache (``registry/cache.py``) keeps ``blobs/`` and ``heads/`` there; the base
views (``analyze/baseview.py``) are files in ``$DOCKSCOPE_CACHE`` itself, or in
``base-views/`` of the XDG directory."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home(xdg_below: str = "") -> Path | None:
    """``$DOCKSCOPE_CACHE`` as it is, else ``$XDG_CACHE_HOME/dockscope/<xdg_below>``; None
    when caching is off. Not created here."""
    setting = os.environ.get("DOCKSCOPE_CACHE")
    if setting == "off":
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dockscope" / xdg_below  # "" adds nothing
