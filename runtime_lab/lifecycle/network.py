"""``--network bridge``: a container's place on the bridge, over its life.

- before the fork (``prepare``): the bridge and its nft table (first container only), an
  address leased, the ports checked, ``hosts`` and ``resolv.conf`` written in the
  container's directory (PID 1 bind-mounts them on /etc), the running peers' ``hosts``
  told of the new name;
- once PID 1 exists, before it goes on (``attach``): the veth pair, eth0 inside, the address
  and default route, the -p rules;
- when the container ends (``disconnect``), after a ``rm`` or a crash (``release``): the
  rules, the veth, the lease, the peers' lines; the bridge and table with the last lease.

Each part is one traced step with the commands run as evidence.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from runtime_lab.kernel import network as net
from runtime_lab.lifecycle.state import ContainerError, step_event
from runtime_lab.storage.store import ContainerConfig, Store
from runtime_lab.trace.events import Tracer

HOSTS = "hosts"
RESOLV = "resolv.conf"
INIT_LAYER = "init"  # docker's "-init" layer: the mount points, above the image's layers


def init_layer(directory: Path) -> Path:
    """A lower layer of the container's own holding empty /etc/hosts and /etc/resolv.conf,
    as docker's init layer does: the bind mounts land on them, so nothing is made in the
    writable layer (no copy-up of /etc that ``container diff`` would show)."""
    layer = directory / INIT_LAYER
    (layer / "etc").mkdir(mode=0o755, parents=True, exist_ok=True)
    for name in (HOSTS, RESOLV):
        (layer / "etc" / name).touch(mode=0o644)
    return layer


def network_files(store: Store, config: ContainerConfig) -> list[dict[str, Any]]:
    """The files PID 1 bind-mounts, as the config's volumes are described."""
    directory = store.container_dir(config.id)
    return [
        {
            "type": "bind",
            "name": None,
            "source": str(directory / name),
            "destination": f"/etc/{name}",
            "read_only": False,
            "copy": False,
        }
        for name in (HOSTS, RESOLV)
    ]


def shared_network_files(
    store: Store, config: ContainerConfig, directory: Path, rootfs_mode: str
) -> list[dict[str, Any]]:
    """The hosts and resolv.conf PID 1 mounts: the container's own on the bridge, its
    owner's when it joins another container's network namespace (none when that owner has
    none: --network none or host)."""
    owner = config.network.partition(":")[2] if config.network.startswith("container:") else ""
    files = network_files(store, store.load_config(owner) if owner else config)
    if not all(Path(f["source"]).is_file() for f in files):
        return []
    if rootfs_mode == "overlay":
        init_layer(directory)
    return files


