# SPDX-License-Identifier: BSD-2-Clause
"""The Linux TCP provider: every TCP socket of the host, session id = socket cookie.

Programs (bpf/tcp_provider.bpf.c): a sock_ops program and a setsockopt
hook attached to the cgroup-v2 root (or to the cgroups a filter names) with
BPF links (they go away with the recorder, even after SIGKILL); cgroup skb
ingress and egress programs on the same cgroups, linked only while some
subscription wants IN or OUT (every packet of every socket passes them);
and tcp tracepoints auto-attached by bcc (raw tracepoints for the two
every connection passes, through perf-event fds for the others);
inet_sock_set_state (raw) only where it is needed: for a dump-state
replay's sessions, which sock_ops does not report, and on kernels whose
sock_ops may not ask for the current task (a new socket's owner). Events
follow schemas/tcp_eventlog_schema.src. A few kernel struct members (rto,
rttvar, the negotiated options, the socket state, a packet's seq) are read
at offsets looked up in the running kernel's BTF (:mod:`pyelog.kernel.btf`), so
the provider needs ``/sys/kernel/btf/vmlinux``.

Handshake segments of accepted connections are kept in the BPF table
``tcp_embryo`` until the accepted socket exists; requests that never
complete stay there until :func:`housekeeping` (called by the capture loop,
at most once a second, and once more before the last drain) logs them on
their listener's session.

Which sessions are enabled (FreeBSD: ``kern.eventlog.tcp.default`` and the
``TCP_EVENTLOG`` socket option):

* ``default_enabled`` -- whether new sessions start enabled;
* :class:`TcpFilter` -- with the default on, only matching connections are
  enabled (the others still get a session, disabled, so they can opt in);
  cgroup filters instead restrict which sockets are seen at all;
* ``setsockopt(IPPROTO_TCP, TCP_EVENTLOG=81, 1|0)`` -- per connection, wins
  over both; enabling dumps the connection's state at once (SESSION_CREATE,
  CONN_SET_IP_V4/V6, CONN_PARAMS, CONN_OWNER). Set before ``connect()`` /
  ``listen()`` it applies when the session starts. The hook consumes option
  81 (so it succeeds instead of ENOPROTOOPT) and leaves every other option
  to the kernel untouched. Accepted sockets do not inherit it from their
  listener (as on FreeBSD). ``getsockopt(TCP_EVENTLOG)`` is not provided
  (it still fails with ENOPROTOOPT).

Dump state (``SUBSCRIPTION_DUMP_STATE``): connections older than the
capture are listed with sock_diag in every network namespace
(:mod:`pyelog.providers.tcp_diag`), get a session in the kernel map and
are replayed (SESSION_CREATE, CONN_SET_IP, CONN_PARAMS_REPLAY and RTT from
tcp_info, CONN_OWNER). sock_ops never ran for them, so afterwards they
report what the skb hooks and tracepoints see: IN and OUT, IN_PROBE,
resets, recovery edges, RCV_SPACE, SESSION_END -- and, once tcp_probe has
seen a segment of theirs (which teaches BPF the socket's address),
STATE_CHANGE, RETRANSMIT, SOCKET_OPT and TCP_EVENTLOG. No RTT_SAMPLE, CWND
or RTO (those are sock_ops callbacks).
"""
from __future__ import annotations

import ctypes
import gzip
import ipaddress
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyelog.kernel.btf import Btf, BtfError
from pyelog.kernel.bpf import (BPF_CGROUP_INET_EGRESS, BPF_CGROUP_INET_INGRESS,
                               BPF_CGROUP_SETSOCKOPT, BPF_CGROUP_SOCK_OPS, BPF_PROG_TYPE_CGROUP_SKB,
                               BPF_PROG_TYPE_CGROUP_SOCKOPT, attach_cgroup_link, prog_test_run)
from pyelog.kernel.loader import EventlogError, Loader, ProviderInstance, ProviderSpec, task_helpers
from pyelog.records.untrusted import clip
from pyelog.records.eventlog import KEYWORD_SESSION, LEVEL_INFO, SESSION_CREATE_ID
from pyelog.resources import bpf_source, schema_dir
from pyelog.schema.dsl import Schema, load_schema

SCHEMA = schema_dir() / "tcp_eventlog_schema.src"
SOURCE = "tcp_provider.bpf.c"           # in bpf/ (pyelog.resources)
TCP_EVENTLOG = 81
TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_F_PORT, _F_CIDR, _F_NETNS, _F_PID, _F_COMM = 0x1, 0x2, 0x4, 0x8, 0x10
# A connection request older than this never completes (Linux gives up
# after tcp_synack_retries = 5 SYN-ACKs, about 63 s): housekeeping logs its
# handshake segments on the listener.
EMBRYO_MAX_AGE_US = 75_000_000
# Bytes of each session entry the provider keeps its connection's facts in
# (struct tcp_session_data: owner, RTT summary, parameters for state dumps).
SESSION_DATA = 64
_HOUSEKEEPING_US = 1_000_000

