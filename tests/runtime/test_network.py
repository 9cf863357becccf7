"""--network bridge, as root, against the real kernel: containers reaching each other by name,
-p from the host (127.0.0.1 and the bridge's address), outbound NAT seen by a server in a
network namespace the test makes as "the outside", --network none, and nothing left behind
(veths, nft rules, leases) after rm, a port clash or a kill -9.

The module's state root names a bridge and a subnet of its own (``network.json``), so other
tests and other state roots on this machine are never in the way. Nothing leaves this machine:
every address is in a namespace the test made."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_lab.kernel.network import RUN_DIR
from tests.support.cli import DOCKSCOPE, dockscope, env_for, ok
from tests.support.runtime import (
    alive,
    checked_root,
    events,
    needs_root,
    only_container,
    state,
    step,
    wait_for_line,
    wait_until,
)

pytestmark = needs_root

TAG = os.getpid() % 200 + 20  # this run's own bridge, subnet and outside network
BRIDGE = f"dsnt{TAG}"
SUBNET = f"10.198.{TAG}.0/24"
GATEWAY = f"10.198.{TAG}.1"
TABLE = f"dockscope_{BRIDGE}"
SERVER = "echo hello from {name} > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("network") / "state"
    path.mkdir()
    (path / "network.json").write_text(json.dumps({"bridge": BRIDGE, "subnet": SUBNET}))
    yield from checked_root(path)


def host_network(root: Path) -> dict[str, object]:
    """What a bridge container may leave on the host: veths and this bridge, the nft table,
    this root's leases."""
    links = sorted(
        name for name in os.listdir("/sys/class/net") if name.startswith("veth") or name == BRIDGE
    )
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    try:
        leases = json.loads((RUN_DIR / "leases.json").read_text())["leases"]
    except FileNotFoundError:
        leases = []
    return {
        "links": links,
        "table": f"table ip {TABLE}" in tables.splitlines(),
        "leases": [x["address"] for x in leases if x["root"] == str(root)],
    }


@pytest.fixture
def unchanged(root: Path) -> Iterator[None]:
    before = host_network(root)
    assert before["leases"] == [] and not before["table"]
    yield
    wait_until(lambda: host_network(root) == before, what="the network to be as before")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


def test_containers_reach_each_other_by_name(
    root: Path, busybox_image: Path, unchanged: None
) -> None:
    trace = root.parent / "alpha.jsonl"
    alpha = ("--name", "alpha", "--network", "bridge", "--trace-json", trace)
    ok(dockscope(root, "run", "-d", *alpha, busybox_image, "sh", "-c", SERVER.format(name="a")))
    beta = ("--name", "beta", "--network", "bridge")
    ok(dockscope(root, "run", "-d", *beta, busybox_image, "sh", "-c", SERVER.format(name="b")))
    try:
        # beta started after alpha: alpha's hosts file was told of it
        assert "1 packets received" in ok(dockscope(root, "exec", "alpha", "ping", "-c1", "beta"))
        wget = ("wget", "-qO-", "http://alpha:8080/")
        assert ok(dockscope(root, "exec", "beta", *wget)) == "hello from a\n"
        assert ok(dockscope(root, "exec", "alpha", "wget", "-qO-", "http://beta:8080/")) == (
            "hello from b\n"
        )
        hosts = ok(dockscope(root, "exec", "beta", "cat", "/etc/hosts"))
        assert f"10.198.{TAG}.2\t" in hosts and "alpha" in hosts
        addresses = ok(dockscope(root, "exec", "alpha", "ip", "-o", "-4", "addr"))
        assert f"eth0 inet 10.198.{TAG}.2/24" in " ".join(addresses.split())
        route = ok(dockscope(root, "exec", "alpha", "ip", "route"))
        assert f"default via {GATEWAY} dev eth0" in route
        # a container joining alpha's network namespace reads alpha's names, as docker shares
        joined = ("run", "--rm", "--net", "container:alpha", busybox_image, "cat", "/etc/hosts")
        assert f"10.198.{TAG}.2\t" in ok(dockscope(root, *joined))
    finally:
        ok(dockscope(root, "rm", "-f", "beta"))
    assert "beta" not in ok(dockscope(root, "exec", "alpha", "cat", "/etc/hosts"))
    # the mount points are in docker's "init" layer: nothing of them in the writable layer
    diff = ok(dockscope(root, "container", "diff", "alpha")).splitlines()
    assert diff == ["C /tmp", "A /tmp/index.html"]  # the server's page only, no /etc
    ok(dockscope(root, "rm", "-f", "alpha"))

    found = events(trace)
    bridge = step(found, "bridge")["evidence"]
    assert bridge["bridge_made"] is True
    assert any(c.startswith("nft -f -") for c in bridge["commands"])
    veth = step(found, "veth")["evidence"]
    assert veth["address"] == f"10.198.{TAG}.2/24"
    # one ip -batch outside (the pair, eth0 made in PID 1's namespace); inside, ioctls
    assert f"  link set {veth['veth']['host']} master {BRIDGE} up" in veth["commands"]
    assert not any(c.startswith("nsenter") for c in veth["commands"])
    assert any(
        c.startswith(f"addr add 10.198.{TAG}.2/24 dev eth0: ioctl SIOCSIFADDR")
        for c in veth["in_container"]
    )
    assert any(
        line.startswith("eth0") and f"10.198.{TAG}.2/24" in line for line in veth["ip_inside"]
    )
    assert any(line.startswith(BRIDGE) and GATEWAY in line for line in veth["ip_outside"])
    order = [e["step"] for e in found]
    assert order.index("veth") < order.index("mount-private")  # PID 1 waited for its eth0
    released = step(found, "network-release")["evidence"]
    assert released["address_released"] == f"10.198.{TAG}.2"


