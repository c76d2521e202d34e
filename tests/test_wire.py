# SPDX-License-Identifier: BSD-2-Clause
"""tests/helpers/wire.py: frame parsing on hand-built frames, and the capture and the
lossy path on the running kernel (the independent truth for differential
tests of the TCP provider).

The live tests load a tc classifier (bcc) into a router namespace, so they
are ``kernel`` tests: outside CI they skip without root or bcc (conftest.py);
under CI=true a skip fails. All traffic stays inside the namespaces
LossyPath creates.
"""
from __future__ import annotations

import collections
import socket
import struct
import time

import pytest

from tests.helpers.wire import (ACK, AE, CWR, ECE, FIN, PSH, SYN, LossyPath, Segment,
                                parse_options, parse_packet, retransmissions, seq_coverage)

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


# -- hand-built frames --------------------------------------------------------------

def eth(etype: int) -> bytes:
    return MAC_B + MAC_A + struct.pack("!H", etype)


def tcp(sport=40000, dport=5001, seq=1000, ack=2000, flags=ACK, win=512, opts=b"", payload=b"") -> bytes:
    assert len(opts) % 4 == 0
    doff = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (doff << 4) | (flags >> 8 & 1),
                       flags & 0xFF, win, 0, 0) + opts + payload


def ipv4(l4: bytes, src="10.232.1.2", dst="10.232.2.2", proto=6, tot=None, frag=0) -> bytes:
    tot = 20 + len(l4) if tot is None else tot
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, tot, 1, frag, 64, proto, 0,
                       socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst)) + l4


def ipv6(l4: bytes, src="fd00:232:1::2", dst="fd00:232:2::2", nh=6, plen=None) -> bytes:
    plen = len(l4) if plen is None else plen
    return struct.pack("!IHBB16s16s", 6 << 28, plen, nh, 64, socket.inet_pton(socket.AF_INET6, src),
                       socket.inet_pton(socket.AF_INET6, dst)) + l4


NOP = b"\x01"


def o_mss(v):
    return struct.pack("!BBH", 2, 4, v)


def o_ws(v):
    return struct.pack("!BBB", 3, 3, v)


def o_ts(val, ecr):
    return struct.pack("!BBII", 8, 10, val, ecr)


def o_sack(*blocks):
    return struct.pack("!BB", 5, 2 + 8 * len(blocks)) + b"".join(struct.pack("!II", a, b) for a, b in blocks)


O_SACK_PERM = b"\x04\x02"


def test_ipv4_ack_with_timestamps_and_three_sack_blocks():
    blocks = [(5000, 6448), (7896, 9344), (0xFFFFFF00, 0x00000100)]
    opts = NOP + NOP + o_ts(123456, 654321) + NOP + NOP + o_sack(*blocks)
    assert len(opts) == 40
    f = eth(0x0800) + ipv4(tcp(seq=0xFFFFFFF0, ack=4242, flags=ACK | PSH, win=0xFFFF, opts=opts,
                               payload=b"p" * 100))
    s = parse_packet(f, "eth", ts_ns=17, outgoing=True)
    assert isinstance(s, Segment)
    assert (s.ts_ns, s.outgoing, s.family, s.src, s.dst) == (17, True, 4, "10.232.1.2", "10.232.2.2")
    assert (s.sport, s.dport, s.seq, s.ack, s.flags, s.win) == (40000, 5001, 0xFFFFFFF0, 4242, ACK | PSH, 0xFFFF)
    assert s.length == 100 and s.frame_len == len(f)
    assert (s.ts_val, s.ts_ecr) == (123456, 654321)
    assert s.sack == blocks and s.other_opts == []
    assert s.mss is None and s.wscale is None and s.sack_perm is False
    assert s.end_seq == (0xFFFFFFF0 + 100) & 0xFFFFFFFF


def test_syn_options():
    opts = o_mss(1460) + O_SACK_PERM + o_ts(1, 0) + NOP + o_ws(7)      # Linux's order
    s = parse_packet(eth(0x0800) + ipv4(tcp(seq=99, ack=0, flags=SYN, win=64240, opts=opts)), "eth")
    assert (s.mss, s.sack_perm, s.ts_val, s.ts_ecr, s.wscale) == (1460, True, 1, 0, 7)
    assert s.flags == SYN and s.length == 0 and s.sack == [] and s.other_opts == []
    assert s.outgoing is False and s.end_seq == 100
    # unknown kinds are listed (TCP-AO 29, MPTCP 30); EOL ends the options
    opts = o_mss(1400) + struct.pack("!BBH", 30, 4, 0) + struct.pack("!BB", 29, 2) + b"\x00" + o_ws(3) + b"\x00\x00"
    s = parse_packet(eth(0x0800) + ipv4(tcp(flags=SYN | ACK, opts=opts)), "eth")
    assert s.mss == 1400 and s.other_opts == [30, 29] and s.wscale is None


