# SPDX-License-Identifier: BSD-2-Clause
"""The wire, seen independently of pyelog: packet capture and a lossy path.

The truth for differential tests of the TCP provider: what each endpoint's
TCP really sent and received, captured by the test itself on the endpoint's
own interface, across a router that drops data segments at random.

* :func:`parse_packet` turns one captured frame into a :class:`Segment`
  (pure, no sockets);
* :class:`WireCapture` captures every TCP frame of one interface in one
  namespace (AF_PACKET, both directions) in a background thread;
* :class:`LossyPath` builds client -- router -- server, three namespaces
  joined by two veth pairs, IPv4 and IPv6, with a tc classifier in the
  router that drops data segments with a given probability.

Everything stays inside namespaces the test creates (tests/helpers/netns.py):
nothing is sent to an address outside this machine.

Frames and lengths: veth does TSO/GSO, so one captured frame can be a
super-packet of up to 64 KB (more with BIG TCP) that TCP sent as one skb,
the unit the socket itself sees. The capture keeps only the first
``SNAPLEN`` bytes of each frame (the socket filter truncates), so a
segment's payload length comes from the original frame length the kernel
reports (``tpacket_auxdata.tp_len``), never from the bytes captured.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import threading
import time
import uuid
from typing import NamedTuple

# -- constants -------------------------------------------------------------------

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, AE = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100

ETH_P_ALL, ETH_P_IP, ETH_P_IPV6 = 0x0003, 0x0800, 0x86DD
SOL_PACKET, PACKET_AUXDATA, PACKET_STATISTICS = 263, 8, 6
PACKET_HOST, PACKET_OUTGOING = 0, 4
SO_ATTACH_FILTER, SO_RCVBUFFORCE, SO_TIMESTAMPNS = 26, 33, 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
MSG_WAITFORONE = 0x10000

SNAPLEN = 160                # Ethernet 14 + IPv6 40 + TCP 60 = 114: every header fits
RCVBUF = 64 << 20

_OPT_MSS, _OPT_WS, _OPT_SACK_PERM, _OPT_SACK, _OPT_TS = 2, 3, 4, 5, 8
_IPV6_EXT = frozenset((0, 43, 60))      # hop-by-hop, routing, destination options: skipped

_u16 = struct.Struct("!H").unpack_from
_u32 = struct.Struct("!I").unpack_from
_tcp_hdr = struct.Struct("!HHIIBBH").unpack_from       # ports, seq, ack, doff byte, flags, window
_tcp_ts = struct.Struct("!II").unpack_from


class Segment(NamedTuple):
    """One TCP frame as captured (a super-packet counts as one)."""
    ts_ns: int              # kernel receive timestamp (CLOCK_REALTIME, SO_TIMESTAMPNS), ns
    outgoing: bool          # sent by this host (sockaddr_ll pkttype == PACKET_OUTGOING)
    family: int             # 4 or 6
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int              # 9 bits: FIN SYN RST PSH ACK URG ECE CWR AE
    win: int                # raw 16-bit window field (not scaled)
    length: int             # TCP payload bytes (of the whole frame, not the captured part)
    mss: int | None
    wscale: int | None
    sack_perm: bool
    ts_val: int | None
    ts_ecr: int | None
    sack: list              # [(start, end), ...]
    other_opts: list        # option kinds other than the above (NOP/EOL excluded)
    frame_len: int = 0      # the frame's real length on the wire (L2 included)

    @property
    def end_seq(self) -> int:
        """The sequence number after this segment (SYN and FIN count one), mod 2**32."""
        return (self.seq + self.length + (self.flags & SYN) // SYN + (self.flags & FIN)) & 0xFFFFFFFF

    def tcp_key(self) -> tuple:
        """Every TCP header field (the TCP header does not change across a router)."""
        return (self.sport, self.dport, self.seq, self.ack, self.flags, self.win, self.length,
                self.mss, self.wscale, self.sack_perm, self.ts_val, self.ts_ecr,
                tuple(self.sack), tuple(self.other_opts))


def parse_options(opts: bytes | memoryview) -> tuple:
    """TCP options -> (mss, wscale, sack_perm, ts_val, ts_ecr, sack, other_opts).

    Never raises: an option whose length byte is missing, < 2 or runs past
    the end stops parsing (of a cut SACK option the complete blocks count);
    a known kind with the wrong length goes to ``other_opts``.
    """
    mss = wscale = ts_val = ts_ecr = None
    sack_perm = False
    sack: list = []
    other: list = []
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == 0:                      # EOL
            break
        if kind == 1:                      # NOP
            i += 1
            continue
        if i + 1 >= n:
            other.append(kind)
            break
        olen = opts[i + 1]
        if olen < 2:
            other.append(kind)
            break
        if i + olen > n:                   # truncated: keep whatever is complete
            if kind == _OPT_SACK:
                have = (n - i - 2) // 8
                for k in range(have):
                    sack.append(_tcp_ts(opts, i + 2 + 8 * k))
            else:
                other.append(kind)
            break
        if kind == _OPT_MSS and olen == 4:
            mss = _u16(opts, i + 2)[0]
        elif kind == _OPT_WS and olen == 3:
            wscale = opts[i + 2]
        elif kind == _OPT_SACK_PERM and olen == 2:
            sack_perm = True
        elif kind == _OPT_TS and olen == 10:
            ts_val, ts_ecr = _tcp_ts(opts, i + 2)
        elif kind == _OPT_SACK and olen >= 10 and (olen - 2) % 8 == 0:
            for k in range((olen - 2) // 8):
                sack.append(_tcp_ts(opts, i + 2 + 8 * k))
        else:
            other.append(kind)
        i += olen
    return mss, wscale, sack_perm, ts_val, ts_ecr, sack, other


def parse_packet(data: bytes | memoryview, l2: str = "eth", *, wire_len: int | None = None,
                 ts_ns: int = 0, outgoing: bool = False) -> Segment | None:
    """One captured frame -> a :class:`Segment`, or None when it is not IPv4/IPv6 TCP.

    ``l2``: "eth" (an Ethernet header first, as from an AF_PACKET SOCK_RAW
    socket on a veth) or "ip" (the frame starts with the IP header).
    ``wire_len``: the frame's real length (L2 included) when ``data`` is
    only its first bytes; None means ``data`` is the whole frame. The
    payload length is ``wire_len`` minus the L2, IP and TCP header lengths:
    not the IPv4 total length or the IPv6 payload length, which are 0 for a
    BIG TCP super-packet. They only cut it shorter (Ethernet padding).
    IPv4 fragments other than the first, IPv6 with a next header other than
    TCP (hop-by-hop, routing and destination options are skipped), a
    frame too short for the TCP fixed header, or a data offset < 5: None.
    """
    n = len(data)
    if wire_len is None:
        wire_len = n
    if l2 == "eth":
        if n < 14:
            return None
        etype = _u16(data, 12)[0]
        off = 14
        if etype == ETH_P_IP:
            family = 4
        elif etype == ETH_P_IPV6:
            family = 6
        else:
            return None
    elif l2 in ("ip", "none", "raw"):
        if n < 1:
            return None
        off = 0
        family = data[0] >> 4
        if family not in (4, 6):
            return None
    else:
        raise ValueError(f"unknown link layer {l2!r} (eth or ip)")
    ip_room = wire_len - off                    # bytes from the IP header to the frame's end
    if family == 4:
        if n < off + 20 or data[off] >> 4 != 4:
            return None
        ihl = (data[off] & 0x0F) * 4
        if ihl < 20 or data[off + 9] != 6 or _u16(data, off + 6)[0] & 0x1FFF:
            return None
        tot = _u16(data, off + 2)[0]
        if tot and tot < ip_room:
            ip_room = tot                        # trailing padding is not payload
        src = socket.inet_ntop(socket.AF_INET, bytes(data[off + 12:off + 16]))
        dst = socket.inet_ntop(socket.AF_INET, bytes(data[off + 16:off + 20]))
        th = off + ihl
    else:
        if n < off + 40 or data[off] >> 4 != 6:
            return None
        plen = _u16(data, off + 4)[0]
        if plen and 40 + plen < ip_room:
            ip_room = 40 + plen
        nh = data[off + 6]
        src = socket.inet_ntop(socket.AF_INET6, bytes(data[off + 8:off + 24]))
        dst = socket.inet_ntop(socket.AF_INET6, bytes(data[off + 24:off + 40]))
        th = off + 40
        while nh in _IPV6_EXT:
            if n < th + 2:
                return None
            nh, th = data[th], th + (data[th + 1] + 1) * 8
        if nh != 6:
            return None
    if n < th + 20:
        return None
    sport, dport, seq, ack, doff, fl, win = _tcp_hdr(data, th)
    hl = (doff >> 4) * 4
    if hl < 20:
        return None
    flags = ((doff & 1) << 8) | fl
    opts = data[th + 20:min(th + hl, n)]
    if len(opts):
        mss, wscale, sack_perm, ts_val, ts_ecr, sack, other = parse_options(opts)
    else:
        mss = wscale = ts_val = ts_ecr = None
        sack_perm, sack, other = False, [], []
    length = ip_room - (th - off) - hl
    return Segment(ts_ns, outgoing, family, src, dst, sport, dport, seq, ack, flags, win,
                   length if length > 0 else 0, mss, wscale, sack_perm, ts_val, ts_ecr, sack,
                   other, wire_len)


# -- capture ------------------------------------------------------------------------

def _tcp_filter(snaplen: int = SNAPLEN) -> bytes:
    """Classic BPF: IPv4 TCP (first fragments and whole datagrams) and IPv6 TCP
    (next header TCP) frames, cut to ``snaplen`` bytes; anything else dropped."""
    ins = [
        (0x28, 0, 0, 12),           # 0 ldh [12]           ethertype
        (0x15, 0, 4, ETH_P_IP),     # 1 jeq #IPv4          else 6
        (0x30, 0, 0, 23),           # 2 ldb [23]           protocol
        (0x15, 0, 6, 6),            # 3 jeq #TCP           else drop
        (0x28, 0, 0, 20),           # 4 ldh [20]           flags + fragment offset
        (0x45, 4, 3, 0x1FFF),       # 5 jset #0x1fff       drop, else accept
        (0x15, 0, 3, ETH_P_IPV6),   # 6 jeq #IPv6          else drop
        (0x30, 0, 0, 20),           # 7 ldb [20]           next header
        (0x15, 0, 1, 6),            # 8 jeq #TCP           else drop
        (0x06, 0, 0, snaplen),      # 9 ret #snaplen
        (0x06, 0, 0, 0),            # 10 ret #0
    ]
    return b"".join(struct.pack("HBBI", *i) for i in ins)


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.c_void_p), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _Timeval(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("usec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
_libc.recvmmsg.restype = ctypes.c_int


class BootClock:
    """Puts wall-clock (CLOCK_REALTIME) times on the boot clock, as they were while it ran.

    Packet timestamps are wall clock; events are stamped with the boot
    clock. The wall clock may be stepped or slewed meanwhile (one machine
    here gained 5 ms per second on the boot clock for a while), so one
    offset taken at the start is not enough: a thread samples the pair
    every ``period`` seconds, and :meth:`boot_ns` uses the sample nearest
    the time it converts.
    """

    def __init__(self, period: float = 0.002) -> None:
        self.period = period
        self.samples: list[tuple[int, int]] = []     # (realtime ns, realtime - boottime ns)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        b0 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        r = time.clock_gettime_ns(time.CLOCK_REALTIME)
        b1 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        self.samples.append((r, r - (b0 + b1) // 2))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def __enter__(self) -> "BootClock":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def boot_ns(self, realtime_ns: int) -> int:
        """``realtime_ns`` on the boot clock (the offset of the nearest sample)."""
        import bisect
        i = bisect.bisect_left(self.samples, (realtime_ns,))
        near = [self.samples[j] for j in (i - 1, i) if 0 <= j < len(self.samples)]
        rt, off = min(near, key=lambda s: abs(s[0] - realtime_ns))
        return realtime_ns - off

    def drift_ppm(self) -> float:
        """How fast the wall clock ran against the boot clock while sampled (ppm)."""
        (r0, o0), (r1, o1) = self.samples[0], self.samples[-1]
        return (o1 - o0) / max(1, (r1 - o1) - (r0 - o0)) * 1e6


class WireCapture:
    """Every TCP frame on one interface of one namespace, both directions.

    An AF_PACKET socket made inside the namespace, bound to the interface,
    with a socket filter (TCP only, ``SNAPLEN`` bytes kept), a 64 MiB
    receive buffer, kernel timestamps (SO_TIMESTAMPNS) and PACKET_AUXDATA
    (the frame's real length). A thread drains it with recvmmsg() in
    batches and keeps the raw frames; :attr:`segments` parses them.
    :attr:`drops` is the kernel's count of frames the socket lost
    (PACKET_STATISTICS): a test must see 0 to trust the capture.
    """

    BATCH = 128
    _CTRL = 128                 # room for the timestamp and auxdata cmsgs

    def __init__(self, ns, ifname: str, *, quiet: float = 0.3, snaplen: int = SNAPLEN):
        self.ns, self.ifname, self.quiet, self.snaplen = ns, ifname, quiet, snaplen
        self.frames: list[tuple[bytes, int, int, int]] = []   # (head, wire_len, ts_ns, pkttype)
        self.drops = 0
        self.kernel_packets = 0          # tp_packets: frames the filter passed, the dropped included
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._parsed: list[Segment] = []
        self._nparsed = 0
        self._last_rx = 0.0

    # socket -------------------------------------------------------------------
    def _open(self) -> socket.socket:
        with self.ns.enter():
            # protocol 0: the socket receives nothing before bind(), so no frame
            # of another interface or before the filter can slip in
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            prog = _tcp_filter(self.snaplen)
            buf = ctypes.create_string_buffer(prog, len(prog))
            fprog = _SockFprog(len(prog) // 8, ctypes.addressof(buf))
            s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            # recvmmsg() blocks at most this long, so the thread sees stop()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, bytes(_Timeval(0, 50_000)))
            s.bind((self.ifname, ETH_P_ALL))      # ifindex looked up in the socket's namespace
            s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)     # reset counters
        except BaseException:
            s.close()
            raise
        return s

    def start(self) -> "WireCapture":
        if self._thread:
            raise RuntimeError("capture already started")
        self._sock = self._open()
        self._last_rx = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"wire-{self.ifname}", daemon=True)
        self._thread.start()
        return self

    def _stats(self) -> None:
        packets, drops = struct.unpack("II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self.kernel_packets += packets
        self.drops += drops

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:         # reported by stop()
            self._error = e
        finally:
            with contextlib.suppress(Exception):
                self._stats()
            self._sock.close()

    def _loop(self) -> None:
        N, snap, ctl = self.BATCH, self.snaplen, self._CTRL
        data = ctypes.create_string_buffer(N * snap)
        names = ctypes.create_string_buffer(N * 24)
        control = ctypes.create_string_buffer(N * ctl)
        iovs = (_IOVec * N)()
        msgs = (_MMsgHdr * N)()
        for i in range(N):
            iovs[i].base = ctypes.addressof(data) + i * snap
            iovs[i].len = snap
            h = msgs[i].hdr
            h.name = ctypes.addressof(names) + i * 24
            h.namelen = 20
            h.iov = ctypes.addressof(iovs) + i * ctypes.sizeof(_IOVec)
            h.iovlen = 1
            h.control = ctypes.addressof(control) + i * ctl
            h.controllen = ctl
        pristine = bytes(msgs)              # namelen/controllen come back overwritten
        size = ctypes.sizeof(_MMsgHdr)
        o_clen = _MsgHdr.controllen.offset
        o_len = _MMsgHdr.len.offset
        mv_msgs, mv_data = memoryview(msgs).cast("B"), memoryview(data).cast("B")
        mv_names, mv_ctl = memoryview(names).cast("B"), memoryview(control).cast("B")
        unpack_q = struct.Struct("=Q").unpack_from
        cmsg_hdr = struct.Struct("=Qii").unpack_from
        timespec = struct.Struct("=qq").unpack_from
        aux = struct.Struct("=III").unpack_from
        fd = self._sock.fileno()
        frames = self.frames
        msgs_addr = ctypes.addressof(msgs)
        while True:
            ctypes.memmove(msgs_addr, pristine, len(pristine))
            got = _libc.recvmmsg(fd, msgs_addr, N, MSG_WAITFORONE, None)
            now = time.monotonic()
            if got < 0:
                err = ctypes.get_errno()
                if err in (11, 4):          # EAGAIN (timeout), EINTR
                    if self._stopping.is_set() and now - self._last_rx >= self.quiet:
                        return
                    continue
                raise OSError(err, os.strerror(err))
            self._last_rx = now
            for i in range(got):
                base = i * size
                copied = unpack_q(mv_msgs, base + o_len)[0] & 0xFFFFFFFF
                clen = unpack_q(mv_msgs, base + o_clen)[0]
                ts = 0
                wire = copied
                c, cend = i * ctl, i * ctl + min(clen, ctl)
                while c + 16 <= cend:
                    ln, level, typ = cmsg_hdr(mv_ctl, c)
                    if ln < 16:
                        break
                    if level == socket.SOL_SOCKET and typ == SCM_TIMESTAMPNS:
                        sec, nsec = timespec(mv_ctl, c + 16)
                        ts = sec * 1_000_000_000 + nsec
                    elif level == SOL_PACKET and typ == PACKET_AUXDATA:
                        wire = aux(mv_ctl, c + 16)[1]            # tp_len: before the filter cut it
                    c += (ln + 7) & ~7
                pkttype = mv_names[i * 24 + 10]                  # sockaddr_ll.sll_pkttype
                frames.append((bytes(mv_data[i * snap:i * snap + min(copied, snap)]), wire, ts, pkttype))

    def stop(self, timeout: float = 30.0) -> "WireCapture":
        """Wait until no frame came for ``quiet`` seconds (or ``timeout``), then close."""
        if self._thread is None:
            return self
        self._stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            # constant traffic: stop anyway (the thread ends at its next timeout)
            self.quiet = 0.0
            self._thread.join(5)
        if self._error is not None:
            raise RuntimeError(f"capture on {self.ifname} failed") from self._error
        return self

    @property
    def segments(self) -> list[Segment]:
        """Every captured frame parsed, in capture order."""
        frames = self.frames
        for i in range(self._nparsed, len(frames)):
            head, wire, ts, pkttype = frames[i]
            seg = parse_packet(head, "eth", wire_len=wire, ts_ns=ts, outgoing=pkttype == PACKET_OUTGOING)
            if seg is not None:
                self._parsed.append(seg)
        self._nparsed = len(frames)
        return self._parsed

    def __enter__(self) -> "WireCapture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- the lossy path -------------------------------------------------------------------

LOSSY = r"""
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/pkt_cls.h>

BPF_ARRAY(lossy_cfg, u32, 1);          /* drop probability, parts per million */
BPF_ARRAY(lossy_stats, u64, 5);        /* frames, TCP frames, TCP data frames, dropped, dropped bytes */

static __always_inline void bump(u32 k, u64 v)
{
	u64 *n = lossy_stats.lookup(&k);
	if (n)
		__sync_fetch_and_add(n, v);
}

int lossy(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	u32 l4;
	bump(0, 1);
	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl < 5
		    || (ip->frag_off & bpf_htons(0x1fff)))
			return TC_ACT_OK;
		l4 = sizeof(*eth) + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return TC_ACT_OK;
		l4 = sizeof(*eth) + sizeof(*ip6);
	} else {
		return TC_ACT_OK;
	}
	struct tcphdr *th = data + l4;
	if ((void *)(th + 1) > end)
		return TC_ACT_OK;
	bump(1, 1);
	/* skb->len, not the IP length fields: a GSO super-packet (BIG TCP: length 0) */
	s64 len = (s64)skb->len - l4 - th->doff * 4;
	if (len <= 0)
		return TC_ACT_OK;                    /* handshake, pure ACK, bare FIN/RST */
	bump(2, 1);
	u32 zero = 0;
	u32 *ppm = lossy_cfg.lookup(&zero);
	if (!ppm || bpf_get_prandom_u32() % 1000000 >= *ppm)
		return TC_ACT_OK;
	bump(3, 1);
	bump(4, len);
	return TC_ACT_SHOT;
}
"""


class LossyPath:
    """client -- router -- server: three namespaces, two veth pairs, v4 and v6.

    ============  =================  ==================
    link          client side        server side
    ============  =================  ==================
    client-router 10.232.1.2 / .1    fd00:232:1::2 / ::1
    router-server 10.232.2.1 / .2    fd00:232:2::1 / ::2
    ============  =================  ==================

    The endpoints route everything through the router, which forwards
    (IPv4 and IPv6). A tc classifier (clsact ingress, direct action) on both
    router interfaces drops TCP frames carrying payload with probability
    ``drop_permille``/1000 per frame (a GSO super-packet is one frame);
    handshake, pure ACKs, bare FINs and RSTs always pass. DAD is off, so
    addresses work at once. Capture on :attr:`client_if` in :attr:`client`
    and :attr:`server_if` in :attr:`server`: outside the lossy router, so
    each capture is exactly what that endpoint's TCP sent and received.

    ``gso_max_segs=1`` makes the endpoints send one MSS per frame (no
    super-packets); None leaves veth's TSO as it is.
    """

    CLIENT_V4, ROUTER_C_V4, ROUTER_S_V4, SERVER_V4 = "10.232.1.2", "10.232.1.1", "10.232.2.1", "10.232.2.2"
    CLIENT_V6, ROUTER_C_V6, ROUTER_S_V6, SERVER_V6 = ("fd00:232:1::2", "fd00:232:1::1",
                                                      "fd00:232:2::1", "fd00:232:2::2")

    def __init__(self, drop_permille: float = 30, *, gso_max_segs: int | None = None):
        from tests.helpers.netns import Namespace   # beside this module
        self._bpf = None
        self.client = self.router = self.server = None
        try:
            self.client = Namespace("lp-cli")
            self.router = Namespace("lp-rtr")
            self.server = Namespace("lp-srv")
            no_dad = {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}
            for ns in (self.client, self.server):
                ns.write_sysctls(no_dad)
            self.router.write_sysctls({**no_dad, "net.ipv4.ip_forward": "1",
                                       "net.ipv6.conf.all.forwarding": "1"})
            tag = uuid.uuid4().hex[:6]
            self.client_if, self.router_client_if = f"lpc{tag}", f"lprc{tag}"
            self.server_if, self.router_server_if = f"lps{tag}", f"lprs{tag}"
            # made inside the router with the peer inside the endpoint: no
            # interface ever appears in the host's namespace
            for rif, ns, eif in ((self.router_client_if, self.client, self.client_if),
                                 (self.router_server_if, self.server, self.server_if)):
                fd = os.open(f"/var/run/netns/{ns.name}", os.O_RDONLY)
                try:
                    with self.router.ipr() as ipr:
                        ipr.link("add", ifname=rif, kind="veth", peer={"ifname": eif, "net_ns_fd": fd})
                finally:
                    os.close(fd)
            self._address(self.client, self.client_if, self.CLIENT_V4, self.CLIENT_V6,
                          (self.ROUTER_C_V4, self.ROUTER_C_V6))
            self._address(self.server, self.server_if, self.SERVER_V4, self.SERVER_V6,
                          (self.ROUTER_S_V4, self.ROUTER_S_V6))
            self._address(self.router, self.router_client_if, self.ROUTER_C_V4, self.ROUTER_C_V6,
                          None)
            self._address(self.router, self.router_server_if, self.ROUTER_S_V4, self.ROUTER_S_V6,
                          None)
            with self.client.ipr() as ipr:
                link = ipr.get_links(ipr.link_lookup(ifname=self.client_if)[0])[0]
                self._default_gso_segs = link.get_attr("IFLA_GSO_MAX_SEGS") or 65535
            if gso_max_segs is not None:
                self.set_gso_max_segs(gso_max_segs)
            self._attach()
            self.drop_permille = drop_permille
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _address(ns, ifname, v4, v6, gateways) -> None:
        with ns.ipr() as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=idx, address=v4, prefixlen=24)
            ipr.addr("add", index=idx, address=v6, prefixlen=64, flags=0x02)   # IFA_F_NODAD
            ipr.link("set", index=idx, state="up")
            if gateways:
                ipr.route("add", dst="0.0.0.0/0", gateway=gateways[0])
                ipr.route("add", dst="::/0", gateway=gateways[1], family=socket.AF_INET6)

    def set_gso_max_segs(self, segs: int | None) -> None:
        """Limit the MSS-sized segments per frame on all four interfaces (1: no
        super-packets); None: back to the veth default. Connections made
        afterwards see it (a socket reads it from its route at connect())."""
        for ns, ifnames in ((self.client, (self.client_if,)), (self.server, (self.server_if,)),
                            (self.router, (self.router_client_if, self.router_server_if))):
            with ns.ipr() as ipr:
                for ifname in ifnames:
                    idx = ipr.link_lookup(ifname=ifname)[0]
                    ipr.link("set", index=idx, gso_max_segs=segs or self._default_gso_segs)

    def _attach(self) -> None:
        from bcc import BPF
        self._bpf = BPF(text=LOSSY)
        fn = self._bpf.load_func("lossy", BPF.SCHED_CLS)
        with self.router.ipr() as ipr:
            for ifname in (self.router_client_if, self.router_server_if):
                idx = ipr.link_lookup(ifname=ifname)[0]
                ipr.tc("add", "clsact", idx)
                ipr.tc("add-filter", "bpf", idx, ":1", fd=fn.fd, name="lossy",
                       parent="ffff:fff2", classid=1, direct_action=True)

    # addresses ------------------------------------------------------------------------
    def client_addr(self, family: int = 4) -> str:
        return self.CLIENT_V4 if family in (4, socket.AF_INET) else self.CLIENT_V6

    def server_addr(self, family: int = 4) -> str:
        return self.SERVER_V4 if family in (4, socket.AF_INET) else self.SERVER_V6

    # loss -------------------------------------------------------------------------------
    @property
    def drop_permille(self) -> float:
        return self._bpf["lossy_cfg"][ctypes.c_int(0)].value / 1000

    @drop_permille.setter
    def drop_permille(self, permille: float) -> None:
        if not 0 <= permille <= 1000:
            raise ValueError("drop_permille is between 0 and 1000")
        self._bpf["lossy_cfg"][ctypes.c_int(0)] = ctypes.c_uint32(round(permille * 1000))

    def stats(self) -> dict[str, int]:
        """The classifier's counters, both router interfaces together."""
        t = self._bpf["lossy_stats"]
        names = ("frames", "tcp", "data", "dropped", "dropped_bytes")
        return {n: t[ctypes.c_int(i)].value for i, n in enumerate(names)}

    def dropped(self) -> int:
        """Data frames the classifier dropped (since creation or :meth:`reset`)."""
        return self._bpf["lossy_stats"][ctypes.c_int(3)].value

    def reset(self) -> None:
        """Zero the classifier's counters."""
        t = self._bpf["lossy_stats"]
        for i in range(5):
            t[ctypes.c_int(i)] = ctypes.c_uint64(0)

    def capture(self, side: str, **kw) -> WireCapture:
        """A (not started) capture on the client's or the server's interface."""
        if side == "client":
            return WireCapture(self.client, self.client_if, **kw)
        if side == "server":
            return WireCapture(self.server, self.server_if, **kw)
        raise ValueError("side is 'client' or 'server'")

    def transfer(self, nbytes: int, family: int = 4, port: int = 5001, timeout: float = 60.0) -> int:
        """The client sends ``nbytes`` to the server and shuts down; the server
        reads to the end and closes. Returns the bytes the server received."""
        af = socket.AF_INET if family in (4, socket.AF_INET) else socket.AF_INET6
        with self.server.enter():
            srv = socket.socket(af)
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((self.server_addr(family), port))
            srv.listen()
        with self.client.enter():
            cli = socket.socket(af)
        srv.settimeout(timeout)
        cli.settimeout(timeout)
        got, error = [0], []

        def reader() -> None:
            try:
                acc, _ = srv.accept()
                acc.settimeout(timeout)
                with acc:
                    while chunk := acc.recv(1 << 20):
                        got[0] += len(chunk)
            except BaseException as e:
                error.append(e)
        t = threading.Thread(target=reader, name="lossy-server")
        t.start()
        try:
            cli.connect((self.server_addr(family), port))
            cli.sendall(b"w" * nbytes)
            cli.shutdown(socket.SHUT_WR)
            cli.recv(1)                         # the server's FIN
        finally:
            t.join(timeout)
            cli.close()
            srv.close()
        if error:
            raise error[0]
        return got[0]

    def close(self) -> None:
        """Remove the namespaces (their interfaces and filters with them) and the program."""
        for ns in (self.client, self.router, self.server):
            if ns is not None:
                ns.close()
        if self._bpf is not None:
            with contextlib.suppress(Exception):
                self._bpf.cleanup()
            self._bpf = None

    def __enter__(self) -> "LossyPath":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- what a capture says about one direction of a connection ------------------------------