def test_published_port_from_the_host_and_a_clash(
    root: Path, busybox_image: Path, unchanged: None
) -> None:
    port, local_port = free_port(), free_port()
    publish = ("-p", f"{port}:8080", "-p", f"127.0.0.1:{local_port}:8080/tcp")
    ok(
        dockscope(
            root,
            *("run", "-d", "--name", "web", "--network", "bridge", *publish),
            *(busybox_image, "sh", "-c", SERVER.format(name="web")),
        )
    )
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/"), what="httpd")
        assert fetch(f"http://127.0.0.1:{port}/") == "hello from web\n"
        assert fetch(f"http://{GATEWAY}:{port}/") == "hello from web\n"  # the host's bridge IP
        assert fetch(f"http://127.0.0.1:{local_port}/") == "hello from web\n"
        assert not _answers(f"http://{GATEWAY}:{local_port}/")  # bound to 127.0.0.1 only
        assert ok(dockscope(root, "port", "web")).splitlines() == [
            f"8080/tcp -> 0.0.0.0:{port}",
            f"8080/tcp -> 127.0.0.1:{local_port}",
        ]
        assert ok(dockscope(root, "port", "web", "8080")).splitlines()[0] == f"0.0.0.0:{port}"
        ports = ok(dockscope(root, "ps", "--format", "{{.Names}} {{.Ports}}"))
        assert ports == f"web 0.0.0.0:{port}->8080/tcp, 127.0.0.1:{local_port}->8080/tcp\n"
        during = host_network(root)
        clash = dockscope(
            root,
            *("run", "--name", "web2", "--network", "bridge", "-p", f"{port}:80"),
            *(busybox_image, "true"),
        )
        assert clash.code == 3
        assert clash.err.strip().splitlines() == [
            f"dockscope: web2: -p 0.0.0.0:{port}/tcp: port is already allocated "
            "(container web publishes it)"
        ]
        assert host_network(root) == during  # the second took nothing
        ok(dockscope(root, "rm", "web2"))
    finally:
        ok(dockscope(root, "rm", "-f", "web"))
    assert not _answers(f"http://127.0.0.1:{port}/")


def _answers(url: str) -> bool:
    try:
        fetch(url)
    except OSError:
        return False
    return True


