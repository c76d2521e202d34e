# SPDX-License-Identifier: BSD-2-Clause
"""Network namespaces and the TCP sockets that already exist in them (sock_diag).

The TCP provider needs both outside its BPF programs: netns filters name
namespaces by inode (what ``ls -l /proc/PID/ns/net`` and ``lsns`` show) while
BPF only sees namespace *cookies* (``SO_NETNS_COOKIE``); and the dump-state
replay lists every TCP socket of every namespace, which netlink sock_diag
only does one namespace at a time, from inside it.

A namespace is entered by a short-lived helper thread (``setns(2)`` changes
only the calling thread), so the caller's own namespace never changes.
"""
from __future__ import annotations

import ctypes
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, TypeVar

from pyelog.kernel.loader import EventlogError
from pyelog.records.untrusted import clip

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
SO_NETNS_COOKIE = 71
SO_COOKIE = 57
NETNS_DIRS = ("/var/run/netns", "/run/netns")
# Linux TCP states that are not full sockets (no session can end for them).
TCP_TIME_WAIT, TCP_NEW_SYN_RECV = 6, 12
TCP_LISTEN = 10
# sock_diag's state mask: bit n asks for sockets in state n.
SS_ALL = 0xFFF
_libc = ctypes.CDLL(None, use_errno=True)


def netns_inode(spec: str | int) -> int:
    """A netns given as inode number, path (/proc/PID/ns/net, /var/run/netns/X)
    or ``ip netns`` name -> its inode number (for TcpFilter.netns / --netns)."""
    if isinstance(spec, int):
        return spec
    s = str(spec).strip()
    if s.isdigit():
        return int(s)
    if s.startswith("net:[") and s.endswith("]"):
        return int(s[5:-1])
    for path in (s, *(os.path.join(d, s) for d in NETNS_DIRS)):
        if os.path.exists(path):
            return os.stat(path).st_ino
    raise EventlogError(f"no network namespace {clip(spec)!r} (give an inode number, a path or an `ip netns` name)")


def namespaces() -> dict[int, str]:
    """inode -> one path that opens it, for every namespace reachable through
    a process or a bind mount under /var/run/netns."""
    found: dict[int, str] = {}
    for d in NETNS_DIRS:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            p = os.path.join(d, n)
            try:
                found.setdefault(os.stat(p).st_ino, p)
            except OSError:
                pass
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        p = f"/proc/{pid}/ns/net"
        try:
            found.setdefault(os.stat(p).st_ino, p)
        except OSError:
            pass            # exited, or a kernel thread we may not look at
    return found


def run_in_netns(path: str, fn: Callable[[], T]) -> T:
    """Call ``fn()`` in a helper thread that has entered the namespace ``path``."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({path}): {os.strerror(e)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=target, name="pyelog-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def current_netns_cookie() -> int:
    """SO_NETNS_COOKIE of the calling thread's namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")


def netns_cookies(inodes: list[int]) -> list[int]:
    """Namespace inodes -> the cookies BPF compares (EventlogError if one is gone)."""
    if not inodes:
        return []
    known = namespaces()
    out = []
    for ino in inodes:
        if ino not in known:
            raise EventlogError(f"network namespace {ino} not found (no process or /var/run/netns entry holds it)")
        out.append(run_in_netns(known[ino], current_netns_cookie))
    return out


@dataclass
class TcpSocket:
    """One TCP socket as sock_diag reports it (full sockets only)."""
    cookie: int
    family: int
    state: int
    laddr: str
    lport: int
    raddr: str
    rport: int
    inode: int
    netns_inode: int
    netns_cookie: int
    cgroup_id: int = 0
    info: dict = field(default_factory=dict)     # tcp_info as pyroute2 decodes it
    cc: str = ""
    pid: int = 0
    comm: str = ""


def _list_here(ns_inode: int, states: int = SS_ALL) -> tuple[int, list[TcpSocket]]:
    from pyroute2 import DiagSocket
    INET_DIAG_INFO, INET_DIAG_CONG = 2, 4
    ext = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_CONG - 1))
    cookie = current_netns_cookie()
    out = []
    with DiagSocket() as ds:
        ds.bind()
        for fam in (socket.AF_INET, socket.AF_INET6):
            for m in ds.get_sock_stats(family=fam, states=states, extensions=ext):
                if m["idiag_state"] in (TCP_TIME_WAIT, TCP_NEW_SYN_RECV):
                    continue
                attrs = dict((k, v) for k, v in m["attrs"] if k != "UNKNOWN")
                cg = attrs.get("INET_DIAG_CGROUP_ID", 0)
                out.append(TcpSocket(
                    cookie=m["idiag_cookie"], family=fam, state=m["idiag_state"],
                    laddr=m["idiag_src"], lport=m["idiag_sport"], raddr=m["idiag_dst"],
                    rport=m["idiag_dport"], inode=m["idiag_inode"], netns_inode=ns_inode,
                    netns_cookie=cookie, cgroup_id=cg if isinstance(cg, int) else 0,
                    info=attrs.get("INET_DIAG_INFO") or {},
                    cc=attrs.get("INET_DIAG_CONG") or ""))
    return cookie, out


def socket_owners() -> dict[int, int]:
    """socket inode -> pid of a process holding it (the first one found)."""
    owners: dict[int, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        d = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(d)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"{d}/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owners.setdefault(int(link[8:-1]), int(pid))
    return owners


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def existing_sockets(with_owners: bool = True, listeners_only: bool = False) -> Iterator[TcpSocket]:
    """Every full TCP socket (not TIME_WAIT/NEW_SYN_RECV) in every namespace,
    or only those in LISTEN."""
    states = 1 << TCP_LISTEN if listeners_only else SS_ALL
    socks: list[TcpSocket] = []
    for ino, path in namespaces().items():
        try:
            _cookie, found = run_in_netns(path, lambda ino=ino: _list_here(ino, states))
        except OSError:
            continue            # the namespace went away meanwhile
        socks.extend(found)
    if with_owners and socks:
        owners = socket_owners()
        for s in socks:
            s.pid = owners.get(s.inode, 0)
            if s.pid:
                s.comm = _comm(s.pid)
    return iter(socks)


def existing_cookies() -> set[int]:
    """Cookies of every full TCP socket now (for the replay's recheck)."""
    return {s.cookie for s in existing_sockets(with_owners=False)}
