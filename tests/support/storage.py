"""Shared by the engine-storage tests: the CLI, with the whole evidence tree snapshotted before
and after each command to prove it is never changed."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import Result, invoke
from tests.support.snapshots import Snapshot, snapshot


def assert_unchanged(before: Snapshot, root: Path) -> None:
    after = snapshot(root)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert not (added or removed or changed), (
        f"the evidence changed: added {added[:5]}, removed {removed[:5]}, changed "
        f"{[(p, before[p], after[p]) for p in changed[:3]]}"
    )


def read_evidence(evidence: Path, *args: str | Path) -> Result:
    """``dockscope ARGS`` in this process, proving that the whole tree under ``evidence`` is
    the same before and after (``container … --storage ENGINE_ROOT`` goes through the
    runtime's container commands, which dispatch to engine storage)."""
    before = snapshot(evidence)
    try:
        return invoke(*args, catch_exceptions=False)
    finally:
        assert_unchanged(before, evidence)


def export_writable_layer(engine_root: Path, container: str, output: str | Path) -> Result:
    """``container export --writable-layer`` of an engine's container to ``output`` (``-``:
    stdout), through read_evidence (the engine's tree unchanged)."""
    return read_evidence(
        engine_root,
        *("container", "export", "--writable-layer", "--storage", engine_root, container),
        *("-o", output),
    )


def diff_lines(result: Result) -> list[str]:
    assert result.code == 0, result.err
    return [line for line in result.out.splitlines() if line]