_schema: Schema | None = None


def schema() -> Schema:
    """The TCP schema (parsed once): event ids, levels and layouts come from it."""
    global _schema
    if _schema is None:
        _schema = load_schema(SCHEMA)
    return _schema


@dataclass
class TcpFilter:
    """Which connections the default enables (bcc tools' filters).

    Kinds are ANDed; values within a kind ORed; an empty list does not
    filter. ``ports``/``lports``/``rports`` form one kind: a connection
    matches if its local port is in ports+lports or its remote port in
    ports+rports. ``cidrs``: IPv4/IPv6 networks ("10.0.0.0/8", "::1") that
    the local or the remote address is in (v4 CIDRs also match v4-mapped
    IPv6 addresses). ``netns``: network namespace *inode numbers* (``ls -l
    /proc/PID/ns/net``; :func:`pyelog.providers.tcp_diag.netns_inode` turns
    a path or ``ip netns`` name into one); they must exist when the capture
    starts. ``cgroups``: cgroup-v2 directories (absolute, or relative to the
    cgroup2 mount), subtrees included: sockets of other cgroups are not
    seen at all (the hooks are attached there rather than at the root).
    ``pids``/``comms``: the process that called listen()/connect() (for
    accepted sockets: the listener's), comm as in /proc/PID/comm.
    """
    ports: list[int] = field(default_factory=list)
    lports: list[int] = field(default_factory=list)
    rports: list[int] = field(default_factory=list)
    cidrs: list[str] = field(default_factory=list)
    netns: list[int] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    comms: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for p in (*self.ports, *self.lports, *self.rports):
            if not 0 < int(p) < 65536:
                raise EventlogError(f"invalid port {p}")
        for c in self.cidrs:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError:
                raise EventlogError(f"invalid address or CIDR {clip(c)!r}") from None
        for c in self.comms:
            if not c or len(c.encode()) > 15:
                raise EventlogError(f"invalid command name {clip(c)!r} (1..15 bytes, as /proc/PID/comm)")

    @classmethod
    def from_flags(cls, flags: dict[str, list]) -> "TcpFilter":
        """The filter of the command line's ``--port --lport --rport --addr
        --netns --cgroup --pid --comm`` values (flag name -> values); netns
        given as inode, path or ``ip netns`` name."""
        from pyelog.providers.tcp_diag import netns_inode
        f = {k: flags.get(k, []) for k in ("port", "lport", "rport", "addr", "netns", "cgroup",
                                            "pid", "comm")}
        return cls(ports=f["port"], lports=f["lport"], rports=f["rport"], cidrs=f["addr"],
                   netns=[netns_inode(n) for n in f["netns"]], cgroups=f["cgroup"],
                   pids=f["pid"], comms=f["comm"])

    def port_bits(self) -> dict[int, int]:
        """port -> 1 (local) | 2 (remote), as the BPF map holds them."""
        bits: dict[int, int] = {}
        for p in self.ports:
            bits[int(p)] = bits.get(int(p), 0) | 3
        for p in self.lports:
            bits[int(p)] = bits.get(int(p), 0) | 1
        for p in self.rports:
            bits[int(p)] = bits.get(int(p), 0) | 2
        return bits

    def matches(self, lport: int, rport: int, laddr: str, raddr: str, netns_cookie: int,
                pid: int, comm: str, netns_cookies: set[int]) -> bool:
        """The BPF filter's verdict, in Python (for the dump-state replay)."""
        bits = self.port_bits()
        if bits and not (bits.get(lport, 0) & 1 or bits.get(rport, 0) & 2):
            return False
        if self.cidrs:
            nets = [ipaddress.ip_network(c, strict=False) for c in self.cidrs]
            addrs = []
            for a in (laddr, raddr):
                ip = ipaddress.ip_address(a)
                addrs.append(ip)
                if ip.version == 6 and ip.ipv4_mapped:
                    addrs.append(ip.ipv4_mapped)
            if not any(a in n for a in addrs for n in nets if a.version == n.version):
                return False
        if self.netns and netns_cookie not in netns_cookies:
            return False
        if self.pids and pid not in {int(p) for p in self.pids}:
            return False
        if self.comms and comm not in self.comms:
            return False
        return True


