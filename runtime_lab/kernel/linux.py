"""The only module that makes raw Linux system calls (through ctypes on the C library).

Python 3.11's ``os`` has no unshare, setns, mount or pivot_root; these thin wrappers raise
``OSError`` with the errno and the call's name, so a trace can say exactly what failed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from enum import IntFlag

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket


def _load_libc() -> ctypes.CDLL:
    """The C library by its soname (glibc's); ``find_library`` only where that is missing: it
    runs ``ldconfig -p``, a process of its own on every start."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library

        return ctypes.CDLL(find_library("c"), use_errno=True)


_libc = _load_libc()


class Clone(IntFlag):
    """Namespace flags of clone(2), unshare(2) and setns(2)."""

    NEWNS = 0x00020000
    NEWCGROUP = 0x02000000
    NEWUTS = 0x04000000
    NEWIPC = 0x08000000
    NEWUSER = 0x10000000
    NEWPID = 0x20000000
    NEWNET = 0x40000000


# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_SET_PDEATHSIG = 1
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capset": 126, "bpf": 321, "seccomp": 317},
    "aarch64": {"pivot_root": 41, "capset": 91, "bpf": 280, "seccomp": 277},
}


def _check(result: int, name: str, detail: str = "") -> int:
    if result < 0:
        code = ctypes.get_errno()
        message = (
            f"{name}({detail}): {os.strerror(code)}" if detail else f"{name}: {os.strerror(code)}"
        )
        raise OSError(code, message)
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare", Clone(flags).__repr__())


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    def b(value: str | None) -> bytes | None:
        return None if value is None else os.fsencode(value)

    result = _libc.mount(b(source), b(target), b(fstype), ctypes.c_ulong(flags), b(data))
    _check(result, "mount", f"{source} on {target} type {fstype}")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(os.fsencode(target), ctypes.c_int(flags)), "umount2", target)


def _syscall_number(name: str) -> int:
    machine = os.uname().machine
    try:
        return _SYSCALLS[machine][name]
    except KeyError:
        raise OSError(errno.ENOSYS, f"{name}: unsupported architecture {machine}") from None


def pivot_root(new_root: str, put_old: str) -> None:
    number = _syscall_number("pivot_root")
    result = _libc.syscall(ctypes.c_long(number), os.fsencode(new_root), os.fsencode(put_old))
    _check(result, "pivot_root", f"{new_root}, {put_old}")


SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_LOG = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter(program: bytes, *, log: bool = False) -> None:
    """``seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`` with a BPF program (struct
    sock_filter, 8 bytes each) as libseccomp exports it; SECCOMP_FILTER_FLAG_LOG with ``log``
    (what libseccomp's CTL_LOG attribute asks). No new privileges must be set already."""
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    flags = SECCOMP_FILTER_FLAG_LOG if log else 0
    number = _syscall_number("seccomp")
    result = _libc.syscall(
        ctypes.c_long(number),
        ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
        ctypes.c_uint(flags),
        ctypes.byref(prog),
    )
    _check(result, "seccomp", "SECCOMP_SET_MODE_FILTER")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname", name)


def prctl(option: int, arg2: int = 0) -> None:
    _check(
        _libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg2),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        "prctl",
        str(option),
    )


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def drop_bounding_capability(cap: int) -> None:
    try:
        prctl(PR_CAPBSET_DROP, cap)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # a capability this kernel does not know
            raise