OUTSIDE_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000))
s.listen(1)
print("listening", flush=True)
conn, peer = s.accept()
conn.sendall(("seen " + peer[0] + "\\n").encode())
conn.close()
print(peer[0], flush=True)
"""


@pytest.fixture
def outside() -> Iterator[tuple[str, str]]:
    """A network namespace playing the outside world: a veth to the host (198.18.TAG.1 on
    the host, .2 inside, a /30), no route to the containers' subnet (only NAT gets an answer
    back), a server that tells the client its source address."""
    namespace, host_end = f"dsntout{TAG}", f"dsout{TAG}"
    here, there = f"198.18.{TAG}.1", f"198.18.{TAG}.2"
    commands = [
        ["ip", "netns", "add", namespace],
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", "dsin0"],
        ["ip", "link", "set", "dsin0", "netns", namespace],
        ["ip", "addr", "add", f"{here}/30", "dev", host_end],
        ["ip", "link", "set", host_end, "up"],
        ["ip", "-n", namespace, "addr", "add", f"{there}/30", "dev", "dsin0"],
        ["ip", "-n", namespace, "link", "set", "dsin0", "up"],
    ]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        yield namespace, there
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def test_outbound_traffic_is_masqueraded(
    root: Path, busybox_image: Path, outside: tuple[str, str], unchanged: None
) -> None:
    namespace, server = outside
    python = ["ip", "netns", "exec", namespace, "python3", "-c", OUTSIDE_SERVER]
    proc = subprocess.Popen(python, stdout=subprocess.PIPE, text=True)
    try:
        wait_for_line(proc, "listening")
        out = ok(
            dockscope(
                root,
                *("run", "--rm", "--network", "bridge", busybox_image),
                *("sh", "-c", f"echo | nc -w 5 {server} 9000"),
            )
        )
        seen = out.strip()
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"198.18.{TAG}.1"
    finally:
        proc.kill()
        proc.communicate()
    # the server saw the host's address on its link, not the container's 10.198.TAG.N
    assert seen == f"seen 198.18.{TAG}.1"


def test_network_none_has_only_lo(root: Path, busybox_image: Path, unchanged: None) -> None:
    out = ok(
        dockscope(root, "run", "--rm", "--network", "none", busybox_image, "cat", "/proc/net/dev")
    )
    assert [line.split(":")[0].strip() for line in out.splitlines()[2:]] == ["lo"]
    hosts = ok(dockscope(root, "run", "--rm", "--network", "none", busybox_image, "ls", "/etc"))
    assert "hosts" not in hosts.split()  # the image has none, and none was mounted


def test_kill_9_then_cleanup_releases_the_network(
    root: Path, busybox_image: Path, unchanged: None
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            *(*DOCKSCOPE, "run", "--network", "bridge", "-p", f"{port}:8080"),
            *(str(busybox_image), "sh", "-c", "echo ready; exec sleep 1000"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(root),
    )
    try:
        wait_for_line(proc, "ready")
        container_id = only_container(root)
        assert host_network(root)["leases"] == [f"10.198.{TAG}.2"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=15)
    wait_until(lambda: not alive(state(root, container_id)["pid"]), what="PID 1 to die")
    left = host_network(root)
    assert left["leases"] and left["table"]  # dockscope had no chance to release them
    report = ok(dockscope(root, "cleanup"))
    assert f"network: released 10.198.{TAG}.2 of container {container_id[:12]}" in report
    assert not host_network(root)["leases"]
    ok(dockscope(root, "rm", container_id))


def test_explain_lists_the_network_steps(busybox_image: Path, tmp_path: Path) -> None:
    out = ok(
        dockscope(
            tmp_path, "run", "--explain", "--network", "bridge", "-p", "8080:80", busybox_image
        )
    )
    titles = ["Set up the bridge", "Lease an address", "Plug the container into the bridge"]
    titles += [
        "Publish the ports (-p)",
        "Mount /etc/hosts and /etc/resolv.conf",
        "Leave the bridge",
    ]
    positions = [out.index(title) for title in titles]
    assert positions[:4] == sorted(positions[:4])
    none = ok(dockscope(tmp_path, "run", "--explain", "--network", "none", busybox_image))
    assert not any(title in none for title in titles)


def test_publish_needs_the_bridge(busybox_image: Path, tmp_path: Path) -> None:
    result = dockscope(tmp_path, "run", "--network", "host", "-p", "80:80", busybox_image)
    assert result.code == 2
    assert "conflicting options: -p and --network host" in result.err
    with contextlib.suppress(FileNotFoundError):
        assert not list((tmp_path / "containers").iterdir())
