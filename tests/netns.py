"""Network namespaces for kernel tests: traffic that never leaves this machine.

Every test that makes TCP traffic does it inside namespaces created here
(pyroute2), on their loopback or on a veth pair between two of them, so no
packet can reach an address outside the machine.

Sockets keep the namespace they were created in, so a test enters a
namespace only to create sockets (``with ns.enter(): s = socket.socket()``),
then uses them from anywhere.
"""
from __future__ import annotations

import contextlib
import os
import socket
import uuid
from typing import Iterator

from pyroute2 import IPRoute, NetNS, netns


class Namespace:
    """A named network namespace with its loopback up; removed by :meth:`close`."""

    def __init__(self, prefix: str = "pyelog"):
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        netns.create(self.name)
        with NetNS(self.name) as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        """Switch the calling thread into the namespace (to create sockets)."""
        netns.pushns(self.name)
        try:
            yield
        finally:
            netns.popns()

    def inode(self) -> int:
        """The namespace's inode number, what the kernel calls its id (ns.inum)."""
        return os.stat(f"/var/run/netns/{self.name}").st_ino

    def ipr(self) -> NetNS:
        return NetNS(self.name)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            netns.remove(self.name)

    def __enter__(self) -> "Namespace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def veth_pair(a: Namespace, b: Namespace, addr_a: str = "10.231.0.1", addr_b: str = "10.231.0.2",
              prefixlen: int = 24) -> tuple[str, str]:
    """Join two namespaces with a veth pair; returns the interface names.

    The addresses only exist inside the two private namespaces.
    """
    ia, ib = f"ve{uuid.uuid4().hex[:6]}", f"ve{uuid.uuid4().hex[:6]}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=ia, kind="veth", peer=ib)
        ipr.link("set", index=ipr.link_lookup(ifname=ia)[0], net_ns_fd=a.name)
        ipr.link("set", index=ipr.link_lookup(ifname=ib)[0], net_ns_fd=b.name)
    for ns, ifname, addr in ((a, ia, addr_a), (b, ib, addr_b)):
        with ns.ipr() as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=idx, address=addr, prefixlen=prefixlen)
            ipr.link("set", index=idx, state="up")
    return ia, ib


def so_cookie(sock: socket.socket) -> int:
    """The socket's cookie (SOL_SOCKET, SO_COOKIE = 57): its session id in the TCP provider."""
    return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, 57, 8), "little")
