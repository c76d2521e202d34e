# SPDX-License-Identifier: BSD-2-Clause
"""What ``pyelog plot`` draws for one TCP connection, built from its events.

A connection is one or two sessions: the socket asked for and, when the
capture holds it too (a connection between two sockets of the traced
host), its peer, the socket with the same four-tuple reversed. Each
socket's session gives one :class:`Direction`: the data that socket sent,
as it recorded it. Times are milliseconds since the connection's first
event; sequence numbers are bytes since the direction's first sequence
number seen (its ISS when the capture has the SYN), unwrapped past 2**32.

The time-sequence graph (tcptrace's, Wireshark's "Stevens/tcptrace") of a
direction is drawn from:

* ``segments``: OUT events with data, ``(ms, start, end)``;
* ``resent``: OUT events whose data starts before the highest sequence
  already sent (a retransmission, by the wire's definition) -- drawn on
  the segment itself in another colour;
* ``retransmits``: RETRANSMIT events that were sent (err 0), ``(ms, seq)``:
  the kernel's own word, present at the default level where OUT is not;
* ``rtos``: RTO events, placed at the oldest unacknowledged byte;
* ``acks`` and ``window``: what the peer advertised as the socket received
  it (IN with ACK): the cumulative ACK, and ACK + window (scaled by the
  peer's window scale, unscaled on SYNs), both as step lines;
* ``sacks``: SACK blocks of received segments, ``(ms, start, end)``.

Below it, per direction: cwnd and ssthresh in segments (OUT's, CWND's and
RTO's cwnd; CWND's ssthresh unless "infinite"), RTT samples and smoothed
RTT (every figure :func:`pyelog.tools.tcprtt.rtt_figures` finds), and
bytes in flight (highest sequence sent minus highest acknowledged).

The lists hold every point of the (optionally windowed) capture: thinning
for drawing is the renderer's business, so these counts are the events'.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pyelog.records.eventlog import SESSION_ID_NONE
from pyelog.records.format import Record
from pyelog.tools.command import ToolError
from pyelog.tools.summary import tcp_consumer
from pyelog.tools.tcprtt import SAMPLE, rtt_figures
from pyelog.tools.tcpseq import seq_add, seq_diff, seq_later

__all__ = ["Direction", "ConnectionPlot", "build", "FIN", "SYN", "ACK"]

FIN, SYN, ACK = 0x01, 0x02, 0x10
WSCALE_OPT = 0x02                 # flag_tcp_opts WSCALE
INFINITE_SSTHRESH = 0x7FFFFFFF    # Linux's "no ssthresh yet"

Point = tuple[float, int]
Span = tuple[float, int, int]


@dataclass
class Direction:
    """One direction of a connection: what one socket sent, as its session recorded it."""
    session_id: int
    label: str = ""
    segments: list[Span] = field(default_factory=list)
    resent: list[Span] = field(default_factory=list)
    retransmits: list[Point] = field(default_factory=list)
    rtos: list[Point] = field(default_factory=list)
    acks: list[Point] = field(default_factory=list)
    window: list[Point] = field(default_factory=list)
    sacks: list[Span] = field(default_factory=list)
    cwnd: list[Point] = field(default_factory=list)
    ssthresh: list[Point] = field(default_factory=list)
    rtt: list[Point] = field(default_factory=list)
    srtt: list[Point] = field(default_factory=list)
    inflight: list[Point] = field(default_factory=list)
    states: list[tuple[float, str]] = field(default_factory=list)

    @property
    def data_bytes(self) -> int:
        """Highest relative sequence sent: how far this direction's data went."""
        return max((end for _, _, end in self.segments), default=0)

    #: The series that are step lines (a value holds until the next point).
    STEPS = ("acks", "window", "cwnd", "ssthresh", "srtt", "inflight")
    #: The series that are separate marks or spans.
    MARKS = ("segments", "resent", "retransmits", "rtos", "sacks", "rtt", "states")


