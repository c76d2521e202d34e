# SPDX-License-Identifier: BSD-2-Clause
"""Write a synthetic TCP capture of a given size, for the decoder benchmark.

    mkcapture.py OUT.elog [--size 1G]

Records follow schemas/tcp_eventlog_schema.src and what a VERBOSE capture
of a loopback workload holds: many concurrent connections, each with its
session create, addresses, owner, state changes, connection parameters and
MSS, then a data phase dominated by per-segment events (OUT, IN_PROBE, IN,
CWND, RTT_SAMPLE, RCV_SPACE), then the closing states and SESSION_END.
Payloads are packed with the layouts of the generated consumer, so every
record decodes; values vary (sequence numbers, lengths, flags, windows) so
that nothing is decoded from a cache more often than in a real capture.
Timestamps increase (µs since boot), two CPUs, several threads.

The fleet benchmark varies captures by host: ``loss`` retransmits that share
of data segments (RETRANSMIT, then the same OUT again; one in eight of them
fails with err -105 and is not counted as sent), ``rtt_us`` shifts the RTT
samples. With the defaults (no loss) the records are those the decoder
benchmark has always read.

Written with pyelog.records.format.ElogWriter.write_records in 1 MiB runs.
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pyelog.schema.consumer import ConsumerSet  # noqa: E402
from pyelog.records.format import EVENT_HEADER, ElogWriter  # noqa: E402

PROVIDER_ID = 1
# tcp_state numbers (Linux)
ESTABLISHED, SYN_SENT, FIN_WAIT_1, FIN_WAIT_2, TIME_WAIT, CLOSED = 1, 2, 4, 5, 6, 7
ACK, PUSH, SYN, FIN = 0x10, 0x08, 0x02, 0x01
TS_OPT = 0x08                    # the timestamp option present (every Linux segment)
NO_SACK = (0,) * 8               # sack_start1..sack_end4


def parse_size(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().rstrip("B")
    return int(float(t[:-1]) * mult[t[-1]]) if t[-1:] in mult else int(t)


class Gen:
    """Produces the records of many interleaved connections."""

    def __init__(self, loss: float = 0.0, rtt_us: int = 30, seed: int = 0) -> None:
        m = ConsumerSet.default().get("tcp").module
        ids = {name: eid for eid, (name, *_rest) in m.EVENTS.items()}
        self.ids = ids
        self.s = {name: getattr(m, f"_STRUCT_{name}") for name in ids
                  if hasattr(m, f"_STRUCT_{name}")}
        self.ts = 5_000_000_000          # µs since boot
        self.cookie = 4096
        self.n = 0
        self.loss, self.rtt_us = loss, rtt_us
        self.random = random.Random(seed)

    def rec(self, sid: int, name: str, payload: bytes, cpu: int, tid: int) -> bytes:
        self.ts += 1 + (self.n & 3)
        self.n += 1
        return EVENT_HEADER.pack(32 + len(payload), cpu, PROVIDER_ID, 0, self.ts, sid,
                                 self.ids[name], tid) + payload

    def out(self, seq: int, ack: int, flags: int, ln: int, cwnd: int, state: int) -> bytes:
        """An OUT payload as the skb hook writes it (timestamps on, no SACK)."""
        return self.s["OUT"].pack(seq, ack, flags, 512, ln, cwnd, state, TS_OPT, 0, 0, 0,
                                  1 + ln // 65483, self.n + 1000, self.n + 960, seq, seq, *NO_SACK)

    def inn(self, seq: int, ack: int, flags: int, win: int, ln: int, state: int) -> bytes:
        """An IN payload as the skb hook writes it."""
        return self.s["IN"].pack(seq, ack, flags, win, ln, state, TS_OPT, 0, 0, 0, 1, self.n + 1000,
                                 self.n + 960, ack, seq, *NO_SACK)

    def connection(self, segments: int) -> list[bytes]:
        """One client connection's records, in order."""
        s, r = self.s, self.rec
        self.cookie += 1
        sid, cpu, tid = self.cookie, self.cookie & 1, 3000 + (self.cookie % 7)
        port = 32768 + self.cookie % 28000
        lo = socket.inet_aton("127.0.0.1")
        seq, ack, cwnd = (self.cookie * 2654435761) & 0xFFFFFFFF, 12345, 10
        out = [
            r(sid, "SESSION_CREATE", s["SESSION_CREATE"].pack(4026531840, tid, 2, b"iperf3"), cpu, tid),
            r(sid, "CONN_SET_IP_V4", s["CONN_SET_IP_V4"].pack(lo, socket.htons(port), lo, socket.htons(5201)), cpu, tid),
            r(sid, "CONN_OWNER", s["CONN_OWNER"].pack(tid, b"iperf3"), cpu, tid),
            r(sid, "STATE_CHANGE", s["STATE_CHANGE"].pack(CLOSED, SYN_SENT), cpu, tid),
            r(sid, "OUT", self.out(seq, 0, SYN, 0, cwnd, SYN_SENT), cpu, tid),
            r(sid, "STATE_CHANGE", s["STATE_CHANGE"].pack(SYN_SENT, ESTABLISHED), cpu, tid),
            r(sid, "CONN_PARAMS", s["CONN_PARAMS"].pack(seq, ack, 65483, 7, 7, 0x43, b"cubic"), cpu, tid),
            r(sid, "MSS", s["MSS"].pack(65483), cpu, tid),
        ]
        seq += 1
        for i in range(segments):
            ln = 65483 if i % 5 else 1 + (i * 37) % 9000
            out.append(r(sid, "OUT", self.out(seq, ack, ACK | PUSH * (i & 1), ln, cwnd, ESTABLISHED),
                         cpu, tid))
            if self.loss and self.random.random() < self.loss:
                segs = 1 + ln // 65483
                err = -105 if self.random.random() < 0.125 else 0      # ENOBUFS: not sent
                out.append(r(sid, "RETRANSMIT", s["RETRANSMIT"].pack(seq, segs, err, ESTABLISHED),
                             cpu ^ 1, 0))
                if err == 0:
                    out.append(r(sid, "OUT", self.out(seq, ack, ACK, ln, cwnd, ESTABLISHED), cpu ^ 1, 0))
            out.append(r(sid, "IN_PROBE", s["IN_PROBE"].pack(ln, seq, (seq + ln) & 0xFFFFFFFF, 65535 + i, 40 + i % 13),
                         cpu ^ 1, 0))
            if i % 4 == 0:
                out.append(r(sid, "IN", self.inn(ack, (seq + ln) & 0xFFFFFFFF, ACK, 512 + i % 100, 0,
                                                 ESTABLISHED), cpu ^ 1, 0))
            if i % 3 == 0:
                cwnd = min(cwnd + 1, 500)
                out.append(r(sid, "RTT_SAMPLE", s["RTT_SAMPLE"].pack(self.rtt_us + i % 50, 42), cpu ^ 1, 0))
                out.append(r(sid, "CWND", s["CWND"].pack(cwnd, 0x7FFFFFFF), cpu ^ 1, 0))
            if i % 16 == 0:
                out.append(r(sid, "RCV_SPACE", s["RCV_SPACE"].pack(131072 + i, 6291456, 0, 0), cpu ^ 1, 0))
            seq = (seq + ln) & 0xFFFFFFFF
        out += [
            r(sid, "OUT", self.out(seq, ack, ACK | FIN, 0, cwnd, FIN_WAIT_1), cpu, tid),
            r(sid, "STATE_CHANGE", s["STATE_CHANGE"].pack(ESTABLISHED, FIN_WAIT_1), cpu, tid),
            r(sid, "STATE_CHANGE", s["STATE_CHANGE"].pack(FIN_WAIT_1, FIN_WAIT_2), cpu ^ 1, 0),
            r(sid, "STATE_CHANGE", s["STATE_CHANGE"].pack(FIN_WAIT_2, TIME_WAIT), cpu ^ 1, 0),
            r(sid, "SESSION_END", b"", cpu ^ 1, 0),
        ]
        return out


def write_capture(path: str, size: int, gen: Gen | None = None) -> tuple[int, int]:
    """Write about ``size`` bytes of records (whole records, never more); (records, bytes)."""
    g = gen or Gen()
    w = ElogWriter(path, [(PROVIDER_ID, "tcp")])
    pending: list[bytes] = []
    pending_len = 0
    total = w.bytes_written
    k = 0
    done = False
    while not done:
        k += 1
        for rec in g.connection(segments=50 + (k * 97) % 400):
            if total + pending_len + len(rec) > size - 40 - 38:   # header + table
                done = True
                break
            pending.append(rec)
            pending_len += len(rec)
        if pending_len >= 1 << 20 or done:
            w.write_records(b"".join(pending), len(pending))
            total += pending_len
            pending, pending_len = [], 0
    w.close()
    return w.event_count, w.bytes_written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output")
    ap.add_argument("--size", default="1G", help="bytes, with K/M/G (default 1G)")
    a = ap.parse_args()
    n, b = write_capture(a.output, parse_size(a.size))
    print(f"records={n} bytes={b}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
