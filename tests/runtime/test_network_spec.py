"""The bridge network's rules without root: -p parsed as docker parses it, the state root's
network settings checked, resolv.conf and /etc/hosts as they are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspect_tool.errors import UsageError
from runtime_lab.kernel import network as net
from runtime_lab.trace.steps import BRIDGE_STEPS, plan


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8080:80", net.PortMapping(8080, 80, "tcp", "")),
        ("53:53/udp", net.PortMapping(53, 53, "udp", "")),
        ("127.0.0.1:8080:80/tcp", net.PortMapping(8080, 80, "tcp", "127.0.0.1")),
        ("0.0.0.0:8080:80", net.PortMapping(8080, 80, "tcp", "")),
    ],
)
def test_publish_parsed(value: str, expected: net.PortMapping) -> None:
    assert net.parse_publish(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("80", "a host port is needed"),
        ("8080:80/sctp", "the protocol is tcp or udp"),
        ("0:80", "'0' is not a port"),
        ("8080:70000", "'70000' is not a port"),
        ("::1:8080:80", "use HOST:CONTAINER"),
        ("localhost:8080:80", "'localhost' is not an IPv4 address"),
        ("1000-1010:80", "is not a port"),
    ],
)
def test_publish_refused(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        net.parse_publish(value)


def test_clashes() -> None:
    anywhere, local = net.parse_publish("8080:80"), net.parse_publish("127.0.0.1:8080:81")
    assert anywhere.clashes(local) and local.clashes(anywhere)
    assert not local.clashes(net.parse_publish("127.0.0.2:8080:80"))
    assert not anywhere.clashes(net.parse_publish("8080:80/udp"))
    assert str(local) == "81/tcp -> 127.0.0.1:8080"


def test_settings(tmp_path: Path) -> None:
    assert net.Settings.load(tmp_path) == net.Settings("dockscope0", "10.199.0.0/16")
    assert net.Settings.load(tmp_path).table == "dockscope"
    (tmp_path / "network.json").write_text(json.dumps({"bridge": "lab0", "subnet": "10.5.0.0/24"}))
    settings = net.Settings.load(tmp_path)
    assert (settings.table, str(settings.gateway)) == ("dockscope_lab0", "10.5.0.1")
    for bad in ({"bridge": "a-b"}, {"bridge": "x" * 16}, {"subnet": "8.8.8.0/24"}, [1]):
        (tmp_path / "network.json").write_text(json.dumps(bad))
        with pytest.raises(UsageError, match="network settings"):
            net.Settings.load(tmp_path)
    (tmp_path / "network.json").write_text(json.dumps({"subnet": "10.0.0.0/30"}))
    with pytest.raises(UsageError, match="/29 or larger"):
        net.Settings.load(tmp_path)


def test_resolv_conf_drops_loopback_nameservers() -> None:
    text, dropped = net.resolv_text(
        "# systemd\nnameserver 127.0.0.53\nnameserver 10.1.2.3\nnameserver ::1\nsearch lab\n"
    )
    assert text == "# systemd\nnameserver 10.1.2.3\nsearch lab\n"
    assert dropped == ["nameserver 127.0.0.53", "nameserver ::1"]
    only_loopback, _ = net.resolv_text("nameserver 127.0.0.53\noptions edns0\n")
    assert only_loopback == "options edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def test_hosts_file_names_the_container_and_its_peers() -> None:
    def lease(address: str, name: str, hostname: str) -> net.Lease:
        return net.Lease("br", address, "c" * 64, name, hostname, "/r", "/r/hosts")

    text = net.hosts_text(lease("10.0.0.2", "web", "abc"), [lease("10.0.0.3", "db", "db")])
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert text.endswith("10.0.0.2\tabc web\n10.0.0.3\tdb\n")


def test_publish_rules_are_tagged_with_the_container() -> None:
    settings = net.Settings("lab0", "10.5.0.0/24")
    ports = [net.parse_publish("8080:80"), net.parse_publish("127.0.0.1:5353:53/udp")]
    rules = net.publish_rules(settings, "ab" * 32, "10.5.0.2", ports).splitlines()
    assert rules[0] == (
        "add rule ip dockscope_lab0 prerouting fib daddr type local tcp dport 8080 "
        'dnat to 10.5.0.2:80 comment "dockscope:abababababab"'
    )
    assert rules[4] == (
        "add rule ip dockscope_lab0 output ip daddr 127.0.0.1 udp dport 5353 "
        'dnat to 10.5.0.2:53 comment "dockscope:abababababab"'
    )
    assert all(rule.endswith('comment "dockscope:abababababab"') for rule in rules)


def test_plan_has_the_bridge_steps_only_with_the_bridge() -> None:
    def ids(network: str, ports: int = 0) -> list[str]:
        return [
            s.id for s in plan(network=network, limits=False, rootfs_mode="overlay", ports=ports)
        ]

    bridge = ids("bridge", ports=1)
    assert set(bridge) >= BRIDGE_STEPS and "loopback" in bridge
    assert bridge.index("veth") < bridge.index("mount-private")
    assert "publish" not in ids("bridge")
    assert not BRIDGE_STEPS & set(ids("none")) and not BRIDGE_STEPS & set(ids("host"))