class BridgeNetwork:
    def __init__(self, store: Store, config: ContainerConfig, tracer: Tracer) -> None:
        self.store, self.config, self.tracer = store, config, tracer
        self.settings = net.Settings.load(store.root)
        self.ports = [net.PortMapping(**p) for p in config.ports]
        self.address: str | None = None
        self.released = False

    # -- before the fork -----------------------------------------------------------------------
    def prepare(self) -> None:
        cmd = net.Commands(observe=self.tracer.tracing)
        directory = self.store.container_dir(self.config.id)
        try:
            with net.Leases.locked() as book:
                stale = _release_stale(book, cmd)  # their holders died (kill -9)
                self._check_ports(book)
                alone = not any(
                    x.container != self.config.id for x in book.on_bridge(self.settings.bridge)
                )
                evidence = net.ensure_bridge(self.settings, cmd, alone=alone)
                evidence["commands"] = cmd.run_log
                if stale:
                    evidence["stale_leases_released"] = stale
                self.tracer.emit(
                    step_event("bridge", args={"name": self.settings.bridge}, evidence=evidence)
                )
                mine = book.release(self.config.id)  # a crash's leftover of this container
                lease = book.allocate(
                    self.settings,
                    net.Lease(
                        bridge=self.settings.bridge,
                        address="",
                        container=self.config.id,
                        name=self.config.name,
                        hostname=self.config.hostname,
                        root=str(self.store.root),
                        hosts_file=str(directory / HOSTS),
                        ports=[_port_dict(p) for p in self.ports],
                        holder=net.this_process(),
                    ),
                )
                book.save()
                self.address = lease.address
                self.tracer.emit(
                    step_event(
                        "ip-lease",
                        args={"subnet": self.settings.subnet},
                        evidence={
                            "address": lease.address,
                            "gateway": str(self.settings.gateway),
                            "lease_file": str(book.path),
                            **({"stale_lease_replaced": mine.address} if mine else {}),
                        },
                    )
                )
                self._write_files(book, lease)
        except net.NetworkError as exc:
            self._failed("bridge" if self.address is None else "network-files", str(exc))
        except OSError as exc:
            self._failed("network-files", exc.strerror or str(exc))

    def _check_ports(self, book: net.Leases) -> None:
        for port in self.ports:
            for other in book.leases:
                if other.container == self.config.id:
                    continue
                for theirs in other.mappings():
                    if port.clashes(theirs):
                        raise ContainerError(
                            f"-p {port.host_ip or '0.0.0.0'}:{port.host_port}/{port.protocol}: "
                            f"port is already allocated (container {other.name} publishes it)",
                            subject=self.config.name,
                        )
            if not net.host_port_free(port):
                raise ContainerError(
                    f"-p {port.host_ip or '0.0.0.0'}:{port.host_port}/{port.protocol}: "
                    "address already in use (another program of this host listens there)",
                    subject=self.config.name,
                )

    def _write_files(self, book: net.Leases, lease: net.Lease) -> None:
        directory = self.store.container_dir(self.config.id)
        init_layer(directory)
        peers = [x for x in book.on_bridge(self.settings.bridge) if x.container != self.config.id]
        hosts = net.hosts_text(lease, peers)
        net.rewrite_in_place(directory / HOSTS, hosts)
        try:
            host_resolv = Path("/etc/resolv.conf").read_text(errors="replace")
        except OSError:
            host_resolv = ""
        resolv, dropped = net.resolv_text(host_resolv)
        net.rewrite_in_place(directory / RESOLV, resolv)
        told = _tell_peers(book, self.settings.bridge)
        self.tracer.emit(
            step_event(
                "network-files",
                args={"files": [str(directory / HOSTS), str(directory / RESOLV)]},
                evidence={
                    "hosts": hosts.splitlines()[len(net.HOSTS_HEADER.splitlines()) :],
                    "resolv.conf": resolv.splitlines(),
                    "dropped_from_host_resolv": dropped,
                    "peers_told": told,
                },
            )
        )

    # -- PID 1 exists ----------------------------------------------------------------------------
    def attach(self, pid: int) -> str | None:
        """The veth and the -p rules; None, or why it failed (PID 1 then ends)."""
        assert self.address is not None
        cmd = net.Commands(observe=self.tracer.tracing)
        step = "veth"
        try:
            evidence = net.connect_veth(self.settings, self.config.id, pid, self.address, cmd)
            evidence["commands"] = cmd.run_log
            self.tracer.emit(step_event("veth", args={"pid": pid}, evidence=evidence))
            if self.ports:
                cmd, step = net.Commands(observe=self.tracer.tracing), "publish"
                rules = net.publish_rules(self.settings, self.config.id, self.address, self.ports)
                cmd.run(["nft", "-f", "-"], rules)
                self.tracer.emit(
                    step_event(
                        "publish",
                        args={"ports": [str(p) for p in self.ports]},
                        evidence={
                            "commands": cmd.run_log,
                            "nft": [
                                line
                                for line in cmd.look(
                                    ["nft", "list", "table", "ip", self.settings.table]
                                )
                                if net.rule_comment(self.config.id) in line
                            ],
                        },
                    )
                )
        except (net.NetworkError, OSError) as exc:
            self.tracer.emit(step_event(step, args={"pid": pid}, result=str(exc)))
            return f"{net_title(step)}: {exc}"
        return None

    # -- the end ---------------------------------------------------------------------------------
    def disconnect(self) -> None:
        if self.released:  # done before the exit was recorded
            return
        self.released = True
        with contextlib.suppress(Exception):  # never in the way of the exit's record
            evidence = release(
                self.store, self.config.id, self.settings, observe=self.tracer.tracing
            )
            if evidence is not None:
                self.tracer.emit(step_event("network-release", evidence=evidence))

    def _failed(self, step: str, message: str) -> None:
        self.tracer.emit(step_event(step, result=message))
        with contextlib.suppress(Exception):
            release(self.store, self.config.id, self.settings)
        raise ContainerError(f"{net_title(step)}: {message}", subject=self.config.name)