def cgroup2_root() -> str:
    """Where the cgroup-v2 hierarchy is mounted (its root sees every socket)."""
    with open("/proc/self/mounts") as f:
        for line in f:
            _dev, where, fstype, *_ = line.split()
            if fstype == "cgroup2":
                return where
    raise EventlogError("no cgroup2 file system is mounted (the TCP provider attaches sock_ops there)")


def cgroup_dirs(paths: list[str]) -> list[str]:
    """Filter cgroups -> existing cgroup2 directories, nested ones dropped
    (a program on a parent already runs for the child: twice would double
    every event). A path that leads out of the hierarchy (``../..``, a
    link) is refused by name: the kernel would only say "Bad file
    descriptor" when the link is made."""
    root = os.path.realpath(cgroup2_root())

    def inside(path: str) -> bool:
        return path == root or path.startswith(root.rstrip("/") + "/")
    dirs = []
    for p in paths:
        real = os.path.realpath(p) if os.path.isabs(p) else ""
        if not inside(real):      # relative, or absolute within the mount
            real = os.path.realpath(os.path.join(root, p.lstrip("/")))
        if not inside(real):
            raise EventlogError(f"--cgroup {clip(p)!r} leads to {clip(real)}, outside the cgroup-v2 "
                                f"hierarchy at {root}")
        if not os.path.isdir(real):
            raise EventlogError(f"no cgroup-v2 directory {clip(p)!r} (under {root})")
        dirs.append(real)
    dirs = sorted(set(dirs))
    return [d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs)]


# -- what this kernel offers -----------------------------------------------------

# tracepoint -> (fields the probe needs, optional fields -> macro). The raw
# tracepoints (tcp_destroy_sock, tcp_cong_state_set, inet_sock_set_state)
# take the prototype's arguments, the same on every kernel that has them.
_TRACEPOINTS: dict[tuple[str, str], tuple[tuple[str, ...], dict[str, str]]] = {
    ("tcp", "tcp_destroy_sock"): ((), {}),
    ("tcp", "tcp_probe"): (("sock_cookie", "data_len", "snd_una", "snd_nxt", "rcv_wnd", "srtt"), {}),
    ("tcp", "tcp_receive_reset"): (("sock_cookie", "skaddr"), {}),
    ("tcp", "tcp_send_reset"): (("skaddr",), {"state": "TCP_TP_SEND_RESET_STATE"}),
    ("tcp", "tcp_cong_state_set"): ((), {}),
    ("tcp", "tcp_rcvbuf_grow"): (("sock_cookie", "space", "rcvbuf", "copied", "rtt_us"), {}),
    ("tcp", "tcp_rcv_space_adjust"): (("sock_cookie",), {}),
    ("sock", "inet_sock_set_state"): ((), {}),
    ("tcp", "tcp_retransmit_skb"): (("skaddr", "skbaddr", "state"),
                                    {"err": "TCP_TP_RETRANSMIT_ERR"}),
}


def tracefs() -> str:
    """The mounted tracefs (bcc reads tracepoint formats there)."""
    for d in TRACEFS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    raise EventlogError("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")


def tracepoint_fields(category: str, name: str) -> dict[str, str] | None:
    """field name -> declaration of a tracepoint, or None if the kernel lacks it."""
    path = os.path.join(tracefs(), "events", category, name, "format")
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("field:"):
            decl = line[len("field:"):].split(";")[0].strip()
            fname = decl.split()[-1].split("[")[0]
            fields[fname] = decl
    return fields


def kernel_features() -> dict[str, bool]:
    """Macro -> present, for every tracepoint (and optional field) the provider
    can use: what `pyelog selftest` may print, and what the C code sees."""
    feats: dict[str, bool] = {}
    for (cat, name), (needed, optional) in _TRACEPOINTS.items():
        fields = tracepoint_fields(cat, name)
        have = fields is not None and all(f in fields for f in needed)
        feats[f"TCP_HAVE_{name.upper()}"] = have
        for f, macro in optional.items():
            feats[macro] = bool(have and f in fields)
        if name == "tcp_send_reset":
            feats["TCP_TP_SEND_RESET_REASON"] = bool(
                have and "enum sk_rst_reason" in fields.get("reason", ""))
    return feats