def test_ipv6_frame():
    opts = NOP + NOP + o_ts(7, 8)
    f = eth(0x86DD) + ipv6(tcp(sport=5001, dport=40000, seq=1, ack=2, flags=ACK, opts=opts, payload=b"x" * 1428))
    s = parse_packet(f, "eth", outgoing=True)
    assert (s.family, s.src, s.dst, s.sport, s.dport) == (6, "fd00:232:1::2", "fd00:232:2::2", 5001, 40000)
    assert s.length == 1428 and (s.ts_val, s.ts_ecr) == (7, 8)
    # l2="ip": the same packet without its Ethernet header
    assert parse_packet(f[14:], "ip", outgoing=True) == s._replace(frame_len=len(f) - 14)
    # a hop-by-hop header (8 bytes, padding) before TCP is stepped over
    hbh = bytes([6, 0, 1, 4, 0, 0, 0, 0])
    s2 = parse_packet(eth(0x86DD) + ipv6(hbh + tcp(payload=b"y" * 10), nh=0), "eth")
    assert s2.length == 10 and s2.dport == 5001
    # non-TCP next headers: UDP, ICMPv6, a fragment header
    for nh in (17, 58, 44):
        assert parse_packet(eth(0x86DD) + ipv6(tcp(), nh=nh), "eth") is None


def test_ae_ece_cwr_flags():
    s = parse_packet(eth(0x0800) + ipv4(tcp(flags=AE | CWR | ECE | ACK | FIN)), "eth")
    assert s.flags == 0x1D1 and s.flags & AE
    assert s.end_seq == 1001                  # FIN takes one sequence number
    s = parse_packet(eth(0x0800) + ipv4(tcp(flags=ACK)), "eth")
    assert s.flags == ACK


def test_truncated_and_malformed_options_do_not_raise():
    opts = NOP + NOP + o_ts(11, 22) + NOP + NOP + o_sack((1, 2), (3, 4), (5, 6))
    full = eth(0x0800) + ipv4(tcp(opts=opts, payload=b"z" * 500))
    # the capture kept the first 14+20+20+12 bytes: the TS option, not the SACK option
    s = parse_packet(full[:66], "eth", wire_len=len(full))
    assert (s.ts_val, s.ts_ecr) == (11, 22) and s.sack == [] and s.length == 500
    # cut inside the SACK option: the complete blocks count
    s = parse_packet(full[:14 + 20 + 20 + 12 + 2 + 2 + 8 + 8 + 3], "eth", wire_len=len(full))
    assert s.sack == [(1, 2), (3, 4)] and s.length == 500
    # cut inside the TS option: nothing but the kind
    s = parse_packet(full[:14 + 20 + 20 + 2 + 5], "eth", wire_len=len(full))
    assert s.ts_val is None and s.other_opts == [8]
    # length 0 or 1, running past the end, wrong length for the kind, a lone kind byte
    for bad, mss, other in ((o_mss(536) + b"\x13\x00" + b"\x00" * 2, 536, [0x13]),
                            (o_mss(536) + b"\x13\x01" + b"\x00" * 2, 536, [0x13]),
                            (o_mss(536) + b"\x13\x09" + b"\x00" * 2, 536, [0x13]),
                            (struct.pack("!BBBB", 2, 3, 5, 1) + o_ws(2) + NOP, None, [2]),
                            (NOP * 3 + b"\x08", None, [8])):
        s = parse_packet(eth(0x0800) + ipv4(tcp(opts=bad)), "eth")
        assert s.mss == mss and s.other_opts == other, bad
    assert parse_options(b"\x02") == (None, None, False, None, None, [], [2])
    assert parse_options(b"") == (None, None, False, None, None, [], [])
    # too short for the TCP fixed header, or a data offset < 5: not a segment
    assert parse_packet(full[:14 + 20 + 19], "eth", wire_len=len(full)) is None
    bad_doff = bytearray(eth(0x0800) + ipv4(tcp()))
    bad_doff[14 + 20 + 12] = 4 << 4
    assert parse_packet(bytes(bad_doff), "eth") is None


def test_not_tcp_is_none():
    arp = eth(0x0806) + b"\x00" * 28
    assert parse_packet(arp, "eth") is None
    assert parse_packet(eth(0x0800) + ipv4(b"\x00" * 8 + b"u" * 10, proto=17), "eth") is None    # UDP
    assert parse_packet(eth(0x0800) + ipv4(b"\x08\x00" + b"\x00" * 6, proto=1), "eth") is None    # ICMP
    # a later fragment of a TCP datagram has no TCP header
    assert parse_packet(eth(0x0800) + ipv4(tcp(), frag=185), "eth") is None
    assert parse_packet(b"", "eth") is None and parse_packet(eth(0x0800)[:10], "eth") is None
    assert parse_packet(eth(0x0800) + b"\x45\x00", "eth") is None
    with pytest.raises(ValueError):
        parse_packet(arp, "token-ring")


