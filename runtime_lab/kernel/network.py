"""The bridge network's kernel side, done the way a student would type it: ``ip`` (iproute2)
for every netlink request, ``nft`` (nftables) for NAT and published ports, ``/proc/sys`` for
the two sysctls. Every command is recorded (``Commands``) so the trace shows exactly what was
run, with ``ip addr`` outside and inside the container as evidence.

```
host                                             container (its own network namespace)
 dockscope0  10.199.0.1/16  (a bridge, docker0's twin)
   └─ veth<id>  ── a veth pair ──  eth0  10.199.0.N/16, default via 10.199.0.1
 nft table ip dockscope: masquerade SUBNET leaving by another interface; -p as DNAT
```

The address book is host-wide (a bridge and its subnet are the kernel's, whatever state
root a container lives in): ``/run/dockscope/network/leases.json``, changed under an
exclusive ``flock`` of ``leases.lock``. ``/run`` is a tmpfs, so the book vanishes with
everything it describes (bridges, veths, rules) at a reboot.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inspect_tool.errors import UsageError
from runtime_lab.kernel import linux

DEFAULT_BRIDGE = "dockscope0"
# docker: 172.17.0.0/16; podman (netavark): 10.88.0.0/16, which podman's own tests on this
# machine may use. 10.199.0.0/16 is private (RFC 1918) and used by neither.
DEFAULT_SUBNET = "10.199.0.0/16"
RUN_DIR = Path("/run/dockscope/network")
SETTINGS_FILE = "network.json"  # in the state root: {"bridge": NAME, "subnet": CIDR}
BRIDGE_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,14}")
# docker's fallback when the host's resolv.conf names only loopback servers
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


class NetworkError(Exception):
    """A network step failed: the command and what it printed."""


# -- settings and -p ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """The bridge a state root's containers join (``<root>/network.json``, like docker's
    daemon.json ``bridge``/``bip``): its name, its subnet, and the nft table named after it."""

    bridge: str = DEFAULT_BRIDGE
    subnet: str = DEFAULT_SUBNET

    @property
    def table(self) -> str:
        return "dockscope" if self.bridge == DEFAULT_BRIDGE else f"dockscope_{self.bridge}"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.network.network_address + 1

    @classmethod
    def load(cls, root: Path) -> Settings:
        path = root / SETTINGS_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"cannot read the network settings: {exc}", subject=str(path)
            ) from None
        if not isinstance(data, dict):
            raise UsageError("network settings: a JSON object is expected", subject=str(path))
        bridge = data.get("bridge", DEFAULT_BRIDGE)
        subnet = data.get("subnet", DEFAULT_SUBNET)
        if not isinstance(bridge, str) or not BRIDGE_NAME.fullmatch(bridge):
            raise UsageError(
                "network settings: bridge: 1 to 15 letters, digits or '_', a letter first",
                subject=str(path),
            )
        try:
            net = ipaddress.IPv4Network(subnet) if isinstance(subnet, str) else None
        except ValueError:
            net = None
        if net is None or net.prefixlen > 29 or not net.is_private:
            raise UsageError(
                "network settings: subnet: a private IPv4 network, /29 or larger "
                "(e.g. 10.199.0.0/16)",
                subject=str(path),
            )
        return cls(bridge, str(net))


@dataclass(frozen=True, slots=True)
class PortMapping:
    """``-p [IP:]HOST:CONTAINER[/tcp|udp]``."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""  # "": every address of the host (0.0.0.0)

    def __str__(self) -> str:  # as docker port prints it
        return (
            f"{self.container_port}/{self.protocol} -> {self.host_ip or '0.0.0.0'}:{self.host_port}"
        )

    def clashes(self, other: PortMapping) -> bool:
        return (
            self.host_port == other.host_port
            and self.protocol == other.protocol
            and (not self.host_ip or not other.host_ip or self.host_ip == other.host_ip)
        )


