# SPDX-License-Identifier: BSD-2-Clause
"""pyelog's TCP record against the wire: every segment, both ways, per connection.

The truth is independent of pyelog: the packets each endpoint's TCP sent and
received, captured by the test itself (AF_PACKET, tests/helpers/wire.py) on the
client's and the server's own interfaces of a client -- router -- server
path whose router drops data segments at random (tests/helpers/wire.py
LossyPath), and the byte counts the test's own client and server moved.

One recorder (``pyelog -c tcp VERBOSE -D``, as a user runs it) sees: a
connection older than the recorder (-D), clean exchanges over IPv4 and IPv6
(TSO on: one segment per super-packet, as the capture sees them), bulk
transfers under random loss with SACK recovery (one MSS per packet), and
resets both ways. Then, per connection and side:

* every wire segment matches exactly one IN (received) or OUT (sent) of
  the socket's session, on seq, ack, length, flags, window and options
  (timestamps, MSS, window scale, SACK permitted, SACK blocks), and every
  IN/OUT matches a wire segment;
* RETRANSMIT events (sent ones, err 0) are the wire's retransmissions,
  seq for seq;
* ``pyelog summary``'s TX/RX bytes are what the test's client and server
  sent.

Mismatches are reported by kind and count; the run fails on any kind that
README.md's "Known departures from the wire" does not list.
"""
from __future__ import annotations

import collections
import json
import re
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pyelog.records.eventlog import SESSION_END_ID
from pyelog.records.format import ElogReader
from pyelog.schema.consumer import ConsumerSet
from tests.helpers.netns import connected, so_cookie
from tests.helpers.recorder import PYELOG, TIME_SCALE, Recorder
from tests.helpers.wire import ACK, RST, SYN, BootClock, LossyPath, Segment, retransmissions

pytestmark = pytest.mark.kernel

README = Path(__file__).resolve().parent.parent / "README.md"
CONSUMERS = ConsumerSet.default()
TCP = CONSUMERS.get("tcp")
# Matching tolerance between the wire's clock (CLOCK_REALTIME at the tap) and
# an event's (CLOCK_BOOTTIME at the hook, put on the wall clock through the
# capture header): the hook runs just before (sent) or after (received) the tap.
SKEW_US = int(2000 * TIME_SCALE)
# Times are judged as a whole: a late anchor (the header's clock taken at
# the first drain) shifts every event by milliseconds and moves the median;
# on a shared machine one segment in many may wait a few ms in softirq or
# behind a preempted capture thread, which says nothing about the record.
MEDIAN_SKEW_US = int(200 * TIME_SCALE)


def readme_departures() -> dict[str, str]:
    """kind -> text of README's "Known departures from the wire" list."""
    text = README.read_text()
    m = re.search(r"^### Known departures from the wire\n(.*?)(?=^#)", text, re.M | re.S)
    assert m, "README.md has no 'Known departures from the wire' section"
    return dict(re.findall(r"^\* `([a-z0-9 -]+)`: (.*)$", m.group(1), re.M))


# -- traffic: the test's own client and server, and what they moved ------------------

@dataclass
class Conn:
    """One connection as the test made it."""
    name: str
    family: int
    client: tuple[str, int]
    server: tuple[str, int]
    cookies: tuple[int, int]          # client, accepted
    sent: tuple[int, int]             # bytes the client / server application sent
    since_ns: int = 0                 # wire segments before this are not expected (older connection)


class Pair:
    """A client socket and its accepted socket across the path."""

    def __init__(self, path: LossyPath, family: int, port: int) -> None:
        af = socket.AF_INET if family == 4 else socket.AF_INET6
        self.family = family
        srv, self.cli, self.acc = connected(path.server, port, family=af, host=path.server_addr(family),
                                            client_ns=path.client)
        srv.close()
        self.cli.settimeout(60)
        self.acc.settimeout(60)
        self.client = self.cli.getsockname()[:2]
        self.server = self.acc.getsockname()[:2]
        self.cookies = (so_cookie(self.cli), so_cookie(self.acc))

    def both_ways(self, up: int, down: int) -> None:
        """The client sends ``up`` bytes while the server sends ``down``."""
        def pump(sock: socket.socket, n: int) -> None:
            sock.sendall(b"u" * n)
        threads = [threading.Thread(target=pump, args=(self.cli, up)),
                   threading.Thread(target=pump, args=(self.acc, down))]
        for t in threads:
            t.start()
        _read(self.acc, up)
        _read(self.cli, down)
        for t in threads:
            t.join(60)

    def conn(self, name: str, sent: tuple[int, int], since_ns: int = 0) -> Conn:
        return Conn(name, self.family, self.client, self.server, self.cookies, sent, since_ns)


