"""Narration for people: the live trace (``--trace``), the pauses of ``--step`` and the plan of
``--explain``. Writes to stderr so the container's own output keeps stdout. Every value from
the image or the command line (a hostname, an argument, a path) is escaped as dockscope's other
human output is (inspect_tool/render/text.py)."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from inspect_tool.render.text import markup, safe_console, visible
from runtime_lab.trace.events import Event
from runtime_lab.trace.steps import Step


def _evidence_lines(event: Event) -> list[str]:
    ev = event.evidence
    lines: list[str] = []
    before, after = ev.get("namespaces_before"), ev.get("namespaces_after")
    if isinstance(before, dict) and isinstance(after, dict):
        for name in sorted(after):
            old = before.get(name)
            new = after[name]
            if name == "pid" and old == new:
                lines.append(f"ns pid: {new} (unchanged here: the new one is for the children)")
            elif old != new:
                lines.append(f"ns {name}: {old} → {new}")
            else:
                lines.append(f"ns {name}: {new} (unchanged)")
    for line in ev.get("mountinfo", [])[:4] if isinstance(ev.get("mountinfo"), list) else []:
        lines.append(f"mountinfo: {line}")
    if "container" in ev and "before" in ev:  # setns: this process's namespace, then
        lines.append(f"ns inode: {ev['before']} → {ev['container']}")
    if event.step in ("cleanup", "remove") and isinstance(ev.get("removed"), list):
        lines += [f"removed: {path}" for path in ev["removed"]]
    for write in ev.get("written", []) if isinstance(ev.get("written"), list) else []:
        lines.append(f"echo {write['value']} > {write['file']}")
    warm = ev.get("warmup")
    if isinstance(warm, dict):  # cgroup-attach: the kernel's wait, taken early
        done = (
            "which took the kernel's wait for a grace period, so this write did not wait"
            if not (warm.get("expired") or warm.get("refused"))
            else "to take the kernel's wait for a grace period early, but it stopped first: "
            f"{warm.get('expired') or warm.get('refused')}"
        )
        lines.append(
            f"before it, in a thread since {warm.get('since') or 'dockscope started'}: "
            f"echo {warm.get('value')} "
            f"> {warm.get('file')} ({warm.get('writes')} times; dockscope's own group, so "
            f"nothing moved), {done} (runtime_lab/kernel/warmup.py)"
        )
    for key in (
        "host_pid",
        "container_pid",
        "pid_namespace",
        "terminal",
        "window",
        "skipped",
        "killed",
        "copied_from_image",
        "warning",  # image: another platform than the host's
        "restart_count",
        "writable_layer",  # cleanup: kept, or removed next (--rm)
        "volumes_removed",
        "exists_now",
        "uts_hostname",
        "interfaces",
        "exit_code",
        "oom_killed",
        "path",
        "uid",
        "gid",
        "default_action",  # seccomp
        "architectures",
        "syscalls_allowed",
        "syscalls_allowed_by_argument",
        "syscalls_with_other_actions",
        "bpf_instructions",
    ):
        if key in ev:
            lines.append(f"{key}: {ev[key]}")
    lines += _userns_lines(ev)
    lines += _network_lines(ev)
    if "status" in ev and isinstance(ev["status"], dict):
        lines += [f"{k}: {v}" for k, v in ev["status"].items()]
    if event.step in ("readonly-paths", "masked-paths") and isinstance(ev.get("paths"), dict):
        lines += [f"{path}: {how}" for path, how in ev["paths"].items() if how != "absent"]
        absent = [path for path, how in ev["paths"].items() if how == "absent"]
        if absent:
            lines.append(f"not in this kernel: {', '.join(absent)}")
    if isinstance(ev.get("devices.list"), list):
        lines.append(f"devices.list: {', '.join(ev['devices.list'])}")
    if "attached_program_ids" in ev:
        lines.append(f"eBPF device program attached: ids {ev['attached_program_ids']}")
    if ev.get("refused"):
        lines += [f"refused: {r}" for r in ev["refused"]]
    denied = ev.get("denied")
    if isinstance(denied, list):  # seccomp-denied: what the kernel's audit records say
        lines += [
            f"denied: {d.get('syscall')} (#{d.get('number')}) called by PID {d.get('pid')} "
            f"{d.get('comm')!r}: {d.get('action')}"
            for d in denied[:20]
            if isinstance(d, dict)
        ]
        if len(denied) > 20:
            lines.append(f"… and {len(denied) - 20} more; by call: {ev.get('counts')}")
        if not denied:
            lines.append("denied: nothing")
    return lines


def _userns_lines(ev: dict[str, Any]) -> list[str]:
    """Rootless: the maps as the kernel shows them, how they were written, what the user
    namespace changes (userns, cgroup-none, mount-dev, mount-sys, layer-store)."""
    lines = [f"$ {command}" for command in ev.get("commands", []) if isinstance(command, str)]
    for name in ("uid_map", "gid_map"):
        if isinstance(ev.get(name), str):
            lines += [
                f"/proc/self/{name}: {' '.join(row.split())}" for row in ev[name].splitlines()
            ]
    for key in ("setgroups", "mode", "reason", "how", "limits", "owners_unmapped", "cgroup"):
        if isinstance(ev.get(key), str | int) and not isinstance(ev.get(key), bool):
            lines.append(f"{key}: {str(ev[key]).strip()}")
    if isinstance(ev.get("bound_from_host"), list):
        lines.append(f"bound from the host: {', '.join(ev['bound_from_host'])}")
    lines += [f"not available: {what}" for what in ev.get("not_available", [])]
    return lines


def _network_lines(ev: dict[str, Any]) -> list[str]:
    """--network bridge: the commands run, then what ``ip`` shows outside and inside."""
    lines: list[str] = []
    for sysctl in ev.get("sysctls", []) if isinstance(ev.get("sysctls"), list) else []:
        lines.append(f"{sysctl['sysctl']} (was {sysctl['before']})")
    for key in ("address", "gateway", "address_released", "rules_deleted", "bridge_removed"):
        if ev.get(key) is not None:
            lines.append(f"{key}: {ev[key]}")
    for command in ev.get("commands", []) if isinstance(ev.get("commands"), list) else []:
        # a here-document's lines (indented) and its end are typed after the command
        typed = command.startswith("  ") or command == "EOF"
        lines.append(f"  {command}" if typed else f"$ {command}")
    for key, label in (
        ("hosts", "/etc/hosts:"),
        ("resolv.conf", "/etc/resolv.conf:"),
        ("nft", "nft:"),
        ("in_container", "in PID 1's namespace:"),
        ("ip_outside", "host:"),
        ("ip_inside", "container:"),
    ):
        value = ev.get(key)
        if isinstance(value, list):
            lines += [f"{label} {item}" for item in value]
    return lines


class Narrator:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or safe_console(stderr=True, highlight=False)
        self.count = 0
        self._explained: set[str] = set()

    def __call__(self, event: Event) -> None:
        if event.phase != "done":
            return
        self.count += 1
        ok = event.result == "ok"
        head = Text()
        head.append(f"[{self.count:>2}] ", style="dim")
        head.append(visible(event.title), style="bold" if ok else "bold red")
        if event.syscall:
            args = ", ".join(f"{k}={_short(v)}" for k, v in event.args.items())
            head.append(f"  {visible(event.syscall)}({args})", style="cyan")
        if not ok:
            head.append(f"  FAILED: {visible(event.result)}", style="red")
        self.console.print(head, soft_wrap=True)
        if event.step not in self._explained:  # once per kind of step (layers repeat)
            self._explained.add(event.step)
            explanation = visible(event.explanation)
            self.console.print(Text(f"     {explanation}", style="dim"), soft_wrap=True)
        for line in _evidence_lines(event):
            self.console.print(Text(f"     {visible(line)}", style="green"), soft_wrap=True)


def _short(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    text = visible(text)
    return text if len(text) <= 60 else text[:57] + "…"


class Stepper:
    """Pauses before each step and shows what a student can look at meanwhile."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or safe_console(stderr=True, highlight=False)
        self.pids: dict[str, int] = {}

    def note(self, event: Event) -> None:
        if event.step == "fork-shim":
            self.pids["shim"] = int(event.evidence.get("shim_pid", 0))
        if event.step == "fork-init" and event.phase == "done":
            self.pids["init"] = int(event.evidence.get("host_pid", 0))

    def __call__(self, event: Event) -> None:
        title, explanation = visible(event.title), visible(event.explanation)
        self.console.print(Text(f"next: {title}", style="bold yellow"), soft_wrap=True)
        self.console.print(Text(f"      {explanation}", style="dim"), soft_wrap=True)
        pid = event.host_pid or event.pid  # what another terminal on the host must type
        looks = [
            f"ls -l /proc/{pid}/ns",
            f"cat /proc/{pid}/mountinfo",
            f"cat /proc/{pid}/status | grep -E 'Cap|NSpid|NoNewPrivs|Seccomp'",
        ]
        if "init" in self.pids:
            looks.append(f"nsenter -t {self.pids['init']} -a ps")
        for command in looks:
            self.console.print(Text(f"      $ {command}", style="cyan"), soft_wrap=True)
        self.console.print("      press Enter to go on", style="dim")
        _wait_for_enter()


def _wait_for_enter() -> None:
    try:
        with open("/dev/tty") as tty:
            tty.readline()
    except OSError:  # no terminal: read stdin
        sys.stdin.readline()


def explain(console: Console, steps: list[Step], details: dict[str, str]) -> None:
    console.print("[bold]What 'dockscope run' will do[/] (nothing is done now)\n")
    for key, value in details.items():
        console.print(f"  {markup(key)}: {markup(value)}", soft_wrap=True)
    console.print()
    for number, step in enumerate(steps, 1):
        line = Text(f"{number:>2}. ", style="dim")
        line.append(visible(step.title), style="bold")
        if step.syscall:
            line.append(f"  [{visible(step.syscall)}]", style="cyan")
        line.append(f"  ({visible(step.where)})", style="dim")
        console.print(line, soft_wrap=True)
        console.print(Text(f"    {visible(step.explanation)}", style="dim"), soft_wrap=True)


def use_color_env() -> bool:
    return not os.environ.get("NO_COLOR")