def ambient_raise(cap: int) -> None:
    """prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap): the capability survives execve of
    a program without file capabilities (it must be permitted and inheritable)."""
    _check(
        _libc.prctl(
            ctypes.c_int(47),
            ctypes.c_ulong(2),
            ctypes.c_ulong(cap),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        ),
        "prctl",
        f"PR_CAP_AMBIENT_RAISE, {cap}",
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the three capability sets of this thread (version 3: 64-bit sets)."""
    header = struct.pack("=Ii", 0x20080522, 0)
    data = struct.pack(
        "=IIIIII",
        effective & 0xFFFFFFFF,
        permitted & 0xFFFFFFFF,
        inheritable & 0xFFFFFFFF,
        effective >> 32,
        permitted >> 32,
        inheritable >> 32,
    )
    number = _syscall_number("capset")
    result = _libc.syscall(ctypes.c_long(number), ctypes.c_char_p(header), ctypes.c_char_p(data))
    _check(result, "capset")


def set_loopback_up() -> None:
    """``ip link set lo up`` inside the current network namespace (SIOCSIFFLAGS on lo)."""
    import fcntl
    import socket

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


SIOCADDRT = 0x890B
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
SIOCSIFADDR, SIOCSIFNETMASK = 0x8916, 0x891C
SIOCBRDELBR = 0x89A1
IFF_UP = 0x1
RTF_UP, RTF_GATEWAY = 0x1, 0x2


def socket_in_netns(path: str) -> socket.socket:
    """An AF_INET socket of the network namespace at ``path`` (``/proc/PID/ns/net``): this
    thread joins it, makes the socket and comes back. A socket stays in the namespace it was
    made in, so the interface requests below act there."""
    import socket

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target, Clone.NEWNET)
        finally:
            os.close(target)
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        finally:
            setns(own, Clone.NEWNET)
    finally:
        os.close(own)


def _ifreq_address(name: str, address: str) -> bytes:
    """struct ifreq with a struct sockaddr_in (AF_INET, port 0, the address)."""
    import socket

    return struct.pack("16sH2s4s8x", name.encode(), socket.AF_INET, b"", socket.inet_aton(address))


def _set_flags(sock: socket.socket, name: str, on: int = 0, off: int = 0) -> None:
    import fcntl

    request = struct.pack("16sH14x", name.encode(), 0)
    flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
    fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), (flags | on) & ~off))


def set_interface_address(sock: socket.socket, name: str, address: str, netmask: str) -> None:
    """``ip addr add ADDRESS/PREFIX dev NAME``: SIOCSIFADDR, then SIOCSIFNETMASK."""
    import fcntl

    fcntl.ioctl(sock, SIOCSIFADDR, _ifreq_address(name, address))
    fcntl.ioctl(sock, SIOCSIFNETMASK, _ifreq_address(name, netmask))


def set_interface_up(sock: socket.socket, name: str) -> None:
    """``ip link set NAME up``: SIOCSIFFLAGS with IFF_UP."""
    _set_flags(sock, name, on=IFF_UP)


class _RtEntry(ctypes.Structure):
    _fields_ = [
        ("rt_pad1", ctypes.c_ulong),
        ("rt_dst", ctypes.c_ubyte * 16),
        ("rt_gateway", ctypes.c_ubyte * 16),
        ("rt_genmask", ctypes.c_ubyte * 16),
        ("rt_flags", ctypes.c_ushort),
        ("rt_pad2", ctypes.c_short),
        ("rt_pad3", ctypes.c_ulong),
        ("rt_pad4", ctypes.c_void_p),
        ("rt_metric", ctypes.c_short),
        ("rt_dev", ctypes.c_char_p),
        ("rt_mtu", ctypes.c_ulong),
        ("rt_window", ctypes.c_ulong),
        ("rt_irtt", ctypes.c_ushort),
    ]


def _sockaddr_in(address: str) -> ctypes.Array[ctypes.c_ubyte]:
    import socket

    raw = struct.pack("H2s4s8x", socket.AF_INET, b"", socket.inet_aton(address))
    return (ctypes.c_ubyte * 16).from_buffer_copy(raw)


def add_default_route(sock: socket.socket, gateway: str, device: str) -> None:
    """``ip route add default via GATEWAY dev DEVICE``: SIOCADDRT (0.0.0.0/0, RTF_GATEWAY)."""
    import fcntl

    dev = ctypes.c_char_p(device.encode())
    entry = _RtEntry(
        rt_dst=_sockaddr_in("0.0.0.0"),
        rt_gateway=_sockaddr_in(gateway),
        rt_genmask=_sockaddr_in("0.0.0.0"),
        rt_flags=RTF_UP | RTF_GATEWAY,
        rt_dev=dev,
    )
    fcntl.ioctl(sock, SIOCADDRT, bytes(entry))


def delete_bridge(name: str) -> None:
    """``ip link del NAME`` of a bridge: down (SIOCSIFFLAGS), then SIOCBRDELBR."""
    import fcntl
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        _set_flags(sock, name, off=IFF_UP)
        fcntl.ioctl(sock, SIOCBRDELBR, name.encode() + b"\0")


NAMESPACES = ("mnt", "uts", "ipc", "pid", "net", "cgroup", "user")


def namespace_inodes(pid: int | str = "self") -> dict[str, int]:
    """The inode of each namespace of a process (what ``ls -l /proc/PID/ns`` shows)."""
    found: dict[str, int] = {}
    for name in NAMESPACES:
        try:
            found[name] = os.stat(f"/proc/{pid}/ns/{name}").st_ino
        except OSError:
            continue
    return found


# -- eBPF (the cgroup v2 device filter) --------------------------------------------------------

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2


def _bpf(command: int, attr: bytes, name: str) -> int:
    buffer = ctypes.create_string_buffer(attr.ljust(128, b"\0"), 128)
    number = _syscall_number("bpf")
    result = _libc.syscall(
        ctypes.c_long(number), ctypes.c_int(command), buffer, ctypes.c_uint(len(buffer))
    )
    return _check(result, "bpf", name)


def bpf_load_device_program(instructions: bytes, count: int) -> int:
    """``bpf(BPF_PROG_LOAD)`` of a BPF_PROG_TYPE_CGROUP_DEVICE program: its descriptor. The
    verifier's log is part of the error when the kernel refuses it."""
    code = ctypes.create_string_buffer(instructions, len(instructions))
    license = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack(
        "=IIQQIIQ",
        BPF_PROG_TYPE_CGROUP_DEVICE,
        count,
        ctypes.addressof(code),
        ctypes.addressof(license),
        1,  # log_level: a verifier log when the program is refused
        len(log),
        ctypes.addressof(log),
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD")
    except OSError as exc:
        detail = log.value.decode(errors="replace").strip().splitlines()[-3:]
        raise OSError(exc.errno, f"{exc.strerror}: {' / '.join(detail)}") from None


def bpf_attach_device_program(cgroup_fd: int, program_fd: int) -> None:
    """``bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE)`` with BPF_F_ALLOW_MULTI (as runc: the
    programs of the groups above still run too)."""
    attr = struct.pack("=IIII", cgroup_fd, program_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
    _bpf(BPF_PROG_ATTACH, attr, "BPF_PROG_ATTACH")


def bpf_attached_device_programs(cgroup_fd: int) -> list[int]:
    """The IDs of the device programs attached to a cgroup (``bpftool cgroup show``)."""
    ids = (ctypes.c_uint32 * 64)()
    # target_fd, attach_type, query_flags, attach_flags, prog_ids_ptr, prog_cnt
    attr = bytearray(struct.pack("=IIIIQI", cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, 0, 64))
    struct.pack_into("=Q", attr, 16, ctypes.addressof(ids))
    buffer = ctypes.create_string_buffer(bytes(attr).ljust(128, b"\0"), 128)
    number = _syscall_number("bpf")
    result = _libc.syscall(
        ctypes.c_long(number), ctypes.c_int(BPF_PROG_QUERY), buffer, ctypes.c_uint(128)
    )
    _check(result, "bpf", "BPF_PROG_QUERY")
    count = struct.unpack_from("=I", buffer.raw, 24)[0]
    return list(ids[: min(count, 64)])


# -- pseudo-terminals (the container's console) ---------------------------------------------------

TIOCSCTTY = 0x540E
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441


def open_pty(ptmx: str) -> tuple[int, int, int]:
    """A new pseudo-terminal pair from the devpts instance whose ``ptmx`` is given: the
    master, the slave (opened from the master with TIOCGPTPEER, so no path lookup can be
    raced, as runc does) and the slave's number (``/dev/pts/N``)."""
    import fcntl

    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
        number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, bytes(4)))[0]
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        os.close(master)
        raise
    return master, int(slave), int(number)


def set_controlling_terminal(fd: int) -> None:
    """``ioctl(fd, TIOCSCTTY, 0)``: the terminal becomes this session leader's controlling
    terminal (Ctrl-C, job control and SIGWINCH then reach its foreground process group)."""
    import fcntl

    fcntl.ioctl(fd, TIOCSCTTY, 0)


def window_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of a terminal, or None when ``fd`` is not one."""
    import fcntl

    try:
        rows, columns, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, TIOCGWINSZ, bytes(8)))
    except OSError:
        return None
    return rows, columns


def set_window_size(fd: int, rows: int, columns: int) -> None:
    """``ioctl(fd, TIOCSWINSZ)``: the kernel sends SIGWINCH to the terminal's foreground
    process group when the size changes."""
    import fcntl

    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit status, or 128 + the signal's number.
    (``os.waitpid`` itself retries when a signal interrupts it: PEP 475.)"""
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
