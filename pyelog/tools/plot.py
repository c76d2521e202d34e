# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog plot``: one TCP connection as TCP engineers draw it.

    pyelog plot FILE [--session ID] [--from MS] [--to MS] -o OUT.png|.svg|.pdf|.html

Panels over time since the connection's first event (ms), top to bottom:

* the time-sequence graph of each direction (as tcptrace and Wireshark
  draw it): segments sent as bars from their first to their last byte,
  resent data in red on the segment itself, RETRANSMIT (x) and RTO
  (triangle) marks, the ACK line and the receive-window line (ACK + the
  window the peer advertised, scaled), SACK blocks received;
* cwnd and ssthresh (segments);
* RTT: measured samples (dots) and the smoothed RTT, from every event that
  carries one (RTT_SAMPLE, RTT, RTO, IN_PROBE, RCV_SPACE);
* bytes in flight.

When the capture holds both sockets of the connection (the four-tuple
reversed), both directions are drawn, each from its sender's session (the
peer's only when it sent data: a socket that only acknowledged adds a
flat graph).
Segments, ACKs and SACK blocks come from IN/OUT, VERBOSE events (recorded
by default); a capture made at INFO or WARN still has the RETRANSMIT and
RTO marks, cwnd at each RTO and the RTT figures.

An ``.html`` output is an interactive page (plotly: zoom, pan, hover),
self-contained; other suffixes are pictures (matplotlib). Series with more
points than the picture has room for are thinned per time column; the
counts in the legends are the events'. Without ``--session`` the
connection that moved the most bytes is plotted (its id is printed on
stderr).
"""
from __future__ import annotations

import argparse
import sys

from pyelog.records.captures import open_capture
from pyelog.records.untrusted import terminal_safe
from pyelog.schema.consumer import ConsumerSet
from pyelog.tools.command import ArgumentParser, ToolError, add_schema_option, run_reporting, uint64_arg
from pyelog.tools.plotdata import ConnectionPlot, build
from pyelog.tools.plotdraw import draw_html, draw_picture
from pyelog.tools.summary import TcpSession, summarize


def _ms(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of milliseconds: {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"milliseconds must be a finite number >= 0: {text!r}")
    return v


def main(argv: list[str]) -> int:
    """``pyelog plot``: parse ``argv``, draw; the exit status."""
    p = ArgumentParser(prog="pyelog plot", description=__doc__.split("\n\n", 1)[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="a capture (.elog, .elog.gz, .jsonl)")
    p.add_argument("--session", type=uint64_arg, metavar="ID", help="session id (default: the busiest)")
    p.add_argument("--from", dest="from_ms", type=_ms, metavar="MS",
                   help="start of the window shown, ms since the connection's first event")
    p.add_argument("--to", dest="to_ms", type=_ms, metavar="MS", help="end of the window shown (ms)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="picture to write (.png, .svg, .pdf) or interactive page (.html)")
    add_schema_option(p)
    a = p.parse_args(argv)
    if a.from_ms is not None and a.to_ms is not None and a.to_ms <= a.from_ms:
        p.error(f"--to {a.to_ms:g} is not after --from {a.from_ms:g}")
    return run_reporting("pyelog plot", lambda: _plot(a))


def _endpoint(s: TcpSession, local: bool) -> str:
    addr, port = (s.laddr, s.lport) if local else (s.raddr, s.rport)
    return f"[{addr}]:{port}" if s.family == 6 else f"{addr}:{port}"


def peer_of(s: TcpSession, rows: list[TcpSession]) -> TcpSession | None:
    """The other socket of ``s``'s connection in the capture (the four-tuple
    reversed, overlapping in time), or None."""
    if not s.laddr:
        return None
    for o in rows:
        if (o.session_id != s.session_id and (o.laddr, o.lport, o.raddr, o.rport)
                == (s.raddr, s.rport, s.laddr, s.lport)
                and o.start_us <= s.end_us and s.start_us <= o.end_us):
            return o
    return None


def connection_plot(records: list, names: dict[int, str], decoder, session_id: int | None,
                    from_ms: float | None = None, to_ms: float | None = None) -> ConnectionPlot:
    """The :class:`ConnectionPlot` of ``session_id``'s connection (None: the
    busiest), with its peer's direction when the capture holds the peer."""
    rows = [s for s in summarize(records, names, decoder) if not s.listener]
    by_id = {s.session_id: s for s in rows}
    if session_id is None:
        if not rows:
            raise ToolError("no TCP connection in the capture")
        session_id = max(rows, key=lambda s: (s.bytes_sent + s.bytes_received, s.segs_out)).session_id
        print(f"pyelog plot: session {session_id}", file=sys.stderr)
    s = by_id.get(session_id)
    sessions = [(session_id, "")]
    title = ""
    if s is not None and s.laddr:
        sessions = [(session_id, f"{_endpoint(s, True)} → {_endpoint(s, False)} (session {session_id})")]
        peer = peer_of(s, rows)
        # The peer's direction is drawn when it carried data: a socket that
        # only acknowledged has a flat graph, and its ACKs are in ours.
        if peer is not None and peer.bytes_sent:
            sessions.append((peer.session_id, f"{_endpoint(peer, True)} → {_endpoint(peer, False)} "
                                              f"(session {peer.session_id})"))
        title = (f"TCP {_endpoint(s, True)} ↔ {_endpoint(s, False)}: {terminal_safe(s.comm) or '?'}, "
                 f"{s.bytes_sent} B sent, {s.bytes_received} B received, {s.retransmits} retransmitted")
        if peer is not None:
            title += (f"; both sockets (sessions {session_id}, {peer.session_id})" if peer.bytes_sent else
                      f"; the peer socket (session {peer.session_id}) sent no data")
    return build(records, names, decoder, sessions, title, from_ms, to_ms)


def _plot(a: argparse.Namespace) -> int:
    decoder = ConsumerSet.with_extra(a.schema)
    with open_capture(a.file) as r:
        records = list(r)
        names = r.provider_names
    if not records:
        raise ToolError(f"{a.file}: no TCP connection in the capture")
    plot = connection_plot(records, names, decoder, a.session, a.from_ms, a.to_ms)
    if a.output.lower().endswith((".html", ".htm")):
        draw_html(plot, a.output)
    else:
        draw_picture(plot, a.output)
    return 0