# Kernel struct members the C code reads (TCP_BTF_<name>): paths from struct
# tcp_sock, whose first members nest inet_connection_sock, inet_sock, sock and
# sock_common, so each offset is from the socket's address; and a packet's
# control block (sk_buff.cb, holding struct tcp_skb_cb).
_SK = "inet_conn.icsk_inet.sk"
_BTF_MEMBERS: dict[str, tuple[str, str]] = {
    "SKC_STATE": ("tcp_sock", f"{_SK}.__sk_common.skc_state"),
    "SKC_NULLS_PPREV": ("tcp_sock", f"{_SK}.__sk_common.skc_nulls_node.pprev"),
    "SKC_COOKIE": ("tcp_sock", f"{_SK}.__sk_common.skc_cookie"),
    "SK_SHUTDOWN": ("tcp_sock", f"{_SK}.sk_shutdown"),
    "ICSK_RTO": ("tcp_sock", "inet_conn.icsk_rto"),
    "MDEV_US": ("tcp_sock", "mdev_us"),
    "RX_TSTAMP_OK": ("tcp_sock", "rx_opt.tstamp_ok"),
    "RX_WSCALE_OK": ("tcp_sock", "rx_opt.wscale_ok"),
    "RX_SACK_OK": ("tcp_sock", "rx_opt.sack_ok"),
    "RX_SND_WSCALE": ("tcp_sock", "rx_opt.snd_wscale"),
    "RX_RCV_WSCALE": ("tcp_sock", "rx_opt.rcv_wscale"),
    "ICSK_CA_STATE": ("tcp_sock", "inet_conn.icsk_ca_state"),
    "SOCK_OPS_CB_FLAGS": ("tcp_sock", "bpf_sock_ops_cb_flags"),
    "SKB_CB": ("sk_buff", "cb"),
    # A connection request's listener: the socket of the kernel's sock_ops
    # context (a request socket, which skops->sk hides) and its listener.
    "SOCK_OPS_SK": ("bpf_sock_ops_kern", "sk"),
    "RSK_LISTENER": ("request_sock", "__req_common.skc_listener"),
    "TCB_SEQ": ("tcp_skb_cb", "seq"),
    "TCB_GSO_SEGS": ("tcp_skb_cb", "tcp_gso_segs"),
}
# Read whole, with these sizes (the C reads 4 or 8 bytes).
_BTF_SIZES = {"SKC_NULLS_PPREV": 8, "SKC_COOKIE": 8, "SOCK_OPS_SK": 8, "RSK_LISTENER": 8, "ICSK_RTO": 4, "MDEV_US": 4, "TCB_SEQ": 4, "TCB_GSO_SEGS": 2}
# Read as bits of one byte (TCP_KREAD_BITS): a byte or a bitfield within one.
_BTF_BITS = ("SKC_STATE", "SK_SHUTDOWN", "RX_TSTAMP_OK", "RX_WSCALE_OK", "RX_SACK_OK",
             "RX_SND_WSCALE", "RX_RCV_WSCALE", "ICSK_CA_STATE", "SOCK_OPS_CB_FLAGS")
# What the SYNs negotiated (rx_opt's bitfields, a 16-bit word in every
# kernel): read as one 4-byte word from the first (TCP_BTF_RX_BASE).
_BTF_RX = ("RX_TSTAMP_OK", "RX_WSCALE_OK", "RX_SACK_OK", "RX_SND_WSCALE", "RX_RCV_WSCALE")


def btf_defines(btf: Btf | None = None) -> str:
    """``#define TCP_BTF_*`` for the running kernel (EventlogError without BTF)."""
    try:
        btf = btf or Btf.load()
        out = []
        offset = {}
        for name, (struct_name, path) in _BTF_MEMBERS.items():
            m = btf.member(struct_name, path)
            offset[name] = m.offset
            out.append(f"#define TCP_BTF_{name} {m.offset}")
            if name in _BTF_BITS:
                bits = m.bit_size or 8 * m.size
                if m.bit_offset + bits > 8:
                    raise BtfError(f"{struct_name}.{path} does not fit in one byte")
                out += [f"#define TCP_BTF_{name}_SHIFT {m.bit_offset}",
                        f"#define TCP_BTF_{name}_BITS {bits}"]
            elif name in _BTF_SIZES and (m.bit_size or m.size != _BTF_SIZES[name]):
                raise BtfError(f"{struct_name}.{path} is {m.size} bytes"
                               f"{' (a bitfield)' if m.bit_size else ''}, expected {_BTF_SIZES[name]}")
        # tcp_negotiated() reads rx_opt's bits at once: 4 bytes from the first.
        rx = [offset[n] for n in _BTF_RX]
        if max(rx) - min(rx) > 3:
            raise BtfError(f"tcp_sock.rx_opt's flags span {max(rx) - min(rx) + 1} bytes, expected at most 4")
        out.append(f"#define TCP_BTF_RX_BASE {min(rx)}")
    except BtfError as e:
        raise EventlogError(f"the TCP provider needs the kernel's BTF: {e}") from None
    return "\n".join(out)