def _read(sock: socket.socket, n: int) -> None:
    got = 0
    while got < n:
        chunk = sock.recv(1 << 20)
        assert chunk, f"connection closed after {got} of {n} bytes"
        got += len(chunk)


def exchange(path: LossyPath, name: str, family: int, port: int, up: int, down: int,
             linger: float = 0.0) -> Conn:
    """Data both ways, then the client closes first, then the server (after
    ``linger`` seconds: the client's closed socket, waiting in FIN_WAIT_2 for
    the server's FIN, is by then a timewait socket)."""
    p = Pair(path, family, port)
    p.both_ways(up, down)
    p.cli.close()
    _wait_eof(p.acc)
    time.sleep(linger)
    p.acc.close()
    return p.conn(name, (up, down))


def bulk(path: LossyPath, name: str, family: int, port: int, nbytes: int) -> Conn:
    """A bulk upload; the client shuts down its side and waits for the
    server's FIN before closing (so it enters TIME_WAIT in its own socket)."""
    p = Pair(path, family, port)
    p.both_ways(nbytes, 0)
    p.cli.shutdown(socket.SHUT_WR)
    _wait_eof(p.acc)
    p.acc.close()
    _wait_eof(p.cli)
    p.cli.close()
    return p.conn(name, (nbytes, 0))


def reset_by_client(path: LossyPath, name: str, family: int, port: int) -> Conn:
    """The client aborts (SO_LINGER 0: RST) after the server read everything."""
    p = Pair(path, family, port)
    p.both_ways(10_000, 3000)
    p.cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    p.cli.close()
    with pytest.raises(OSError):
        _wait_eof(p.acc)                        # ECONNRESET
    p.acc.close()
    return p.conn(name, (10_000, 3000))


def reset_by_server(path: LossyPath, name: str, family: int, port: int) -> Conn:
    """The server closes with unread data (RST), the client learns it."""
    p = Pair(path, family, port)
    p.cli.sendall(b"r" * 20_000)
    got = 0
    while got < 5000:
        got += len(p.acc.recv(5000 - got))
    time.sleep(0.1)                             # the rest is in the server's buffer, acked
    p.acc.close()
    with pytest.raises(OSError):
        _wait_eof(p.cli)
    p.cli.close()
    return p.conn(name, (20_000, 0))


def _wait_eof(sock: socket.socket) -> None:
    while sock.recv(1 << 20):
        pass


# -- what pyelog recorded ------------------------------------------------------------------

@dataclass
class Side:
    """One socket's session: its events, with wall-clock times in µs."""
    session: int
    segs: dict[str, list[tuple[int, dict]]] = field(default_factory=lambda: {"IN": [], "OUT": []})
    retransmits: list[int] = field(default_factory=list)
    timewait_us: int | None = None
    end_us: int | None = None


def read_capture(path: Path) -> tuple[dict[int, Side], object]:
    """The capture's sessions."""
    sides: dict[int, Side] = {}
    with ElogReader(path) as r:
        header = r.header
        for rec in r:
            s = sides.setdefault(rec.session_id, Side(rec.session_id))
            utc = rec.timestamp       # the boot clock, as the wire's times are put on it
            name = TCP.event_name(rec.event_id)
            if rec.event_id == SESSION_END_ID:
                s.end_us = utc
                continue
            f = TCP.decode(rec.event_id, rec.payload)
            if name in ("IN", "OUT"):
                s.segs[name].append((utc, f))
            elif name == "RETRANSMIT" and f["err"] == 0:
                s.retransmits.append(f["seq"])
            elif name == "TIMEWAIT":
                s.timewait_us = utc
    return sides, header


def event_key(f: dict) -> tuple:
    o = f["opts"]
    sack = tuple((f[f"sack_start{i}"], f[f"sack_end{i}"]) for i in range(1, f["nsack"] + 1))
    return (f["seq"], f["ack"], f["len"], f["flags"], f["win"],
            f["mss"] if o & 0x01 else None, f["wscale"] if o & 0x02 else None, bool(o & 0x04),
            f["tsval"] if o & 0x08 else None, f["tsecr"] if o & 0x08 else None, sack)


