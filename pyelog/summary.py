"""``pyelog summary``: one row per TCP connection of a capture, like bcc's tcplife.

    pyelog summary FILE [FILE...] [--json] [--listeners] [--schema FILE|DIR]

Each TCP session (socket) of the capture becomes a row: owner, addresses and
ports, duration, bytes each way, segments, retransmissions, RTT range and
the last state seen. Everything comes from the TCP schema's events:

* addresses: CONN_SET_IP_V4/V6; owner: SESSION_CREATE / CONN_OWNER;
* duration: SESSION_CREATE (or the first event) to SESSION_END (or the last);
* bytes sent: the highest ``seq + len`` of OUT minus the first data
  sequence number (CONN_PARAMS' ISS + 1, else the first OUT's seq; SYN and
  FIN take one sequence number each and are not counted), so
  retransmitted bytes count once; without sequence numbers, the sum of
  OUT lengths;
* bytes received: the highest ``ack`` we sent (OUT) minus IRS + 1, less the
  peer's FIN when we acknowledged it; without CONN_PARAMS, the sum of
  IN_PROBE lengths;
* segments: OUT (as sock_ops sees them: a TSO/GSO burst counts once) and
  IN_PROBE (every segment received on an established socket);
* retransmissions: RETRANSMIT's segment counts;
* RTT: min/max over RTT_SAMPLE (TRACE level) and RTT (INFO) measurements, µs;
* state: the last STATE_CHANGE (SESSION_END alone reads CLOSED).

Listening sockets are left out unless ``--listeners`` is given.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Iterable

from .format import SESSION_CREATE_ID, SESSION_END_ID, ElogFormatError, Record

CONN_SET_IP_V4, CONN_SET_IP_V6, CONN_PARAMS, CONN_OWNER = 0, 1, 3, 5
IN, OUT, RTT, RTT_SAMPLE, STATE_CHANGE, RETRANSMIT, IN_PROBE = 100, 101, 300, 301, 1000, 1001, 1005
FIN = 0x01
# States in which the peer's FIN has been received.
_PEER_FIN_STATES = {"CLOSE_WAIT", "LAST_ACK", "CLOSING", "TIME_WAIT"}
_MOD = 1 << 32


def _seq_diff(a: int, b: int) -> int:
    """a - b in 32-bit sequence space (signed, for wrapped sequence numbers)."""
    d = (a - b) % _MOD
    return d - _MOD if d >= _MOD // 2 else d


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
    bytes_sent: int = 0
    bytes_received: int = 0
    segs_out: int = 0
    segs_in: int = 0
    retransmits: int = 0
    rtt_min_us: int | None = None
    rtt_max_us: int | None = None
    state: str = ""
    # Working state, not reported.
    _iss: int | None = field(default=None, repr=False)
    _irs: int | None = field(default=None, repr=False)
    _snd_base: int | None = field(default=None, repr=False)
    _snd_max: int | None = field(default=None, repr=False)
    _out_len_sum: int = field(default=0, repr=False)
    _in_len_sum: int = field(default=0, repr=False)
    _max_ack: int | None = field(default=None, repr=False)
    _max_ack_after_fin: bool = field(default=False, repr=False)
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

    def _rtt(self, us: int) -> None:
        if us <= 0:
            return
        self.rtt_min_us = us if self.rtt_min_us is None else min(self.rtt_min_us, us)
        self.rtt_max_us = us if self.rtt_max_us is None else max(self.rtt_max_us, us)

    def add(self, rec: Record, name: str | None, f: dict | None, states: dict[int, str]) -> None:
        """Fold one event of this session in (``f``: its decoded fields)."""
        # min/max: a dump-state replay's SESSION_CREATE carries the (older)
        # creation time.
        self.start_us = min(self.start_us, rec.timestamp) if self.start_us else rec.timestamp
        self.end_us = max(self.end_us, rec.timestamp)
        eid = rec.event_id
        if eid == SESSION_END_ID:
            self.ended = True
            self.state = self.state or "CLOSED"
            return
        if f is None:
            return
        if eid == SESSION_CREATE_ID:
            self.pid = f.get("pid", 0) or self.pid
            self.comm = f.get("comm", "") or self.comm
        elif eid == CONN_OWNER:
            self.pid = f.get("pid", 0) or self.pid
            self.comm = f.get("comm", "") or self.comm
        elif eid in (CONN_SET_IP_V4, CONN_SET_IP_V6):
            if not self.laddr:
                self.family = 4 if eid == CONN_SET_IP_V4 else 6
                self.laddr, self.lport = f["src_addr"], f["src_port"]
                self.raddr, self.rport = f["dst_addr"], f["dst_port"]
        elif eid == CONN_PARAMS:
            if f["iss"] or f["irs"]:
                self._iss, self._irs = f["iss"], f["irs"]
        elif eid == OUT:
            self.segs_out += 1
            seq, length, flags = f["seq"], f["len"], f["flags"]
            self._out_len_sum += length
            if self._snd_base is None:
                # A SYN occupies its own sequence number: data starts after it.
                self._snd_base = (seq + 1) % _MOD if flags & 0x02 else seq
            if length:
                end = (seq + length) % _MOD
                if self._snd_max is None or _seq_diff(end, self._snd_max) > 0:
                    self._snd_max = end
            if flags & 0x10:  # ACK: what we had received by then
                ack = f["ack"]
                if self._max_ack is None or _seq_diff(ack, self._max_ack) >= 0:
                    self._max_ack = ack
                    self._max_ack_after_fin = self._fin_received
        elif eid == IN:
            if f["flags"] & FIN:
                self._fin_received = True
        elif eid == IN_PROBE:
            self.segs_in += 1
            self._in_len_sum += f["len"]
        elif eid == RETRANSMIT:
            self.retransmits += max(1, f.get("segs", 1))
        elif eid == RTT_SAMPLE:
            self._rtt(f["rtt_us"])
        elif eid == RTT:
            self._rtt(f["rtt"])
            self._rtt(f["min_rtt"])
        elif eid == STATE_CHANGE:
            self.state = states.get(f["new_state"], str(f["new_state"]))
            if self.state in _PEER_FIN_STATES:
                self._fin_received = True

    def finish(self) -> "TcpSession":
        """Turn the sequence-space bookkeeping into byte counts."""
        base = (self._iss + 1) % _MOD if self._iss is not None else self._snd_base
        if base is not None and self._snd_max is not None:
            self.bytes_sent = max(0, _seq_diff(self._snd_max, base))
        else:
            self.bytes_sent = self._out_len_sum
        if self._irs is not None and self._max_ack is not None:
            got = _seq_diff(self._max_ack, (self._irs + 1) % _MOD)
            if self._max_ack_after_fin and got > 0:
                got -= 1          # the ack covers the peer's FIN, not a byte
            self.bytes_received = max(0, got)
        else:
            self.bytes_received = self._in_len_sum
        return self


def summarize(records: Iterable[Record], provider_names: dict[int, str], decoder) -> list[TcpSession]:
    """Fold the TCP events of ``records`` into one :class:`TcpSession` per session, in order of appearance."""
    consumer = decoder.get("tcp") if hasattr(decoder, "get") else None
    if consumer is None:
        raise ElogFormatError("no TCP schema available to decode the capture")
    states = consumer.enums.get("tcp_state", {})
    decode, name_of = consumer.decode, consumer.event_name
    sessions: dict[int, TcpSession] = {}
    for rec in records:
        if provider_names.get(rec.provider_id) != "tcp":
            continue
        s = sessions.get(rec.session_id)
        if s is None:
            s = sessions[rec.session_id] = TcpSession(rec.session_id)
        s.add(rec, name_of(rec.event_id), decode(rec.event_id, rec.payload), states)
    return [s.finish() for s in sessions.values()]


def _us(v: int | None) -> str:
    return "-" if v is None else str(v)


def format_table(rows: list[TcpSession]) -> str:
    """A tcplife-like table."""
    head = ("SESSION", "PID", "COMM", "LOCAL", "REMOTE", "MS", "TX_BYTES", "RX_BYTES",
            "SEGS_OUT", "SEGS_IN", "RETRANS", "RTT_MIN_US", "RTT_MAX_US", "STATE")
    lines = [head]
    for s in rows:
        def ep(addr: str, port: int) -> str:
            if not addr:
                return "?"
            return f"[{addr}]:{port}" if s.family == 6 else f"{addr}:{port}"
        lines.append((str(s.session_id), str(s.pid or "-"), s.comm or "-",
                      ep(s.laddr, s.lport), ep(s.raddr, s.rport), f"{s.duration_ms:.3f}",
                      str(s.bytes_sent), str(s.bytes_received), str(s.segs_out), str(s.segs_in),
                      str(s.retransmits), _us(s.rtt_min_us), _us(s.rtt_max_us),
                      (s.state or "?") + ("" if s.ended else "*")))
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    right = {1, 5, 6, 7, 8, 9, 10, 11, 12}
    out = []
    for r in lines:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def main(argv: list[str], decoder_for) -> int:
    """``pyelog summary``; ``decoder_for(schemas)`` supplies the TCP schema consumer."""
    from .convert import open_capture
    p = argparse.ArgumentParser(
        prog="pyelog summary", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[1] + "\nA '*' after the state: the session had "
                                                  "not ended when the capture stopped.")
    p.add_argument("files", nargs="+", metavar="FILE", help="captures (.elog, .elog.gz, .jsonl)")
    p.add_argument("--json", action="store_true", help="one JSON object per connection")
    p.add_argument("--listeners", action="store_true", help="include listening sockets")
    p.add_argument("--schema", action="append", default=[], metavar="FILE|DIR",
                   help="extra schema file or directory")
    a = p.parse_args(argv)
    try:
        decoder = decoder_for(a.schema)
        rows: list[TcpSession] = []
        for path in a.files:
            with open_capture(path) as r:
                rows += summarize(r, r.provider_names, decoder)
    except OSError as e:
        print(f"pyelog summary: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    except ElogFormatError as e:
        print(f"pyelog summary: {e.message}", file=sys.stderr)
        return 1
    except Exception as e:  # UsageError from the schema loader, and the like
        print(f"pyelog summary: {e}", file=sys.stderr)
        return 1
    if not a.listeners:
        rows = [s for s in rows if not s.listener]
    if a.json:
        for s in rows:
            print(json.dumps(s.report()))
    elif rows:
        print(format_table(rows))
    else:
        print("no TCP connections in the capture", file=sys.stderr)
    return 0
