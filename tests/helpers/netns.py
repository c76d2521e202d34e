# SPDX-License-Identifier: BSD-2-Clause
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
import time
import uuid
from typing import Callable, Iterator, NamedTuple

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

    def write_sysctls(self, values: dict[str, str]) -> None:
        """Write /proc/sys entries as seen from the namespace (sysctl net.* is per
        namespace: the calling thread's namespace decides which one is opened)."""
        with self.enter():
            for key, value in values.items():
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(value)

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


class Exchange(NamedTuple):
    """The cookies (session ids) of one exchange's sockets, and the client's port."""
    listener: int
    client: int
    server: int
    client_port: int

    @property
    def cookies(self) -> tuple[int, int, int]:
        return self.listener, self.client, self.server


def connected(ns: Namespace, port: int, *, family: int = socket.AF_INET, host: str = "127.0.0.1",
              client_ns: Namespace | None = None,
              before_connect: Callable[[socket.socket], None] | None = None,
              ) -> tuple[socket.socket, socket.socket, socket.socket]:
    """A listener on ``host:port`` in ``ns``, a client (made in ``client_ns``,
    default ``ns``) connected to it, and the accepted socket: (listener,
    client, accepted). ``before_connect`` runs on the client first."""
    with ns.enter():
        srv = socket.socket(family)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen()
    with (client_ns or ns).enter():
        cli = socket.socket(family)
    if before_connect:
        before_connect(cli)
    cli.connect((host, port))
    acc, _ = srv.accept()
    return srv, cli, acc


def exchange(ns: Namespace, port: int, *, family: int = socket.AF_INET, host: str = "127.0.0.1",
             send: int = 20000, reply: int = 100,
             before_connect: Callable[[socket.socket], None] | None = None,
             after_connect: Callable[[socket.socket, socket.socket], None] | None = None) -> Exchange:
    """A client sends ``send`` bytes, the server replies ``reply``, all three sockets close.

    The sockets are created inside ``ns`` (on its loopback, or wherever
    ``host`` lives there); the hooks run on the client before connect() and
    on the client and accepted socket after accept().
    """
    srv, cli, acc = connected(ns, port, family=family, host=host, before_connect=before_connect)
    if after_connect:
        after_connect(cli, acc)
    cli.sendall(b"s" * send)
    got = 0
    while got < send:
        got += len(acc.recv(65536))
    acc.sendall(b"r" * reply)
    got = 0
    while got < reply:
        got += len(cli.recv(65536))
    info = Exchange(so_cookie(srv), so_cookie(cli), so_cookie(acc), cli.getsockname()[1])
    cli.close()
    acc.close()
    srv.close()
    return info


def exchange_alone(port: int, **kw) -> Exchange:
    """One :func:`exchange` (same keywords) in a fresh namespace of its own,
    left 0.2 s after the sockets close, then removed."""
    with Namespace() as ns:
        info = exchange(ns, port, **kw)
        time.sleep(0.2)
    return info