def parse_publish(value: str) -> PortMapping:
    """One ``-p``: ``HOST:CONTAINER`` or ``IP:HOST:CONTAINER``, ``/tcp`` (default) or ``/udp``."""
    text, _, protocol = value.partition("/")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp"):
        raise UsageError(f"-p {value}: the protocol is tcp or udp")
    parts = text.split(":")
    if len(parts) == 2:
        host_ip, host, container = "", parts[0], parts[1]
    elif len(parts) == 3:
        host_ip, host, container = parts
    else:
        raise UsageError(
            f"-p {value}: use HOST:CONTAINER[/tcp|udp] or IP:HOST:CONTAINER (a host port "
            "is needed: dockscope picks none, and ranges are not supported)"
        )
    if host_ip:
        try:
            host_ip = str(ipaddress.IPv4Address(host_ip))
        except ValueError:
            raise UsageError(f"-p {value}: {host_ip!r} is not an IPv4 address") from None
        if host_ip == "0.0.0.0":
            host_ip = ""
    ports = []
    for port in (host, container):
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise UsageError(f"-p {value}: {port!r} is not a port (1 to 65535)")
        ports.append(int(port))
    return PortMapping(ports[0], ports[1], protocol, host_ip)


# -- commands, recorded --------------------------------------------------------------------------


@dataclass(slots=True)
class Commands:
    """Every command run, as it would be typed (``ip -batch -`` input shown line by line)."""

    run_log: list[str] = field(default_factory=list)
    observe: bool = True  # run the commands whose output is only evidence (a traced run)

    def run(self, argv: Sequence[str], stdin: str | None = None, *, check: bool = True) -> str:
        shown = " ".join(argv)
        if stdin is not None:
            # as a student would type it: a here-document
            lines = [f"  {line}" for line in stdin.strip().splitlines()]
            self.run_log += [f"{shown} <<EOF", *lines, "EOF"]
        else:
            self.run_log.append(shown)
        try:
            done = subprocess.run(
                list(argv), input=stdin, capture_output=True, text=True, check=False
            )
        except FileNotFoundError:
            raise NetworkError(f"{argv[0]}: not installed (Debian: iproute2, nftables)") from None
        if check and done.returncode != 0:
            message = (done.stderr or done.stdout).strip().splitlines()
            raise NetworkError(f"{shown}: {message[-1] if message else f'exit {done.returncode}'}")
        return done.stdout

    def look(self, argv: Sequence[str]) -> list[str]:
        """A command whose output is evidence (not recorded as a change)."""
        if not self.observe:
            return []
        with contextlib.suppress(OSError):
            done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
            return [" ".join(line.split()) for line in done.stdout.splitlines() if line.strip()]
        return []


def in_netns(pid: int) -> list[str]:
    """The prefix that runs a command in PID's network namespace (and nothing else of it)."""
    return ["nsenter", f"--net=/proc/{pid}/ns/net"]


def write_sysctl(name: str, value: str) -> dict[str, str]:
    """``sysctl -w name=value`` through /proc/sys; the value before and after."""
    path = Path("/proc/sys") / name.replace(".", "/")
    before = path.read_text().strip()
    if before != value:
        path.write_text(value)
    return {
        "sysctl": f"sysctl -w {name}={value}",
        "before": before,
        "after": path.read_text().strip(),
    }


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def veth_names(container_id: str) -> tuple[str, str]:
    """The host's end and the container's end before it is renamed eth0 (IFNAMSIZ: 15)."""
    return f"veth{container_id[:11]}", f"ceth{container_id[:11]}"


def rule_comment(container_id: str) -> str:
    return f"dockscope:{container_id[:12]}"


# -- the bridge and its table --------------------------------------------------------------------