def wire_key(s: Segment) -> tuple:
    return (s.seq, s.ack, s.length, s.flags, s.win, s.mss, s.wscale, s.sack_perm,
            s.ts_val, s.ts_ecr, tuple(s.sack))


# -- the comparison ----------------------------------------------------------------------

def compare_side(conn: Conn, side: Side | None, wire: list[Segment], local: tuple[str, int],
                 mismatches: collections.Counter, examples: dict, skews: list[int],
                 clock: BootClock) -> None:
    """Wire segments of ``conn`` at ``local`` against the session's IN/OUT;
    ``skews`` gets event time - wire time (µs, both on the boot clock) of every match."""
    def note(kind: str, what) -> None:
        mismatches[kind] += 1
        examples.setdefault(kind, f"{conn.name} {local}: {what}")

    if side is None:
        note("no session", "no events at all")
        return
    for direction, outgoing in (("OUT", True), ("IN", False)):
        segs = [s for s in wire if s.outgoing == outgoing and s.ts_ns >= conn.since_ns]
        want = collections.Counter(wire_key(s) for s in segs)
        got: dict[tuple, list[int]] = collections.defaultdict(list)
        for utc, f in side.segs[direction]:
            got[event_key(f)].append(utc)
        for key in (collections.Counter({k: len(v) for k, v in got.items()}) - want).elements():
            note(f"extra {direction}", key)
        for s in segs:
            k = wire_key(s)
            us = clock.boot_ns(s.ts_ns) // 1000
            if got.get(k):
                skews.append(got[k].pop(0) - us)
                continue
            if side.timewait_us is not None and us >= side.timewait_us - SKEW_US:
                note("timewait", s)
            elif side.end_us is not None and us >= side.end_us - SKEW_US and s.flags & RST:
                note("no socket", s)
            elif outgoing and s.family == 6 and s.flags & (SYN | ACK) == SYN | ACK:
                note("ipv6 syn-ack", s)
            elif any(g[:5] == k[:5] for g, times in got.items() if times):
                note(f"options of {direction}", s)
            else:
                note(f"missing {direction}", s)
    # Retransmissions: the wire's (data resending sent space) = RETRANSMIT's.
    resent, _ = retransmissions([s for s in wire if s.outgoing])
    wire_rtx = collections.Counter(s.seq for s in resent if s.ts_ns >= conn.since_ns)
    ev_rtx = collections.Counter(side.retransmits)
    for seq in (wire_rtx - ev_rtx).elements():
        note("retransmit missing", seq)
    for seq in (ev_rtx - wire_rtx).elements():
        note("retransmit extra", seq)