def net_title(step: str) -> str:
    from runtime_lab.trace.steps import STEPS

    return STEPS[step].title


def _port_dict(port: net.PortMapping) -> dict[str, Any]:
    return {
        "host_port": port.host_port,
        "container_port": port.container_port,
        "protocol": port.protocol,
        "host_ip": port.host_ip,
    }


def _release_stale(book: net.Leases, cmd: net.Commands) -> list[str]:
    """Leases whose holder is gone (dockscope killed with -9): their rules, veths and
    addresses go, so that their ports and addresses are free again."""
    released = []
    for lease in [x for x in book.leases if not net.holder_alive(x.holder)]:
        net.delete_rules(net.Settings(lease.bridge), lease.container, cmd)
        host_end, _ = net.veth_names(lease.container)
        if net.link_exists(host_end):
            cmd.run(["ip", "link", "del", host_end], check=False)
        book.leases.remove(lease)
        released.append(f"{lease.address} ({lease.name})")
    if released:
        book.save()
    return released


def _tell_peers(book: net.Leases, bridge: str) -> list[str]:
    """Every running container on the bridge gets the bridge's current names in its hosts
    file (rewritten in place: it is bind-mounted)."""
    told = []
    leases = book.on_bridge(bridge)
    for lease in leases:
        path = Path(lease.hosts_file)
        if not path.exists():
            continue
        with contextlib.suppress(OSError):
            others = [x for x in leases if x.container != lease.container]
            net.rewrite_in_place(path, net.hosts_text(lease, others))
            told.append(lease.name)
    return told


def release(
    store: Store, container_id: str, settings: net.Settings | None = None, *, observe: bool = True
) -> dict[str, Any] | None:
    """Everything of the container's on the host network: its -p rules, its veth (gone with
    its namespace already, unless the namespace outlives it), its lease, its name in the
    peers' hosts files; the bridge and table when no lease is left on them. None when it
    held nothing."""
    if not (net.RUN_DIR / "leases.json").exists():  # no container ever used a bridge
        return None
    settings = settings or net.Settings.load(store.root)
    cmd = net.Commands(observe=observe)
    with net.Leases.locked() as book:
        lease = book.release(container_id)
        host_end, _ = net.veth_names(container_id)
        had_veth = net.link_exists(host_end)
        if lease is None and not had_veth:
            return None
        bridge = lease.bridge if lease is not None else settings.bridge
        if bridge != settings.bridge:
            settings = net.Settings(bridge, settings.subnet)
        # a lease without ports has no rules; none, a crash's leftovers: look for them
        rules = net.delete_rules(settings, container_id, cmd) if not lease or lease.ports else 0
        if had_veth:
            cmd.run(["ip", "link", "del", host_end], check=False)
        book.save()
        told = _tell_peers(book, bridge)
        evidence: dict[str, Any] = {
            "address_released": lease.address if lease else None,
            "rules_deleted": rules,
            "peers_told": told,
        }
        if not book.on_bridge(bridge):
            net.remove_bridge(settings, cmd)
            evidence["bridge_removed"] = bridge
        evidence["commands"] = cmd.run_log
        evidence["ip_outside"] = cmd.look(["ip", "-br", "link", "show", "master", bridge])
    return evidence


def recover(store: Store, running: set[str]) -> list[str]:
    """``cleanup``: the leases (and rules, veths) of this state root's containers that do not
    run any more; other state roots' are never touched."""
    report: list[str] = []
    if not (net.RUN_DIR / "leases.json").exists():
        return report
    with net.Leases.locked() as book:
        mine = [x for x in book.leases if x.root == str(store.root) and x.container not in running]
    for lease in mine:
        with contextlib.suppress(Exception):
            release(store, lease.container)
            report.append(f"network: released {lease.address} of container {lease.container[:12]}")
    return report