def kernel_hz() -> int | None:
    """The running kernel's CONFIG_HZ from its config file, or None if not found."""
    for path in ("/proc/config.gz", f"/boot/config-{os.uname().release}"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                m = re.search(r"^CONFIG_HZ=(\d+)$", f.read(), re.M)
        except OSError:
            continue
        if m:
            return int(m.group(1))
    return None


def _defines() -> str:
    flags = "\n".join(f"#define {m} 1" for m, on in kernel_features().items() if on)
    return flags + "\n" + btf_defines()


def producer_header() -> str:
    """What the loader pastes before the provider's C: the outbox
    (bpf/eventlog_outbox.h), which the generated _LOG macros write to
    (TCP_EVENTLOG_WRITE), then the producer header generated from the TCP
    schema."""
    from pyelog.schema.codegen import generate_producer
    return "\n".join([bpf_source("eventlog_outbox.h"),
                      "/* Every TCP _LOG queues its event in the outbox: fixed payloads",
                      " * filled in place, others copied. */",
                      "#define TCP_EVENTLOG_RESERVE eventlog_outbox_reserve",
                      "#define TCP_EVENTLOG_WRITE eventlog_outbox_add",
                      generate_producer(schema())])


# -- attach ----------------------------------------------------------------------

class _Config:
    """What provider() was asked for, and what attach set up; read by
    attach, filter changes, housekeeping and dump_state."""

    def __init__(self, default_enabled: bool, filters: TcpFilter) -> None:
        self.default_enabled = default_enabled
        self.filters = filters
        self.netns_cookies: list[int] = []
        self.cgroups: list[str] = []
        self.skb_progs: dict[int, int] = {}            # attach type -> prog fd
        self.skb_links: dict[int, list[int]] = {}      # attach type -> link fds
        self.hz = 0
        self.last_housekeeping = 0
        self.state_tracepoint = False                  # inet_sock_set_state attached


def _attach_state_tracepoint(loader: Loader, inst: ProviderInstance, cfg: _Config) -> None:
    """inet_sock_set_state, for the state changes of sessions sock_ops does
    not report (a dump-state replay's) and, where sock_ops may not ask for
    the current task (6.1), for a new socket's owner: every short
    connection passes it ten times, so it is attached only for those."""
    if cfg.state_tracepoint or not kernel_features()["TCP_HAVE_INET_SOCK_SET_STATE"]:
        return
    loader.bpf.attach_raw_tracepoint(tp="inet_sock_set_state",
                                     fn_name=inst.fn("tcp_inet_sock_set_state"))
    cfg.state_tracepoint = True


def _write_maps(loader: Loader, cfg: _Config) -> None:
    b = loader.bpf
    f = cfg.filters
    active = 0
    for port, bits in f.port_bits().items():
        b["tcp_f_port"][ctypes.c_uint16(port)] = ctypes.c_uint8(bits)
        active |= _F_PORT
    for c in f.cidrs:
        net = ipaddress.ip_network(c, strict=False)
        t = b["tcp_f_cidr4" if net.version == 4 else "tcp_f_cidr6"]
        k = t.Key()
        k.prefixlen = net.prefixlen
        for i, byte in enumerate(net.network_address.packed):
            k.addr[i] = byte
        t[k] = ctypes.c_uint8(1)
        active |= _F_CIDR
    cfg.netns_cookies = tcp_diag_netns_cookies(f.netns)
    for ck in cfg.netns_cookies:
        b["tcp_f_netns"][ctypes.c_uint64(ck)] = ctypes.c_uint8(1)
        active |= _F_NETNS
    for pid in f.pids:
        b["tcp_f_pid"][ctypes.c_uint32(int(pid))] = ctypes.c_uint8(1)
        active |= _F_PID
    for comm in f.comms:
        t = b["tcp_f_comm"]
        k = t.Key()
        k.c = comm.encode()
        t[k] = ctypes.c_uint8(1)
        active |= _F_COMM
    t = b["tcp_cfg_map"]
    leaf = t.Leaf()
    leaf.default_enabled = 1 if cfg.default_enabled else 0
    leaf.active = active
    leaf.hz = cfg.hz
    t[t.Key(0)] = leaf


def tcp_diag_netns_cookies(inodes: list[int]) -> list[int]:
    from pyelog.providers.tcp_diag import netns_cookies
    return netns_cookies([int(i) for i in inodes])


def _measure_hz(loader: Loader, inst: ProviderInstance) -> int:
    """HZ from the kernel's own clocks, when no config file says it:
    jiffies counted over 200 ms (tcp_jiffies, run with BPF_PROG_TEST_RUN),
    rounded to the nearest value Linux allows."""
    fd = inst.progs["tcp_jiffies"]
    t0, j0 = time.monotonic(), prog_test_run(fd, []) & 0xFFFFFFFF
    time.sleep(0.2)
    t1, j1 = time.monotonic(), prog_test_run(fd, []) & 0xFFFFFFFF
    rate = ((j1 - j0) & 0xFFFFFFFF) / (t1 - t0)
    return min((100, 250, 300, 1000), key=lambda hz: abs(hz - rate))


def _skb_wanted(loader: Loader, inst: ProviderInstance) -> dict[int, bool]:
    """Which skb hooks some subscription needs now (the provider's
    aggregate filter): ingress for IN or OUT, egress for OUT."""
    level, kw = loader.provider_filter(inst)

    def wants(*names: str) -> bool:
        return any(level >= e.level and kw & e.mask for e in map(schema().event, names))
    # Ingress for OUT too: it keeps a connection request's segments, and
    # so notices SYN-ACKs that the egress hook of older kernels skips.
    return {BPF_CGROUP_INET_INGRESS: wants("IN", "OUT"), BPF_CGROUP_INET_EGRESS: wants("OUT")}


def _filter_changed(loader: Loader, inst: ProviderInstance) -> None:
    """Link or unlink the skb hooks so that they run only while wanted."""
    cfg: _Config = inst.spec._tcp_config  # type: ignore[attr-defined]
    for attach_type, want in _skb_wanted(loader, inst).items():
        links = cfg.skb_links.setdefault(attach_type, [])
        if want and not links:
            for d in cfg.cgroups:
                fd = attach_cgroup_link(cfg.skb_progs[attach_type], d, attach_type)
                loader.add_link(fd)
                links.append(fd)
        elif not want and links:
            for fd in links:
                loader.drop_link(fd)
            links.clear()


def load_outbox_drains(loader: Loader) -> None:
    """Load the outbox's drain programs (bpf/eventlog_outbox.h), one per
    program type, into slot 0 of their jump tables: what a provider whose
    source pastes the outbox does before any of its programs queue events."""
    from bcc import BPF
    drains = [("eventlog_outbox_tp_jt", loader.bpf.load_func("eventlog_outbox_drain_tp",
                                                             BPF.TRACEPOINT)),
              ("eventlog_outbox_raw_tp_jt", loader.bpf.load_func("eventlog_outbox_drain_raw_tp",
                                                                 BPF.RAW_TRACEPOINT)),
              ("eventlog_outbox_sockops_jt", loader.bpf.load_func("eventlog_outbox_drain_sockops",
                                                                  BPF.SOCK_OPS)),
              ("eventlog_outbox_sockopt_jt", loader.bpf.load_func(
                  "eventlog_outbox_drain_sockopt", BPF_PROG_TYPE_CGROUP_SOCKOPT,
                  attach_type=BPF_CGROUP_SETSOCKOPT))]
    for table, fn in drains:
        loader.bpf.get_table(table)[0] = fn.fd


def _attach(loader: Loader, inst: ProviderInstance) -> None:
    from bcc import BPF
    cfg: _Config = inst.spec._tcp_config  # type: ignore[attr-defined]
    cfg.hz = kernel_hz() or _measure_hz(loader, inst)
    _write_maps(loader, cfg)
    # Before anything that queues events runs (the tracepoints already do,
    # but no session exists yet).
    load_outbox_drains(loader)
    sockops = loader.bpf.load_func(inst.fn("tcp_sockops"), BPF.SOCK_OPS)
    setsockopt = loader.bpf.load_func(inst.fn("tcp_setsockopt"), BPF_PROG_TYPE_CGROUP_SOCKOPT,
                                      attach_type=BPF_CGROUP_SETSOCKOPT)
    for attach_type, name in ((BPF_CGROUP_INET_INGRESS, "tcp_skb_ingress"),
                              (BPF_CGROUP_INET_EGRESS, "tcp_skb_egress")):
        cfg.skb_progs[attach_type] = loader.bpf.load_func(
            inst.fn(name), BPF_PROG_TYPE_CGROUP_SKB, attach_type=attach_type).fd
    cfg.cgroups = cgroup_dirs(cfg.filters.cgroups) if cfg.filters.cgroups else [cgroup2_root()]
    cfg.state_tracepoint = False        # this loader's programs: none attached yet
    if not task_helpers()["EVENTLOG_TASK_SOCK_OPS"]:
        # Before sock_ops: it notes the owner each LISTEN/CONNECT callback takes.
        _attach_state_tracepoint(loader, inst, cfg)
    # Segment hooks before sock_ops: a connection request that starts now
    # finds its SYN kept already when its accepted socket appears.
    _filter_changed(loader, inst)
    for d in cfg.cgroups:
        loader.add_link(attach_cgroup_link(sockops.fd, d, BPF_CGROUP_SOCK_OPS))
        loader.add_link(attach_cgroup_link(setsockopt.fd, d, BPF_CGROUP_SETSOCKOPT))
    # After sock_ops: a listener that appears meanwhile takes its LISTEN
    # callback, so every listener has its owner noted one way or the other.
    _note_older_listeners(loader)


def _note_older_listeners(loader: Loader) -> None:
    """The owners (pid, comm) of listeners older than the capture, for their
    accepted sockets' sessions (tcp_old_listeners in the BPF source)."""
    from pyelog.providers.tcp_diag import existing_sockets
    table = loader.bpf["tcp_old_listeners"]
    for s in existing_sockets(listeners_only=True):
        if not s.pid:
            continue                  # held by no process (being closed)
        v = table.Leaf()
        v.tgid = s.pid
        v.comm = s.comm.encode()[:15]
        try:
            table[table.Key(s.cookie)] = v
        except Exception:             # the table is full (README: TCP_OLD_LISTENERS)
            break


# -- dump state --------------------------------------------------------------------

def lost(loader: Loader) -> int:
    """Events the TCP provider queued and a failed drain tail call left
    undelivered, summed over CPUs (charged to every subscriber). Events it
    could not queue or log (a full outbox, unreadable or session-less
    segments) are counted by event id in the core's eventlog_lost_events and
    charged to the subscribers they were for (Loader.provider_lost).
    0 when the provider is not loaded."""
    if loader.bpf is None:
        return 0
    try:
        t = loader.bpf.get_table("eventlog_outbox_map")
    except KeyError:
        return 0
    return sum(v.lost for k in range(len(t)) for v in t.getvalue(t.Key(k)))


def housekeeping(loader: Loader, inst: ProviderInstance, final: bool = False) -> None:
    """Log the handshake segments of connection requests that never became
    accepted sockets on their listener's session, and free their entries
    (at most once a second; ``final``: every request still waiting, before
    the capture's last drain)."""
    cfg: _Config = inst.spec._tcp_config  # type: ignore[attr-defined]
    now = _boot_us()
    if not final and now - cfg.last_housekeeping < _HOUSEKEEPING_US:
        return
    cfg.last_housekeeping = now
    table = loader.bpf["tcp_embryo"]
    sessions = loader.bpf["eventlog_sessions"]
    events = {e.id: e for e in map(schema().event, ("IN", "OUT"))}
    for key, emb in list(table.items()):
        if not final and now - emb.created < EMBRYO_MAX_AGE_US:
            continue
        skey = sessions.Key()
        skey.session_id = key.listener
        skey.provider_id = inst.id
        try:
            enabled = bool(sessions[skey].enabled)
        except KeyError:
            enabled = False          # a listener nobody records
        for seg in list(emb.seg)[:min(emb.n, len(emb.seg))]:
            e = events.get(seg.id)
            if enabled and e is not None:
                loader.inject(inst, key.listener, e.id, e.level, e.mask,
                              bytes(seg.payload)[:e.struct.size], timestamp=seg.ts)
        try:
            del table[key]
        except KeyError:
            pass


def _cgroup_ids(dirs: list[str]) -> set[int]:
    ids = set()
    for d in dirs:
        for path, _subdirs, _files in os.walk(d):
            try:
                ids.add(os.stat(path).st_ino)
            except OSError:
                pass
    return ids


def _boot_us() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1000


def _ip_payload(s) -> tuple[str, bytes]:
    """CONN_SET_IP_V4/V6 of a socket sock_diag listed (ports in network order)."""
    fam = socket.AF_INET if s.family == socket.AF_INET else socket.AF_INET6
    name = "CONN_SET_IP_V4" if fam == socket.AF_INET else "CONN_SET_IP_V6"
    return name, schema().payload(name, socket.inet_pton(fam, s.laddr), socket.htons(s.lport),
                                  socket.inet_pton(fam, s.raddr), socket.htons(s.rport))


def _params_payload(s) -> bytes:
    """CONN_PARAMS_REPLAY from tcp_info (no ISS/IRS: tcp_info has none)."""
    i = s.info
    opts = i.get("tcpi_options", 0)
    flags = ((0x02 if opts & 1 else 0) | (0x01 if opts & 2 else 0) | (0x40 if opts & 4 else 0)
             | (0x04 if opts & 8 else 0) | (0x10 if opts & 32 else 0))
    return schema().payload("CONN_PARAMS_REPLAY", i.get("tcpi_snd_mss", 0),
                            i.get("tcpi_snd_wscale", 0), i.get("tcpi_rcv_wscale", 0), flags,
                            s.cc.encode()[:15])


def session_create_payload(netns_cookie: int, pid: int, family: int, comm: str) -> bytes:
    """SESSION_CREATE's payload (netns cookie, pid, family, comm)."""
    return schema().payload("SESSION_CREATE", netns_cookie, pid, family, comm.encode()[:15])


def _dump_state(loader: Loader, inst: ProviderInstance, sub_index: int) -> None:
    from pyelog.providers.tcp_diag import existing_cookies, existing_sockets
    cfg: _Config = inst.spec._tcp_config  # type: ignore[attr-defined]
    # Before the listing: a replayed session's state changes come from it.
    _attach_state_tracepoint(loader, inst, cfg)
    table = loader.bpf["eventlog_sessions"]
    cg_ids = _cgroup_ids(cgroup_dirs(cfg.filters.cgroups)) if cfg.filters.cgroups else None
    ns_cookies = set(cfg.netns_cookies)
    created: list = []
    for s in existing_sockets():
        if cg_ids is not None and s.cgroup_id not in cg_ids:
            continue                  # not under a filtered cgroup: not seen at all
        key = table.Key()
        key.session_id = s.cookie
        key.provider_id = inst.id
        try:
            enabled = bool(table[key].enabled)   # sock_ops got there first
        except KeyError:
            enabled = cfg.default_enabled and cfg.filters.matches(
                s.lport, s.rport, s.laddr, s.raddr, s.netns_cookie, s.pid, s.comm, ns_cookies)
            leaf = table.Leaf()
            leaf.session_id = s.cookie
            leaf.provider_id = inst.id
            leaf.enabled = 1 if enabled else 0
            leaf.generation = 0           # != the provider's: refreshed on first lookup
            leaf.created_at = _boot_us()
            try:
                table[key] = leaf
            except Exception:               # session map full
                loader.session_refused(enabled)
                continue
            created.append(key)
        if not enabled:
            continue
        fam = 2 if s.family == socket.AF_INET else 10

        def emit(name: str, payload: bytes) -> None:
            e = schema().event(name)
            loader.inject(inst, s.cookie, e.id, e.level, e.mask, payload, target=sub_index)

        loader.inject(inst, s.cookie, SESSION_CREATE_ID, LEVEL_INFO, KEYWORD_SESSION,
                      session_create_payload(s.netns_cookie, s.pid, fam, s.comm), target=sub_index)
        emit(*_ip_payload(s))
        if s.state != 10:             # LISTEN: nothing negotiated
            emit("CONN_PARAMS_REPLAY", _params_payload(s))
            i = s.info
            emit("RTT", schema().payload(
                "RTT", i.get("tcpi_rtt", 0), i.get("tcpi_rtt", 0), i.get("tcpi_rttvar", 0),
                i.get("tcpi_rto", 0), min(i.get("tcpi_min_rtt", 0), 0xFFFFFFFF), 0))
        if s.pid:
            emit("CONN_OWNER", schema().payload("CONN_OWNER", s.pid, s.comm.encode()[:15]))
    if created:
        # A socket destroyed between the listing and the map update would
        # leave its session behind (its destroy tracepoint ran before the
        # entry existed): drop the sessions whose socket is gone now.
        alive = existing_cookies()
        for key in created:
            if key.session_id not in alive:
                try:
                    del table[key]
                except KeyError:
                    pass
        loader.sessions_changed(inst)     # entries written over or removed


def provider(default_enabled: bool = True, filters: TcpFilter | None = None) -> ProviderSpec:
    """The TCP provider spec (one instance per loader: its maps are not per-instance).

    default_enabled: new sessions start enabled ("all") or not ("none");
    filters: with the default on, which connections it enables (TcpFilter).
    The core's own default (ProviderSpec.default_enabled) is always off:
    the provider enables sessions itself, after its filters and TCP_EVENTLOG.
    """
    filters = filters or TcpFilter()
    spec = ProviderSpec(name="tcp", source=_defines() + "\n" + bpf_source(SOURCE),
                        header=producer_header(), attach=_attach, dump_state=_dump_state,
                        default_enabled=False, lost=lost, test_run=["tcp_jiffies"],
                        events=schema().event_filters(),
                        filter_changed=_filter_changed, housekeeping=housekeeping,
                        session_data=SESSION_DATA)
    spec._tcp_config = _Config(default_enabled, filters)  # type: ignore[attr-defined]
    return spec


__all__ = ["TcpFilter", "provider", "kernel_features", "cgroup2_root", "cgroup_dirs",
           "session_create_payload", "schema", "btf_defines", "kernel_hz", "housekeeping",
           "lost", "TCP_EVENTLOG"]