def bridge_table(settings: Settings) -> str:
    """The nft table of a bridge: outbound masquerade (SUBNET leaving by another interface),
    loopback-sourced traffic to published ports masqueraded on the bridge (route_localnet),
    and three empty NAT chains where -p adds its DNAT rules."""
    br, subnet, table = settings.bridge, settings.subnet, settings.table
    return (
        f"table ip {table} {{\n"
        "  chain prerouting {\n"
        "    type nat hook prerouting priority dstnat; policy accept;\n"
        "  }\n"
        "  chain output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    ip saddr {subnet} oifname != "{br}" masquerade\n'
        f'    oifname "{br}" ip saddr 127.0.0.0/8 masquerade\n'
        "  }\n"
        "}\n"
    )


def ensure_bridge(settings: Settings, cmd: Commands, *, alone: bool = False) -> dict[str, Any]:
    """The bridge up with the gateway's address, forwarding on, the nft table loaded; what
    existed already is left as it is (the first container of a bridge makes it). ``alone``:
    no other container holds a lease on the bridge, so a bridge made now gets its table
    afresh in the same ``nft -f`` (a crash's leftover table replaced, no listing first)."""
    br = settings.bridge
    evidence: dict[str, Any] = {"bridge": br, "subnet": settings.subnet}
    made = not link_exists(br)
    if made:
        cmd.run(
            ["ip", "-batch", "-"],
            f"link add name {br} type bridge\n"
            f"addr add {settings.gateway}/{settings.network.prefixlen} dev {br}\n"
            f"link set {br} up\n",
        )
    evidence["bridge_made"] = made
    sysctls = [write_sysctl("net.ipv4.ip_forward", "1")]
    # a DNAT to the container of a packet sent to 127.0.0.1 leaves by the bridge with a
    # loopback source: the kernel drops such packets unless route_localnet is on there
    sysctls.append(write_sysctl(f"net.ipv4.conf.{br}.route_localnet", "1"))
    evidence["sysctls"] = sysctls
    if made and alone:  # one transaction: whatever table of that name was left, then ours
        table = settings.table
        cmd.run(
            ["nft", "-f", "-"],
            f"add table ip {table}\ndelete table ip {table}\n" + bridge_table(settings),
        )
        evidence["table_made"] = table
        evidence["ip_outside"] = cmd.look(["ip", "-br", "addr", "show", "dev", br])
        return evidence
    listed = cmd.run(["nft", "list", "tables", "ip"], check=False)
    if f"table ip {settings.table}" not in listed.splitlines():
        cmd.run(["nft", "-f", "-"], bridge_table(settings))
        evidence["table_made"] = settings.table
    evidence["ip_outside"] = cmd.look(["ip", "-br", "addr", "show", "dev", br])
    return evidence


def remove_bridge(settings: Settings, cmd: Commands) -> None:
    """The bridge and its table, once no container uses them (netavark does the same)."""
    cmd.run(["nft", "delete", "table", "ip", settings.table], check=False)
    if link_exists(settings.bridge):  # ip link del BRIDGE, without a process for it
        cmd.run_log.append(f"ip link set {settings.bridge} down; ip link del {settings.bridge}")
        cmd.run_log.append(f"  (ioctl SIOCSIFFLAGS, SIOCBRDELBR {settings.bridge})")
        with contextlib.suppress(OSError):
            linux.delete_bridge(settings.bridge)


# -- a container's end of it ---------------------------------------------------------------------


