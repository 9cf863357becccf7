"""OCI runtime tests: bundles made from ``runc spec``'s template and the busybox sample image
unpacked by ``dockscope unpack``, driven through the ``dockscope-runtime`` console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

RUNTIME = Path(sys.executable).parent / "dockscope-runtime"
DOCKSCOPE = Path(sys.executable).parent / "dockscope"


@pytest.fixture(scope="session")
def rootfs(busybox_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("oci-rootfs") / "rootfs"
    subprocess.run(
        [str(DOCKSCOPE), "unpack", str(busybox_image), str(target)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """runc's own config.json template (``runc spec``), with a terminal-less process."""
    where = tmp_path_factory.mktemp("runc-spec")
    subprocess.run(["runc", "spec"], cwd=where, check=True, capture_output=True, timeout=30)
    doc: dict[str, Any] = json.loads((where / "config.json").read_text())
    doc["process"]["terminal"] = False
    return doc


class Runtime:
    """dockscope-runtime with a private state root; every container it made is deleted at
    the end (and its cgroup checked gone)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[str] = []

    def __call__(
        self, *argv: str | Path, check: bool = True, timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        # files, not pipes: a created container's PID 1 inherits the runtime's streams (as
        # conmon's pipes) and keeps them open after create returns
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run(
                [str(RUNTIME), "--root", str(self.root), *(str(a) for a in argv)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=timeout,
                check=False,
                **kw,
            ).returncode
            out.seek(0)
            err.seek(0)
            proc = subprocess.CompletedProcess(argv, code, out.read(), err.read())
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} exited {proc.returncode}: {proc.stderr}")
        return proc

    def state(self, cid: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self("state", cid).stdout)
        return doc

    def new_id(self) -> str:
        cid = f"oci-test-{uuid.uuid4().hex[:12]}"
        self.made.append(cid)
        return cid


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(tmp_path / "state")
    yield rt
    for cid in rt.made:
        rt("delete", "--force", cid, check=False)
    left = os.listdir(rt.root) if rt.root.exists() else []
    assert left == [], f"state left behind: {left}"


MakeBundle = Callable[..., Path]


@pytest.fixture
def make_bundle(tmp_path: Path, rootfs: Path, template: dict[str, Any]) -> Callable[..., Path]:
    """A bundle whose config.json is runc's template changed by ``edit(doc)``; the rootfs is
    a bind of the shared unpacked busybox (read-only root by runc's template)."""
    count = 0

    def make(args: list[str], edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        nonlocal count
        count += 1
        bundle = tmp_path / f"bundle{count}"
        bundle.mkdir()
        doc = json.loads(json.dumps(template))
        doc["root"]["path"] = str(rootfs)
        doc["process"]["args"] = args
        doc["linux"]["cgroupsPath"] = f"/dockscope-oci-tests/{tmp_path.name}-{count}"
        if edit is not None:
            edit(doc)
        (bundle / "config.json").write_text(json.dumps(doc))
        return bundle

    return make


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