@dataclass
class ConnectionPlot:
    """Everything one picture shows: directions share one time axis (ms)."""
    title: str
    directions: list[Direction]
    start_ms: float = 0.0
    end_ms: float = 0.0


class _Unwrap:
    """Sequence numbers as bytes from the first one seen, unwrapped (each
    value is taken as the nearest to the previous one, RFC 793's rule)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.rel = 0
        self.first: int | None = None

    def __call__(self, seq: int) -> int:
        if self.last is None:
            self.first = self.last = seq
            return 0
        self.rel += seq_diff(seq, self.last)
        self.last = seq
        return self.rel


class _DirectionBuilder:
    """Folds one session's events into its :class:`Direction`."""

    def __init__(self, session_id: int, label: str, states: dict[int, str]) -> None:
        self.d = Direction(session_id, label)
        self.state_names = states
        self.rel = _Unwrap()
        self.snd_max: int | None = None       # highest seq + len sent (absolute)
        self.snd_una: int | None = None       # highest acknowledged (absolute)
        self.params_shift: int | None = None  # CONN_PARAMS' snd_wscale
        self.syn_ws_ours = False
        self.syn_ws_peer: int | None = None

    def _shift(self) -> int:
        if self.params_shift is not None:
            return self.params_shift
        if self.syn_ws_ours and self.syn_ws_peer is not None:
            return min(self.syn_ws_peer, 14)
        return 0

    def add(self, ms: float, name: str | None, f: dict) -> None:
        d = self.d
        for us, kind in rtt_figures(name, f):
            (d.rtt if kind == SAMPLE else d.srtt).append((ms, us))
        if name == "OUT":
            self._out(ms, f)
        elif name == "IN":
            self._in(ms, f)
        elif name == "IN_PROBE":
            self._acked(f["snd_una"])
            self.snd_max = seq_later(f["snd_nxt"], self.snd_max)
            self._inflight(ms)
        elif name in ("CONN_PARAMS", "CONN_PARAMS_REPLAY"):
            self.params_shift = min(f["snd_wscale"], 14)
            if name == "CONN_PARAMS" and f["iss"]:
                self._acked(seq_add(f["iss"], 1))      # established: our SYN is acknowledged
        elif name == "CWND":
            d.cwnd.append((ms, f["cwnd"]))
            if f["ssthresh"] < INFINITE_SSTHRESH:
                d.ssthresh.append((ms, f["ssthresh"]))
        elif name == "RETRANSMIT":
            if not f.get("err", 0):
                d.retransmits.append((ms, self.rel(f["seq"])))
        elif name == "RTO":
            if f["cwnd"]:
                d.cwnd.append((ms, f["cwnd"]))
            if self.snd_una is not None:
                d.rtos.append((ms, self.rel(self.snd_una)))
            elif self.snd_max is not None:
                d.rtos.append((ms, self.rel(self.snd_max)))
            else:
                d.rtos.append((ms, 0))
        elif name == "STATE_CHANGE":
            d.states.append((ms, self.state_names.get(f["new_state"], str(f["new_state"]))))

    def _acked(self, ack: int) -> None:
        if ack:
            self.snd_una = seq_later(ack, self.snd_una)

    def _inflight(self, ms: float) -> None:
        if self.snd_max is not None and self.snd_una is not None:
            self.d.inflight.append((ms, max(0, seq_diff(self.snd_max, self.snd_una))))

    def _out(self, ms: float, f: dict) -> None:
        d = self.d
        seq, length, flags = f["seq"], f["len"], f["flags"]
        if flags & SYN:
            self.syn_ws_ours = bool(f["opts"] & WSCALE_OPT)
        if f.get("cwnd"):
            d.cwnd.append((ms, f["cwnd"]))
        if f.get("snd_una"):
            self._acked(f["snd_una"])
        start = self.rel(seq)
        if length:
            # Below what was already sent: this data goes out again. The
            # event's own snd_nxt says the same where it is known (0 on
            # segments of a connection request).
            old = ((self.snd_max is not None and seq_diff(seq, self.snd_max) < 0)
                   or (f.get("snd_nxt", 0) and seq_diff(seq, f["snd_nxt"]) < 0))
            (d.resent if old else d.segments).append((ms, start, start + length))
        end = seq_add(seq, length + (1 if flags & (SYN | FIN) else 0))
        self.snd_max = seq_later(end, self.snd_max)
        self._inflight(ms)

    def _in(self, ms: float, f: dict) -> None:
        d = self.d
        flags = f["flags"]
        if flags & SYN and f["opts"] & WSCALE_OPT:
            self.syn_ws_peer = f["wscale"]
        if flags & ACK:
            ack = self.rel(f["ack"])
            self._acked(f["ack"])
            d.acks.append((ms, ack))
            d.window.append((ms, ack + (f["win"] << (0 if flags & SYN else self._shift()))))
            for i in range(1, min(f["nsack"], 4) + 1):
                start, end = f[f"sack_start{i}"], f[f"sack_end{i}"]
                lo = self.rel(start)
                d.sacks.append((ms, lo, lo + seq_diff(end, start)))
            self._inflight(ms)