def connect_veth(
    settings: Settings, container_id: str, pid: int, address: str, cmd: Commands
) -> dict[str, Any]:
    """The veth pair: one end on the bridge, the other made in PID's network namespace as
    eth0 (one ``ip -batch``); there, eth0 given the address, up, and a default route through
    the bridge: the requests ``ip`` would send, made here on a socket of that namespace
    (``setns``, then ioctls), so no ``nsenter`` and second ``ip`` run."""
    host_end, _ = veth_names(container_id)
    prefix = settings.network.prefixlen
    cmd.run(
        ["ip", "-batch", "-"],
        f"link add name {host_end} type veth peer name eth0 netns {pid}\n"
        f"link set {host_end} master {settings.bridge} up\n",
    )
    namespace = f"/proc/{pid}/ns/net"
    netmask = str(settings.network.netmask)
    inside = [
        f"setns {namespace}: socket(AF_INET) there",
        f"addr add {address}/{prefix} dev eth0: ioctl SIOCSIFADDR {address}, "
        f"SIOCSIFNETMASK {netmask}",
        "link set eth0 up: ioctl SIOCSIFFLAGS IFF_UP",
        f"route add default via {settings.gateway} dev eth0: ioctl SIOCADDRT",
    ]
    with linux.socket_in_netns(namespace) as sock:
        linux.set_interface_address(sock, "eth0", address, netmask)
        linux.set_interface_up(sock, "eth0")
        linux.add_default_route(sock, str(settings.gateway), "eth0")
    return {
        "veth": {"host": host_end, "container": "eth0"},
        "address": f"{address}/{prefix}",
        "gateway": str(settings.gateway),
        "in_container": inside,
        "ip_outside": cmd.look(["ip", "-br", "addr", "show", "master", settings.bridge])
        + cmd.look(["ip", "-br", "addr", "show", "dev", settings.bridge]),
        "ip_inside": cmd.look([*in_netns(pid), "ip", "-br", "addr"])
        + [f"route: {r}" for r in cmd.look([*in_netns(pid), "ip", "route"])],
    }


def publish_rules(
    settings: Settings, container_id: str, address: str, ports: Sequence[PortMapping]
) -> str:
    """``nft -f`` input: each -p as DNAT in prerouting (from outside and other containers)
    and output (from the host itself: 127.0.0.1 and its own addresses), and a masquerade for
    a container reaching another one's published port through the host."""
    table, comment = settings.table, rule_comment(container_id)
    lines = []
    for port in ports:
        match = f"ip daddr {port.host_ip}" if port.host_ip else "fib daddr type local"
        to = f"{address}:{port.container_port}"
        dnat = f"{match} {port.protocol} dport {port.host_port} dnat to {to}"
        for chain in ("prerouting", "output"):
            lines.append(f'add rule ip {table} {chain} {dnat} comment "{comment}"')
        lines.append(
            f'add rule ip {table} postrouting oifname "{settings.bridge}" ip saddr '
            f"{settings.subnet} ip daddr {address} {port.protocol} dport {port.container_port} "
            f'ct status dnat masquerade comment "{comment}"'
        )
    return "\n".join(lines) + "\n"


def delete_rules(settings: Settings, container_id: str, cmd: Commands) -> int:
    """The container's rules, found by their comment (``nft -a`` shows each rule's handle)."""
    listing = cmd.run(["nft", "-a", "list", "table", "ip", settings.table], check=False)
    comment = f'comment "{rule_comment(container_id)}"'
    chain, deletions = "", []
    for line in listing.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "chain":
            chain = words[1]
        elif comment in line and "# handle " in line:
            handle = line.rsplit("# handle ", 1)[1].strip()
            deletions.append(f"delete rule ip {settings.table} {chain} handle {handle}")
    if deletions:
        cmd.run(["nft", "-f", "-"], "\n".join(deletions) + "\n")
    return len(deletions)


