"""What a warm ``dockscope run --rm --network none IMAGE true`` loads: its start-up is measured
against podman's (benchmarks/bench_runtime.py), and every module is paid for on every run.
The modules are read from ``python -X importtime`` of real runs (root: a container runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.runtime import needs_root

pytestmark = needs_root

REPO = Path(__file__).resolve().parents[2]

# Not on the path of a warm run without a network: the layer store is filled (the unpack
# package is for a layer not stored yet), no bridge, no other command's module, none of the
# heavy libraries other commands use, and no ldconfig (ctypes.util.find_library runs it);
# no named volume, no dir: transport, no reader of the image file (run before, unchanged),
# random names from os.urandom (not secrets), no OpenSSL,
# and as root no user namespace module (it is loaded to enter one).
NOT_LOADED = (
    "inspect_tool.layers.unpack",
    "inspect_tool.layers.unpack.applier",
    "inspect_tool.layers.unpack.disk",
    "inspect_tool.registry.client",
    "runtime_lab.kernel.network",
    "runtime_lab.lifecycle.network",
    "runtime_lab.cli.lifecycle",
    "runtime_lab.cli.session",
    "runtime_lab.cli.container",
    "runtime_lab.storage.overlay_extract",
    "runtime_lab.storage.volumes",
    "runtime_lab.kernel.userns",
    "inspect_tool.sources.dir_transport",
    # the archive run before, unchanged: its record, not the file (runtime_lab/storage/archives.py)
    "inspect_tool.sources.source",
    "inspect_tool.sources.tree",
    "inspect_tool.sources.build",
    "inspect_tool.sources.docker_archive",
    "tarfile",
    "ctypes.util",
    "secrets",
    "inspect",  # dataclasses' import of it is deferred (classcode.py): ast, dis, tokenize
    "hashlib",  # OpenSSL: the documents a run hashes are small (model/digest.py, hex_digest)
    "typing",  # its modules import it for the type checker only (TYPE_CHECKING = False)
    "typer",  # a plain command line is parsed without it (runtime_lab/cli/run_args.py)
    "rich",
    "httpx",
    "pydantic",
    "textual",
)
# ...and what it must load (the check is not idle): the container's own steps
LOADED = ("runtime_lab.process.init", "runtime_lab.kernel.seccomp", "runtime_lab.storage.archives")


def run(root: Path, image: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["DOCKSCOPE_ROOT"] = str(root)
    argv = [sys.executable, "-X", "importtime", "-m", "inspect_tool", "run", "--rm"]
    return subprocess.run(
        [*argv, "--network", "none", *extra, str(image), "true"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def loaded(stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if "import time:" in line
    }


@pytest.fixture(scope="module")
def warm(root: Path, busybox_image: Path) -> Path:
    first = run(root, busybox_image)  # fills the layer store and the seccomp cache
    assert first.returncode == 0, first.stderr[-2000:]
    return root


def test_a_warm_run_loads_only_its_own_path(warm: Path, busybox_image: Path) -> None:
    done = run(warm, busybox_image)
    assert done.returncode == 0, done.stderr[-2000:]
    modules = loaded(done.stderr)
    assert set(LOADED) <= modules
    assert sorted(m for m in NOT_LOADED if m in modules) == []


def test_a_warm_run_loads_the_seccomp_program_from_the_cache(
    warm: Path, busybox_image: Path, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.jsonl"
    done = run(warm, busybox_image, "--trace-json", str(trace))
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    (seccomp,) = [e for e in events if e["step"] == "seccomp" and e["phase"] == "done"]
    assert seccomp["result"] == "ok"
    assert seccomp["evidence"]["program_from_cache"] is True
    assert seccomp["evidence"]["status"]["Seccomp"] == "2"  # SECCOMP_MODE_FILTER
    assert list((warm / "seccomp").glob("*.json"))