def _clip(d: Direction, lo: float | None, hi: float | None) -> None:
    """Keep the points within [lo, hi] ms; a step series keeps its value
    at ``lo`` (its last earlier point, moved to ``lo``)."""
    def inside(t: float) -> bool:
        return (lo is None or t >= lo) and (hi is None or t <= hi)
    for name in Direction.STEPS + Direction.MARKS:
        points = getattr(d, name)
        kept = [p for p in points if inside(p[0])]
        if name in Direction.STEPS and lo is not None:
            before = [p for p in points if p[0] < lo]
            if before:
                kept.insert(0, (lo, *before[-1][1:]))
        setattr(d, name, kept)


def build(records: Iterable[Record], provider_names: dict[int, str], decoder,
          sessions: list[tuple[int, str]], title: str = "",
          from_ms: float | None = None, to_ms: float | None = None) -> ConnectionPlot:
    """The plot of one connection: ``sessions`` lists ``(session id, label)``
    of its sockets in the capture (one or two), each becoming a
    :class:`Direction`; ``from_ms``/``to_ms`` keep a window of the
    connection's time (ms since its first event).

    Raises ToolError when the capture has no TCP event of the first session.
    """
    consumer = tcp_consumer(decoder)
    states = consumer.enums.get("tcp_state", {})
    decode, name_of = consumer.decode, consumer.event_name
    builders = {sid: _DirectionBuilder(sid, label, states) for sid, label in sessions}
    first_id = sessions[0][0]
    seen_first = False
    t0 = t_end = None
    for rec in records:
        b = builders.get(rec.session_id)
        if b is None or rec.session_id == SESSION_ID_NONE or provider_names.get(rec.provider_id) != "tcp":
            continue
        if t0 is None:
            t0 = rec.timestamp
        t_end = rec.timestamp
        seen_first = seen_first or rec.session_id == first_id
        f = decode(rec.event_id, rec.payload)
        if f is not None:
            b.add((rec.timestamp - t0) / 1000, name_of(rec.event_id), f)
    if not seen_first:
        raise ToolError(f"no TCP events for session {first_id} in the capture")
    directions = [builders[sid].d for sid, _ in sessions]
    start, end = 0.0, (t_end - t0) / 1000
    if from_ms is not None or to_ms is not None:
        for d in directions:
            _clip(d, from_ms, to_ms)
        start = max(start, from_ms) if from_ms is not None else start
        end = min(end, to_ms) if to_ms is not None else end
    return ConnectionPlot(title or f"TCP session {first_id}", directions, start, end)
