"""The names and forms of deletions in layered filesystems: one vocabulary for every module
that reads or writes them.

- OCI (and AUFS, where it comes from): a deletion is an empty file ``.wh.NAME``; a directory
  whose lower contents are hidden holds ``.wh..wh..opq``; other ``.wh..wh.*`` names are AUFS's
  own metadata (its hard-link and orphan directories), never content.
- overlayfs: a deletion is a character device 0/0 named NAME; an opaque directory carries the
  xattr ``trusted.overlay.opaque=y`` (``user.overlay.opaque=y`` when mounted with
  ``userxattr``, as rootless engines do). ``redirect`` and ``metacopy`` leave part of an entry
  in a lower layer. Every ``trusted.overlay.*``/``user.overlay.*`` attribute is the union
  filesystem's bookkeeping, never image content: Docker and containerd drop them from layers.

``OnDiskFormat`` says which form a layer takes once unpacked (umoci's ``OnDiskFormat``): the
OCI form applied (whiteouts delete what lower layers wrote) or the overlay form kept (an
overlay lowerdir: whiteouts as devices, opaque directories marked).
"""

from __future__ import annotations

import os
import stat
from enum import Enum

WHITEOUT_PREFIX = ".wh."
AUFS_META_PREFIX = WHITEOUT_PREFIX + WHITEOUT_PREFIX  # ".wh..wh."
OPAQUE_MARKER = AUFS_META_PREFIX + ".opq"  # ".wh..wh..opq"

TRUSTED_OVERLAY = "trusted.overlay."
USER_OVERLAY = "user.overlay."  # overlayfs mounted with userxattr (rootless engines)
OVERLAY_XATTR_PREFIXES = (TRUSTED_OVERLAY, USER_OVERLAY)
OPAQUE_XATTR = TRUSTED_OVERLAY + "opaque"  # the one dockscope writes (and its runtime reads)
OPAQUE_XATTRS = tuple(prefix + "opaque" for prefix in OVERLAY_XATTR_PREFIXES)
OPAQUE_VALUE = b"y"
# overlay features that leave part of an entry in a lower layer: no reader here follows them
REDIRECT_XATTR = TRUSTED_OVERLAY + "redirect"
METACOPY_XATTR = TRUSTED_OVERLAY + "metacopy"
UNFOLLOWED_XATTRS = tuple(
    prefix + feature for prefix in OVERLAY_XATTR_PREFIXES for feature in ("redirect", "metacopy")
)
WHITEOUT_DEVICE = os.makedev(0, 0)


class OnDiskFormat(Enum):
    OCI = "oci"  # whiteouts applied: what they delete is gone, no marker remains
    OVERLAY = "overlay"  # whiteouts kept as overlay's: devices 0/0 and the opaque xattr


def whiteout_name(name: str) -> str:
    """The OCI whiteout of ``name``: ``.wh.NAME``."""
    return WHITEOUT_PREFIX + name


def is_aufs_meta(name: str) -> bool:
    """AUFS's own metadata (``.wh..wh.plnk``, ``.wh..wh.aufs``, ``.wh..wh.orph``…), the opaque
    marker included."""
    return name.startswith(AUFS_META_PREFIX)


def whited_out(name: str) -> str | None:
    """What the OCI whiteout ``name`` deletes; None when ``name`` is no whiteout (the opaque
    marker and AUFS metadata included)."""
    if not name.startswith(WHITEOUT_PREFIX) or is_aufs_meta(name):
        return None
    return name[len(WHITEOUT_PREFIX) :]


def is_overlay_whiteout(st: os.stat_result) -> bool:
    """overlayfs's whiteout: a character device 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == WHITEOUT_DEVICE


def is_overlay_xattr(name: str) -> bool:
    return name.startswith(OVERLAY_XATTR_PREFIXES)