def host_port_free(port: PortMapping) -> bool:
    """Nothing on the host listens on the port (docker-proxy would have to bind it)."""
    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((port.host_ip or "0.0.0.0", port.host_port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            if exc.errno == errno.EADDRNOTAVAIL:
                raise NetworkError(
                    f"-p {port}: {port.host_ip} is not an address of this host"
                ) from None
            raise
    return True


# -- the address book ----------------------------------------------------------------------------


@dataclass(slots=True)
class Lease:
    """One container's entry in the host's address book (leases.json): its address on a bridge,
    the names peers reach it by, its published ports and the process that will release it."""

    bridge: str
    address: str
    container: str  # full ID
    name: str
    hostname: str
    root: str  # the state root (recovery releases only its own)
    hosts_file: str  # the container's /etc/hosts on the host (peers are written into it)
    ports: list[dict[str, Any]] = field(default_factory=list)
    holder: str = ""  # "PID:start time" of the process that releases it (run, a supervisor)

    def mappings(self) -> list[PortMapping]:
        return [PortMapping(**p) for p in self.ports]


class Leases:
    """The host's address book, read and written under its lock (``with Leases.locked()``)."""

    def __init__(self, path: Path, leases: list[Lease]) -> None:
        self.path, self.leases = path, leases

    @classmethod
    @contextlib.contextmanager
    def locked(cls, run_dir: Path = RUN_DIR) -> Iterator[Leases]:
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(run_dir / "leases.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = run_dir / "leases.json"
            try:
                data = json.loads(path.read_text())
                leases = [Lease(**item) for item in data.get("leases", [])]
            except FileNotFoundError:
                leases = []
            except (ValueError, TypeError) as exc:
                raise NetworkError(
                    f"{path}: unreadable ({exc}): remove it to start afresh"
                ) from None
            yield cls(path, leases)
        finally:
            os.close(lock)

    def save(self) -> None:
        tmp = self.path.with_name(".leases.json.tmp")
        tmp.write_text(json.dumps({"leases": [asdict(x) for x in self.leases]}, indent=2))
        os.replace(tmp, self.path)

    def on_bridge(self, bridge: str) -> list[Lease]:
        return [x for x in self.leases if x.bridge == bridge]

    def of(self, container_id: str) -> Lease | None:
        return next((x for x in self.leases if x.container == container_id), None)

    def allocate(self, settings: Settings, lease: Lease) -> Lease:
        """The lowest free address of the subnet (the gateway is .1), recorded."""
        taken = {x.address for x in self.on_bridge(settings.bridge)}
        for host in settings.network.hosts():
            if host == settings.gateway or str(host) in taken:
                continue
            lease.address = str(host)
            self.leases.append(lease)
            return lease
        raise NetworkError(f"no address left in {settings.subnet} on {settings.bridge}")

    def release(self, container_id: str) -> Lease | None:
        lease = self.of(container_id)
        if lease is not None:
            self.leases.remove(lease)
        return lease


def this_process() -> str:
    """This process as a lease's holder: its PID and start time (a reused PID differs)."""
    return f"{os.getpid()}:{_start_time(os.getpid())}"


def holder_alive(holder: str) -> bool:
    pid, _, started = holder.partition(":")
    return pid.isdigit() and _start_time(int(pid)) == started


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:  # field 22, after the command in parentheses
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def hosts_text(own: Lease | None, peers: Sequence[Lease]) -> str:
    """/etc/hosts as docker writes it, then the container itself and its peers on the bridge
    (by name and hostname: how containers reach each other by name here)."""
    lines = [HOSTS_HEADER]
    for lease in ([own] if own is not None else []) + list(peers):
        names = [lease.hostname] + ([lease.name] if lease.name != lease.hostname else [])
        lines.append(f"{lease.address}\t{' '.join(names)}\n")
    return "".join(lines)


def resolv_text(host_resolv: str) -> tuple[str, list[str]]:
    """The host's resolv.conf less its loopback nameservers (they would be the container's
    own loopback); docker's public fallback when none is left. The text, and what was
    dropped."""
    kept, dropped, servers = [], [], 0
    for line in host_resolv.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            try:
                loopback = ipaddress.ip_address(words[1].split("%")[0]).is_loopback
            except ValueError:
                loopback = False
            if loopback:
                dropped.append(line)
                continue
            servers += 1
        kept.append(line)
    if not servers:
        kept += [f"nameserver {ns}" for ns in FALLBACK_NAMESERVERS]
    return "\n".join(kept).strip() + "\n", dropped


def rewrite_in_place(path: Path, text: str) -> None:
    """A bind-mounted file keeps its inode: rewritten, never replaced by a rename."""
    with open(path, "r+" if path.exists() else "w") as f:
        f.seek(0)
        f.write(text)
        f.truncate()
