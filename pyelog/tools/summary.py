# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog summary``: one row per TCP connection of a capture, like bcc's tcplife.

    pyelog summary FILE [FILE...] [--json] [--listeners] [--schema FILE|DIR]

Each TCP session (socket) of the capture becomes a row: owner, addresses and
ports, duration, bytes each way, segments, retransmissions, RTT range and
the last state seen. Everything comes from the TCP schema's events, found
by name:

* addresses: CONN_SET_IP_V4/V6; owner: SESSION_CREATE / CONN_OWNER;
* duration: SESSION_CREATE (or the first event) to SESSION_END (or the
  last); a connection older than the capture (a dump-state replay: created
  before the provider's DUMP_COMPLETE, or CONN_PARAMS_REPLAY) shows its
  time in the capture as ``>MS``: it started earlier;
* bytes sent: the highest ``seq + len`` of OUT minus the first data
  sequence number (CONN_PARAMS' ISS + 1; else the first OUT's seq, after
  its SYN, or its snd_una when that is older: data sent before the capture
  and not yet acknowledged), so retransmitted bytes count once; SYN and
  FIN take one sequence number each and are not counted; without sequence
  numbers, the sum of OUT lengths;
* bytes received: the highest ``ack`` we sent (OUT), or the end of the
  last in-order data IN (one that starts at or before its rcv_nxt) when
  that is later (data that arrived but was never acknowledged, e.g. before
  a reset), minus the first (CONN_PARAMS' IRS + 1, else the first IN's
  rcv_nxt or OUT's ack), less the peer's FIN when we acknowledged it;
  without any, the sum of IN_PROBE lengths;
* segments: OUT and IN events, one per packet as the stack handled it (a
  TSO/GSO or GRO packet of several segments counts once); IN_PROBE when a
  capture has no IN;
* retransmissions: RETRANSMIT's segment counts (those sent: err 0);
* RTT: min/max in µs over every RTT figure the capture holds: measured
  samples (RTT_SAMPLE's rtt_us, RTT's rtt and min_rtt) and smoothed
  estimates (srtt of RTT_SAMPLE, RTT, RTO and IN_PROBE; RCV_SPACE's
  receiver-side estimate; see pyelog.tools.tcprtt), so that a capture
  without the TRACE-level samples, e.g. one at INFO, which has RTT only at
  the connection's start and end and at each RTO, still shows how high
  the RTT went; RTT_SRC says whether the min and the max
  are a measured ``sample`` or a ``smoothed`` estimate (``sample/smoothed``:
  the min was measured, the max smoothed);
* state: the last STATE_CHANGE (SESSION_END alone reads CLOSED).

Listening sockets are left out unless ``--listeners`` is given; so is the
pseudo-session of DUMP_COMPLETE.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Iterable

from pyelog.tools.tcpseq import seq_add, seq_diff, seq_later
from pyelog.records.eventlog import (DUMP_COMPLETE_ID, SESSION_CREATE_ID, SESSION_END_ID,
                                     SESSION_ID_NONE)
from pyelog.records.captures import open_capture
from pyelog.records.format import ElogFormatError, Record
from pyelog.records.untrusted import terminal_safe
from pyelog.schema.consumer import Consumer, ConsumerSet
from pyelog.tools.command import ArgumentParser, ToolError, add_schema_option, run_reporting
from pyelog.tools.tcprtt import SAMPLE, rtt_figures

FIN, SYN, ACK = 0x01, 0x02, 0x10
# States in which the peer's FIN has been received.
_PEER_FIN_STATES = {"CLOSE_WAIT", "LAST_ACK", "CLOSING", "TIME_WAIT"}


@dataclass
class TcpSession:
    """What a capture says about one TCP connection (one row of the summary)."""
    session_id: int
    pid: int = 0
    comm: str = ""
    family: int = 4
    laddr: str = ""
    lport: int = 0
    raddr: str = ""
    rport: int = 0
    start_us: int = 0                 # µs since boot
    end_us: int = 0
    ended: bool = False               # SESSION_END seen
    preexisting: bool = False         # older than the capture (dump-state replay)
    bytes_sent: int = 0
    bytes_received: int = 0
    segs_out: int = 0
    segs_in: int = 0
    retransmits: int = 0
    rtt_min_us: int | None = None
    rtt_max_us: int | None = None
    rtt_min_src: str = ""              # "sample" (measured) or "smoothed" (an estimate)
    rtt_max_src: str = ""
    state: str = ""
    # Working state, not reported.
    _iss: int | None = field(default=None, repr=False)
    _irs: int | None = field(default=None, repr=False)
    _snd_base: int | None = field(default=None, repr=False)
    _snd_max: int | None = field(default=None, repr=False)
    _rcv_base: int | None = field(default=None, repr=False)
    _out_len_sum: int = field(default=0, repr=False)
    _probe_len_sum: int = field(default=0, repr=False)
    _probes: int = field(default=0, repr=False)
    _max_ack: int | None = field(default=None, repr=False)
    _max_ack_after_fin: bool = field(default=False, repr=False)
    _max_in_order: int | None = field(default=None, repr=False)
    _fin_received: bool = field(default=False, repr=False)

    @property
    def duration_ms(self) -> float:
        return (self.end_us - self.start_us) / 1000

    @property
    def listener(self) -> bool:
        return self.rport == 0 and self.raddr in ("0.0.0.0", "::")

    def report(self) -> dict:
        """The public fields, for JSON."""
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        d["duration_ms"] = round(self.duration_ms, 3)
        return d

    def _rtt(self, us: int, src: str) -> None:
        """One RTT figure; a measured sample wins a tie with a smoothed estimate."""
        if (self.rtt_min_us is None or us < self.rtt_min_us
                or (us == self.rtt_min_us and src == SAMPLE)):
            self.rtt_min_us, self.rtt_min_src = us, src
        if (self.rtt_max_us is None or us > self.rtt_max_us
                or (us == self.rtt_max_us and src == SAMPLE)):
            self.rtt_max_us, self.rtt_max_src = us, src

    @property
    def rtt_src(self) -> str:
        """Where the RTT range came from: one kind, or "min/max" kinds."""
        if self.rtt_min_src == self.rtt_max_src:
            return self.rtt_min_src or "-"
        return f"{self.rtt_min_src}/{self.rtt_max_src}"

    def _out(self, f: dict, full: bool) -> None:
        self.segs_out += 1
        seq, length, flags = f["seq"], f["len"], f["flags"]
        self._out_len_sum += length
        if self._snd_base is None:
            # A SYN occupies its own sequence number: data starts after it.
            self._snd_base = seq_add(seq, 1) if flags & SYN else seq
            if full and seq_diff(self._snd_base, f["snd_una"]) > 0 and not flags & SYN:
                self._snd_base = f["snd_una"]    # sent before the capture, still unacked
        if length:
            self._snd_max = seq_later(seq_add(seq, length), self._snd_max)
        if flags & ACK:  # what we had received by then
            ack = f["ack"]
            if self._rcv_base is None:
                self._rcv_base = ack
            if self._max_ack is None or seq_diff(ack, self._max_ack) >= 0:
                self._max_ack = ack
                self._max_ack_after_fin = self._fin_received

    def add(self, rec: Record, name: str | None, f: dict | None, states: dict[int, str],
            out_size: int, in_size: int) -> None:
        """Fold one event of this session in (``f``: its decoded fields;
        ``out_size``/``in_size``: the OUT/IN payload sizes of the schema, to
        tell payloads that carry the kernel-state fields from older ones)."""
        # min/max: a dump-state replay's SESSION_CREATE carries the (older)
        # creation time.
        self.start_us = min(self.start_us, rec.timestamp) if self.start_us else rec.timestamp
        self.end_us = max(self.end_us, rec.timestamp)
        if rec.event_id == SESSION_END_ID:
            self.ended = True
            self.state = self.state or "CLOSED"
            return
        if f is None:
            return
        for us, kind in rtt_figures(name, f):
            self._rtt(us, kind)
        if rec.event_id == SESSION_CREATE_ID or name == "CONN_OWNER":
            self.pid = f.get("pid", 0) or self.pid
            self.comm = f.get("comm", "") or self.comm
        elif name in ("CONN_SET_IP_V4", "CONN_SET_IP_V6"):
            if not self.laddr:
                self.family = 4 if name == "CONN_SET_IP_V4" else 6
                self.laddr, self.lport = f["src_addr"], f["src_port"]
                self.raddr, self.rport = f["dst_addr"], f["dst_port"]
        elif name == "CONN_PARAMS":
            self._iss, self._irs = f["iss"], f["irs"]
        elif name == "CONN_PARAMS_REPLAY":
            self.preexisting = True
        elif name == "OUT":
            self._out(f, len(rec.payload) >= out_size)
        elif name == "IN":
            self.segs_in += 1
            if len(rec.payload) >= in_size:
                if self._rcv_base is None:
                    self._rcv_base = f["rcv_nxt"]
                if f["len"] and seq_diff(f["seq"], f["rcv_nxt"]) <= 0:
                    self._max_in_order = seq_later(seq_add(f["seq"], f["len"]), self._max_in_order)
            if f["flags"] & FIN:
                self._fin_received = True
        elif name == "IN_PROBE":
            self._probes += 1
            self._probe_len_sum += f["len"]
        elif name == "RETRANSMIT":
            if not f.get("err", 0):
                self.retransmits += max(1, f.get("segs", 1))
        elif name == "STATE_CHANGE":
            self.state = states.get(f["new_state"], str(f["new_state"]))
            if self.state in _PEER_FIN_STATES:
                self._fin_received = True

    def finish(self) -> "TcpSession":
        """Turn the sequence-space bookkeeping into byte counts."""
        base = seq_add(self._iss, 1) if self._iss is not None else self._snd_base
        if base is not None and self._snd_max is not None:
            self.bytes_sent = max(0, seq_diff(self._snd_max, base))
        else:
            self.bytes_sent = self._out_len_sum
        rbase = seq_add(self._irs, 1) if self._irs is not None else self._rcv_base
        if rbase is not None and (self._max_ack is not None or self._max_in_order is not None):
            got = 0
            if self._max_ack is not None:
                got = seq_diff(self._max_ack, rbase)
                if self._max_ack_after_fin and got > 0:
                    got -= 1          # the ack covers the peer's FIN, not a byte
            if self._max_in_order is not None:
                got = max(got, seq_diff(self._max_in_order, rbase))
            self.bytes_received = max(0, got)
        else:
            self.bytes_received = self._probe_len_sum
        if not self.segs_in:
            self.segs_in = self._probes
        return self


def tcp_consumer(decoder) -> Consumer:
    """The decoder's TCP consumer; ToolError when it has none."""
    consumer = decoder.get("tcp") if hasattr(decoder, "get") else None
    if consumer is None:
        raise ToolError("no TCP schema available to decode the capture")
    return consumer


def summarize(records: Iterable[Record], provider_names: dict[int, str], decoder) -> list[TcpSession]:
    """Fold the TCP events of ``records`` into one :class:`TcpSession` per session, in order of appearance."""
    consumer = tcp_consumer(decoder)
    states = consumer.enums.get("tcp_state", {})
    decode, name_of = consumer.decode, consumer.event_name
    out_size, in_size = consumer.payload_size("OUT"), consumer.payload_size("IN")
    sessions: dict[int, TcpSession] = {}
    dumped = False      # DUMP_COMPLETE seen: sessions created before it are replays
    for rec in records:
        if provider_names.get(rec.provider_id) != "tcp":
            continue
        if rec.event_id == DUMP_COMPLETE_ID or rec.session_id == SESSION_ID_NONE:
            if rec.event_id == DUMP_COMPLETE_ID and not dumped:
                dumped = True
                for s in sessions.values():
                    s.preexisting = True
            continue
        s = sessions.get(rec.session_id)
        if s is None:
            s = sessions[rec.session_id] = TcpSession(rec.session_id)
        s.add(rec, name_of(rec.event_id), decode(rec.event_id, rec.payload), states,
              out_size, in_size)
    return [s.finish() for s in sessions.values()]


def _us(v: int | None) -> str:
    return "-" if v is None else str(v)


def format_table(rows: list[TcpSession]) -> str:
    """A tcplife-like table."""
    head = ("SESSION", "PID", "COMM", "LOCAL", "REMOTE", "MS", "TX_BYTES", "RX_BYTES",
            "SEGS_OUT", "SEGS_IN", "RETRANS", "RTT_MIN_US", "RTT_MAX_US", "RTT_SRC", "STATE")
    lines = [head]
    for s in rows:
        def ep(addr: str, port: int) -> str:
            if not addr:
                return "?"
            return f"[{addr}]:{port}" if s.family == 6 else f"{addr}:{port}"
        lines.append((str(s.session_id), str(s.pid or "-"), terminal_safe(s.comm) or "-",
                      ep(s.laddr, s.lport), ep(s.raddr, s.rport),
                      (">" if s.preexisting else "") + f"{s.duration_ms:.3f}",
                      str(s.bytes_sent), str(s.bytes_received), str(s.segs_out), str(s.segs_in),
                      str(s.retransmits), _us(s.rtt_min_us), _us(s.rtt_max_us), s.rtt_src,
                      (s.state or "?") + ("" if s.ended else "*")))
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    right = {1, 5, 6, 7, 8, 9, 10, 11, 12}
    out = []
    for r in lines:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """``pyelog summary``: parse ``argv``, print the rows; the exit status."""
    p = ArgumentParser(
        prog="pyelog summary", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1] + "\nA '*' after the state: the session had "
                                                  "not ended when the capture stopped.")
    p.add_argument("files", nargs="+", metavar="FILE", help="captures (.elog, .elog.gz, .jsonl)")
    p.add_argument("--json", action="store_true", help="one JSON object per connection")
    p.add_argument("--listeners", action="store_true", help="include listening sockets")
    add_schema_option(p)
    a = p.parse_args(argv)
    return run_reporting("pyelog summary", lambda: _print_summary(a))


def _print_summary(a: argparse.Namespace) -> int:
    decoder = ConsumerSet.with_extra(a.schema)
    rows: list[TcpSession] = []
    short: list[ElogFormatError] = []   # reported after the rows they still give
    for path in a.files:
        with open_capture(path) as r:
            rows += summarize(r, r.provider_names, decoder)
            try:
                r.check_complete()
            except ElogFormatError as e:
                short.append(e)
    if not a.listeners:
        rows = [s for s in rows if not s.listener]
    if a.json:
        for s in rows:
            print(json.dumps(s.report()))
    elif rows:
        print(format_table(rows))
    elif not short:
        print("no TCP connections in the capture", file=sys.stderr)
    if short:
        raise short[0]
    return 0