def test_super_packet_length_comes_from_the_real_frame_length():
    opts = NOP + NOP + o_ts(1, 2)
    # a TSO super-packet: 45 MSS of payload, 160 bytes captured
    payload = 45 * 1448
    head = eth(0x0800) + ipv4(tcp(opts=opts, payload=b"d" * 94), tot=20 + 32 + payload)
    assert len(head) == 160
    s = parse_packet(head, "eth", wire_len=14 + 20 + 32 + payload)
    assert s.length == payload == 65160 and s.frame_len == 65226
    # BIG TCP: IPv4 total length 0, IPv6 payload length 0: only the frame length knows
    big = 3 * 65536
    s = parse_packet(eth(0x0800) + ipv4(tcp(opts=opts, payload=b"d" * 94), tot=0), "eth",
                     wire_len=14 + 20 + 32 + big)
    assert s.length == big
    s = parse_packet(eth(0x86DD) + ipv6(tcp(opts=opts, payload=b"d" * 74), plen=0), "eth",
                     wire_len=14 + 40 + 32 + big)
    assert s.length == big
    # without wire_len: what was captured is the whole frame
    s = parse_packet(head, "eth")
    assert s.length == 94
    # Ethernet padding after a short IPv4 datagram is no payload
    s = parse_packet(eth(0x0800) + ipv4(tcp()) + b"\x00" * 6, "eth")
    assert s.length == 0


def _seg(seq, length, flags=ACK):
    return parse_packet(eth(0x0800) + ipv4(tcp(seq=seq, flags=flags, payload=b"q" * length)), "eth")


def test_coverage_and_retransmissions():
    base = 0xFFFFF000                     # the sequence space wraps during the "transfer"
    segs = [_seg(base, 0, SYN)] + [_seg((base + 1 + i * 1000) & 0xFFFFFFFF, 1000) for i in range(10)]
    segs += [_seg((base + 1 + 3000) & 0xFFFFFFFF, 1000), _seg((base + 1 + 2500) & 0xFFFFFFFF, 2000)]
    assert seq_coverage(segs) == 10_000
    again, repeated = retransmissions(segs)
    assert [s.seq for s in again] == [(base + 1 + 3000) & 0xFFFFFFFF, (base + 1 + 2500) & 0xFFFFFFFF]
    assert repeated == {(base + 1 + 3000) & 0xFFFFFFFF}
    assert seq_coverage(segs + [_seg((base + 1 + 12000) & 0xFFFFFFFF, 500)]) == 10_500


# -- on the running kernel ------------------------------------------------------------

@pytest.fixture(scope="module")
def path(kernel):
    with LossyPath(0) as p:
        yield p


def flows(segs: list[Segment], port: int) -> list[Segment]:
    return [s for s in segs if port in (s.sport, s.dport)]


def poke_udp(path: LossyPath, family: int) -> None:
    """A UDP datagram client -> server (port 9, nobody listens: an ICMP error
    comes back): frames the capture's filter must keep out."""
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    with path.client.enter():
        u = socket.socket(af, socket.SOCK_DGRAM)
    with u:
        u.sendto(b"not tcp", (path.server_addr(family), 9))


def run(path: LossyPath, family: int, nbytes: int, port: int, permille: float, gso_segs: int | None):
    path.set_gso_max_segs(gso_segs)
    path.drop_permille = permille
    path.reset()
    cc, sc = path.capture("client"), path.capture("server")
    with cc, sc:
        poke_udp(path, family)
        t0 = time.monotonic()
        got = path.transfer(nbytes, family, port)
        took = time.monotonic() - t0
    return got, took, cc, sc


