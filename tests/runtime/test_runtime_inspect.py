"""``ps -s`` (the writable layer's size and the virtual size, as docker ps -s reports them) and
``container inspect`` (the whole recorded config and state, in the shape engine storage's
containers have). Sizes are checked against the image's own layer tar, read with tarfile."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from inspect_tool.render.storage import container_json
from inspect_tool.storage.model import ContainerRecord
from runtime_lab.storage.records import human_size
from tests.support.cli import dockscope, ok
from tests.support.runtime import needs_root, ps


def image_size(image: Path) -> int:
    """docker's image size: the bytes of each layer's regular files, as its tar carries them
    (a hard link is a header without content)."""
    with tarfile.open(image) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        total = 0
        for name in manifest[0]["Layers"]:
            with tarfile.open(fileobj=archive.extractfile(name)) as layer:
                total += sum(m.size for m in layer if m.isreg())
    return total


def test_human_size_is_go_units_with_three_digits() -> None:
    assert [human_size(n) for n in (0, 5, 999, 1000, 5002, 1146369, 10**12)] == [
        "0B",
        "5B",
        "999B",
        "1kB",
        "5kB",
        "1.15MB",
        "1TB",
    ]


class TestContainers:
    pytestmark = needs_root

    def test_ps_size(self, root: Path, busybox_image: Path) -> None:
        # 5000 bytes twice by a hard link (counted once), a symlink (its target's length),
        # a deletion (a whiteout weighs nothing), a new empty directory (nothing)
        script = "head -c 5000 /dev/zero > /f; ln /f /g; ln -s /f /h; rm /etc/group; mkdir /d"
        ok(dockscope(root, "run", "--name", "sized", busybox_image, "sh", "-c", script))
        ok(dockscope(root, "run", "--name", "plain", busybox_image, "true"))
        document = json.loads(ok(dockscope(root, "ps", "-as", "--json")))
        found = {c["name"]: c for c in document["containers"]}
        base = image_size(busybox_image)
        assert (found["sized"]["size_rw"], found["sized"]["size_root_fs"]) == (
            5002,
            base + 5002,
        )
        assert (found["plain"]["size_rw"], found["plain"]["size_root_fs"]) == (0, base)
        assert ps(root)["sized"]["size_rw"] is None  # measured only with -s
        table = ok(dockscope(root, "ps", "-as")).splitlines()
        assert table[0].split()[-1] == "SIZE"
        row = next(line for line in table if "sized" in line)
        assert row.rstrip().endswith(f"5kB (virtual {human_size(base + 5002)})")
        assert "SIZE" not in ok(dockscope(root, "ps", "-a"))
        ok(dockscope(root, "rm", "sized", "plain"))

    def test_inspect_has_the_engine_storage_shape_and_everything_recorded(
        self, root: Path, busybox_image: Path
    ) -> None:
        ok(
            dockscope(
                root,
                *("run", "-d", "--name", "seen", "-l", "lab=6", "-v", "vol:/data"),
                *(busybox_image, "sleep", "100"),
            )
        )
        document = json.loads(ok(dockscope(root, "container", "inspect", "-s", "seen")))
        assert (document["kind"], document["engine"]) == ("container-inspect", "dockscope")
        assert document["root"] == str(root)
        record = document["container"]
        shape = container_json(
            ContainerRecord(
                "", "", "", None, None, None, "", None, None, None, None, None, "", "", None, None
            )
        )
        assert set(record) == set(shape)  # what storage ls and --root inspect give
        running = ps(root)["seen"]
        assert (record["id"], record["name"], record["status"], record["running"]) == (
            running["id"],
            "seen",
            "running",
            True,
        )
        assert (record["pid"], record["exit_code"], record["engine"]) == (
            running["pid"],
            None,
            "dockscope",
        )
        directory = root / "containers" / running["id"]
        assert record["upper_dir"] == str(directory / "upper")
        files = document["files"]
        assert files[str(directory / "config.json")] == document["config"]
        assert files[str(directory / "state.json")] == document["state"]
        config, state = document["config"], document["state"]
        assert config["labels"] == {"lab": "6"} and config["command"] == ["sleep", "100"]
        assert [v["destination"] for v in config["volumes"]] == ["/data"]
        assert state["status"] == "running" and state["cgroup_paths"]
        assert document["id"] == running["id"]  # the keys scripts read before stay
        assert document["size"] == {"rw": 0, "root_fs": image_size(busybox_image)}
        assert json.loads(ok(dockscope(root, "container", "inspect", "seen")))["size"] is None
        ok(dockscope(root, "rm", "-f", "seen"))
        ok(dockscope(root, "volume", "rm", "vol"))