def _rel(seg: Segment, base: int) -> int:
    return (seg.seq - base) & 0xFFFFFFFF


def isn(segments: list[Segment]) -> int | None:
    """The initial sequence number of the first SYN among ``segments``."""
    return next((s.seq for s in segments if s.flags & SYN), None)


def seq_coverage(segments: list[Segment]) -> int:
    """Bytes of sequence space the data segments cover (each byte once),
    relative to the SYN among them (or to the first segment)."""
    base = isn(segments)
    if base is None:
        base = segments[0].seq if segments else 0
    spans = sorted((_rel(s, base), _rel(s, base) + s.length) for s in segments if s.length)
    covered, reach = 0, None
    for a, b in spans:
        if reach is None or a > reach:
            covered += b - a
            reach = b
        elif b > reach:
            covered += b - reach
            reach = b
    return covered


def retransmissions(segments: list[Segment]) -> tuple[list[Segment], set[int]]:
    """Data segments (in order) that resend sequence space already sent, and
    the data seqs that start more than one segment."""
    base = isn(segments)
    if base is None:
        base = segments[0].seq if segments else 0
    high, again, starts, repeated = 0, [], set(), set()
    for s in segments:
        if not s.length:
            continue
        a = _rel(s, base)
        if a < high:
            again.append(s)
        high = max(high, a + s.length)
        if s.seq in starts:
            repeated.add(s.seq)
        starts.add(s.seq)
    return again, repeated