@pytest.mark.kernel
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("mode", ["mss", "tso"])
def test_lossy_transfer_against_the_wire(path, family, mode):
    """~3 % of the data frames dropped in the router: the client's capture
    shows every byte sent once at least, with retransmissions; everything the
    server received is something the client sent, header for header; the
    server's ACKs carry SACK blocks; the captures lost nothing.

    mss: one MSS per frame (gso_max_segs 1), 2 MB. tso: veth's TSO as is,
    so frames are super-packets of up to 45 MSS, and 20 MB to have enough of
    them to lose some."""
    nbytes = 2_000_000 if mode == "mss" else 20_000_000
    port = 5100 + family * 10 + (mode == "tso")
    t0 = time.monotonic()
    got, took, cc, sc = run(path, family, nbytes, port, 30, 1 if mode == "mss" else None)
    total = time.monotonic() - t0
    dropped = path.dropped()
    assert got == nbytes
    assert cc.drops == 0 and sc.drops == 0, "the capture itself lost frames"
    # the socket filter passed TCP only (the UDP datagram, the ICMP error, ND/ARP stayed out)
    assert len(cc.segments) == len(cc.frames) == cc.kernel_packets
    assert len(sc.segments) == len(sc.frames) == sc.kernel_packets
    C, S = flows(cc.segments, port), flows(sc.segments, port)
    assert len(C) == len(cc.segments) and len(S) == len(sc.segments)
    c_out = [s for s in C if s.outgoing]
    c_in = [s for s in C if not s.outgoing]
    s_out = [s for s in S if s.outgoing]
    s_in = [s for s in S if not s.outgoing]
    cli, srv = path.client_addr(family), path.server_addr(family)
    assert all((s.family, s.src, s.dst) == (family, cli, srv) for s in c_out + s_in)
    assert all((s.family, s.src, s.dst) == (family, srv, cli) for s in s_out + c_in)

    # the client's SYN, as parsed from the wire
    syn = c_out[0]
    assert syn.flags == SYN and syn.mss == (1460 if family == 4 else 1440)
    assert syn.sack_perm and syn.wscale is not None and syn.ts_val is not None
    # every byte sent is in the client's outgoing data, the FIN after the last one
    assert seq_coverage(c_out) == nbytes
    fin = [s for s in c_out if s.flags & FIN]
    # (the FIN may ride on the last data segment)
    assert fin and all((s.seq + s.length) & 0xFFFFFFFF == (syn.seq + 1 + nbytes) & 0xFFFFFFFF for s in fin)
    again, repeated = retransmissions(c_out)
    assert again and repeated, "no retransmission although %d frames were dropped" % dropped
    mss = syn.mss - 12                                            # minus the timestamp option
    biggest = max(s.length for s in c_out)
    if mode == "mss":
        assert biggest <= mss

    # what the server received is what the client sent, TCP header for TCP header
    # (the router changed TTL/hop limit and the IP checksum, nothing in TCP)
    sent = collections.Counter(s.tcp_key() for s in c_out)
    recv = collections.Counter(s.tcp_key() for s in s_in)
    assert not recv - sent, "the server received segments the client never sent"
    assert sum(sent.values()) - sum(recv.values()) == dropped > 0
    # the router drops only data: every ACK of the server reached the client
    assert collections.Counter(s.tcp_key() for s in s_out) == collections.Counter(s.tcp_key() for s in c_in)
    assert all(s.length == 0 for s in s_out)
    sacks = [s for s in s_out if s.sack]
    assert sacks, "no SACK block in the server's ACKs during loss"
    # timestamps: kernel receive times, realtime clock, within the run
    now = time.time_ns()
    assert all(now - 120e9 < s.ts_ns <= now for s in C + S)

    supers = sum(s.length > mss for s in c_out)
    print(f"\n[v{family} {mode}] {nbytes} B in {took:.2f} s (with setup/stop {total:.2f} s): "
          f"client {len(C)} frames ({len(c_out)} out, {len(c_in)} in), "
          f"server {len(S)} frames ({len(s_in)} in, {len(s_out)} out); capture drops {cc.drops}/{sc.drops}; "
          f"router dropped {dropped} of {path.stats()['data']} data frames; "
          f"retransmitted frames {len(again)}, repeated seqs {len(repeated)}; "
          f"SACK-bearing ACKs {len(sacks)}; super-packets {supers} (largest {biggest} B)")


@pytest.mark.kernel
@pytest.mark.parametrize("mode", ["mss", "tso"])
def test_capture_keeps_up_with_50_mb(path, mode):
    """50 MB without loss: every frame captured on both sides, none lost by
    the capture. mss: ~35,000 data frames each way, the most frames there
    can be; tso: super-packets, their lengths from the real frame length."""
    nbytes = 50_000_000
    got, took, cc, sc = run(path, 4, nbytes, 5200 + (mode == "tso"), 0, 1 if mode == "mss" else None)
    assert got == nbytes
    assert cc.drops == 0 and sc.drops == 0
    c_out = [s for s in cc.segments if s.outgoing]
    s_in = [s for s in sc.segments if not s.outgoing]
    assert seq_coverage(c_out) == seq_coverage(s_in) == nbytes
    # no loss: the server received exactly what the client sent (veth may reorder)
    assert collections.Counter(s.tcp_key() for s in c_out) == collections.Counter(s.tcp_key() for s in s_in)
    if mode == "mss":
        assert len(c_out) > nbytes // 1448
    print(f"\n[50 MB {mode}] {took:.2f} s, client {len(cc.segments)} frames, server {len(sc.segments)} frames, "
          f"largest {max(s.length for s in c_out)} B, drops {cc.drops}/{sc.drops}")