def test_tcp_record_matches_the_wire(tmp_path):
    departures = readme_departures()
    elog = tmp_path / "wire.elog"
    with LossyPath(drop_permille=0) as path, BootClock() as clock:
        cap = {"client": path.capture("client").start(), "server": path.capture("server").start()}
        old = Pair(path, 4, 7100)                  # older than the recorder
        rec = Recorder(["-c", "tcp", "VERBOSE", "-D", "-s", "-b", "8M", "-o", str(elog),
                        "--netns", path.client.name, "--netns", path.server.name])
        conns: list[Conn] = []
        try:
            since = time.time_ns()
            old.both_ways(50_000, 30_000)
            old.cli.close()
            _wait_eof(old.acc)
            old.acc.close()
            conns.append(old.conn("older than the recorder (-D)", (50_000, 30_000), since))
            conns.append(exchange(path, "IPv4 exchange", 4, 7101, 300_000, 60_000))
            conns.append(exchange(path, "IPv6 exchange", 6, 7102, 200_000, 90_000))
            conns.append(exchange(path, "IPv4, the server closes late", 4, 7107, 5000, 5000,
                                  linger=0.3))
            path.set_gso_max_segs(1)
            path.drop_permille = 30
            conns.append(bulk(path, "IPv4 bulk, 3% loss", 4, 7103, 3_000_000))
            conns.append(bulk(path, "IPv6 bulk, 3% loss", 6, 7104, 2_000_000))
            path.drop_permille = 0
            conns.append(reset_by_client(path, "IPv4 reset by the client", 4, 7105))
            conns.append(reset_by_server(path, "IPv6 reset by the server", 6, 7106))
            dropped_on_path = path.dropped()
        finally:
            rc = rec.stop(settle=1.0)
            for c in cap.values():
                c.stop()
    assert rc == 0, rec.stderr
    assert dropped_on_path > 0, "the router dropped nothing: no loss to recover from"
    assert cap["client"].drops == cap["server"].drops == 0, "the packet capture itself lost frames"

    sides, header = read_capture(elog)
    # The lossy transfers did recover with SACK: the record shows it.
    lossy = [c for c in conns if "loss" in c.name]
    assert all(sides[c.cookies[0]].retransmits for c in lossy)
    assert all(any(f["nsack"] for _, f in sides[c.cookies[1]].segs["OUT"]) for c in lossy)
    mismatches: collections.Counter = collections.Counter()
    examples: dict[str, str] = {}
    checked = 0
    skews: list[int] = []
    for conn in conns:
        for where, cookie, local, remote in (("client", conn.cookies[0], conn.client, conn.server),
                                             ("server", conn.cookies[1], conn.server, conn.client)):
            ends = {local, remote}
            wire = [s for s in cap[where].segments
                    if {(s.src, s.sport), (s.dst, s.dport)} == ends]
            assert wire, f"{conn.name}: nothing on the wire at the {where}"
            checked += len(wire)
            compare_side(conn, sides.get(cookie), wire, local, mismatches, examples, skews, clock)

    # summary's byte counts against what the test's applications sent
    out = subprocess.run(PYELOG + ["summary", "--json", str(elog)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = {r["session_id"]: r for r in map(json.loads, out.stdout.splitlines())}
    for conn in conns:
        for cookie, (tx, rx) in ((conn.cookies[0], conn.sent), (conn.cookies[1], conn.sent[::-1])):
            row = rows.get(cookie)
            if row is None or (row["bytes_sent"], row["bytes_received"]) != (tx, rx):
                mismatches["summary bytes"] += 1
                examples.setdefault("summary bytes", f"{conn.name}: {row} != {(tx, rx)}")

    # Times: a segment's event time is its wire time (the hook runs just
    # before the tap when sending, just after it when receiving), both on
    # the boot clock; and the header's wall-clock anchor is the wall clock
    # at the first event's own timestamp.
    anchor = clock.boot_ns(header.start_utc_us * 1000) // 1000
    if abs(anchor - header.capture_start) > MEDIAN_SKEW_US:
        mismatches["time"] += 1
        examples["time anchor"] = (f"start_utc_us {header.start_utc_us} is the wall clock at boot "
                                   f"{anchor} us, not capture_start {header.capture_start}")
    skews.sort()
    worst = max(abs(skews[0]), abs(skews[-1]))
    median = skews[len(skews) // 2]
    p99 = sorted(map(abs, skews))[len(skews) * 99 // 100]
    print(f"\nevent time - wire time: median {median} us, 99th percentile {p99} us, worst {worst} us "
          f"(wall clock against boot clock: {clock.drift_ppm():+.0f} ppm)")
    if abs(median) > MEDIAN_SKEW_US or p99 > SKEW_US:
        mismatches["time"] += 1
        examples["time"] = f"median {median} us, 99th percentile {p99} us, worst {worst} us"
    # What the record lacks, it counts: dropped events are exactly the
    # SYN-ACKs an older kernel's egress hook did not show.
    if header.dropped_events != mismatches["ipv6 syn-ack"]:
        mismatches["dropped count"] += 1
        examples["dropped count"] = (f"header says {header.dropped_events}, "
                                     f"{mismatches['ipv6 syn-ack']} IPv6 SYN-ACKs unseen")
    report = "\n".join(f"  {kind}: {n}" + ("  (README: departure)" if kind in departures else "")
                       + f"\n      e.g. {examples[kind]}" for kind, n in sorted(mismatches.items()))
    print(f"\n{checked} wire segments of {len(conns)} connections checked; mismatches by kind:\n"
          + (report or "  none"))
    unlisted = {k: n for k, n in mismatches.items() if k not in departures}
    assert not unlisted, f"mismatches README does not list as departures:\n{report}"
