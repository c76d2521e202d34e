# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog plot``: one TCP connection's timeline as a picture (matplotlib).

    pyelog plot FILE [--session ID] -o PNG

Three panels over time since the session's first event, in milliseconds:

* congestion window (segments): OUT's ``cwnd`` and CWND events;
* RTT (µs): RTT_SAMPLE measurements and smoothed RTT (RTT_SAMPLE, RTT);
* bytes in flight: the highest sequence sent (OUT ``seq + len``, IN_PROBE
  ``snd_nxt``) minus the highest acknowledged (IN_PROBE ``snd_una``, IN ``ack``).

Retransmissions are red vertical lines (RETRANSMIT, and RTO in orange),
state changes grey dashed lines labelled with the new state. Without
``--session`` the connection that moved the most bytes is plotted (its id
is printed on stderr).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import dataclass, field

from pyelog.records.captures import open_capture
from pyelog.records.format import Record
from pyelog.schema.consumer import ConsumerSet
from pyelog.records.output import PrivateFile
from pyelog.records.untrusted import terminal_safe
from pyelog.tools.command import ArgumentParser, ToolError, add_schema_option, run_reporting, uint64_arg
from pyelog.tools.summary import summarize
from pyelog.tools.tcpseq import seq_add, seq_diff, seq_later


@dataclass
class Timeline:
    """The series one plot draws, times in ms since the session's first event."""
    session_id: int
    title: str = ""
    cwnd: list[tuple[float, int]] = field(default_factory=list)
    rtt: list[tuple[float, int]] = field(default_factory=list)
    srtt: list[tuple[float, int]] = field(default_factory=list)
    inflight: list[tuple[float, int]] = field(default_factory=list)
    retransmits: list[float] = field(default_factory=list)
    rtos: list[float] = field(default_factory=list)
    states: list[tuple[float, str]] = field(default_factory=list)


def timeline(records: list[Record], provider_names: dict[int, str], decoder,
             session_id: int) -> Timeline:
    """Collect one session's series from a capture's records."""
    consumer = decoder.get("tcp")
    states = consumer.enums.get("tcp_state", {})
    t = Timeline(session_id)
    t0 = None
    snd_nxt = snd_una = None

    for rec in records:
        if rec.session_id != session_id or provider_names.get(rec.provider_id) != "tcp":
            continue
        if t0 is None:
            t0 = rec.timestamp
        ms = (rec.timestamp - t0) / 1000
        f = consumer.decode(rec.event_id, rec.payload)
        eid = consumer.event_name(rec.event_id)
        if f is None:
            continue
        if eid == "OUT":
            t.cwnd.append((ms, f["cwnd"]))
            if snd_una is None and f["flags"] & 0x02:
                snd_una = f["seq"]                   # our SYN: the first unacknowledged byte
            snd_nxt = seq_later(seq_add(f["seq"], f["len"]), snd_nxt)
        elif eid == "CONN_PARAMS" and f["iss"]:
            # Established: our SYN (ISS) has been acknowledged.
            snd_una = seq_later(seq_add(f["iss"], 1), snd_una)
        elif eid == "CWND":
            t.cwnd.append((ms, f["cwnd"]))
        elif eid == "IN_PROBE":
            snd_una = seq_later(f["snd_una"], snd_una)
            snd_nxt = seq_later(f["snd_nxt"], snd_nxt)
        elif eid == "IN" and f["flags"] & 0x10:
            snd_una = seq_later(f["ack"], snd_una)
        elif eid == "RTT_SAMPLE":
            if f["rtt_us"]:
                t.rtt.append((ms, f["rtt_us"]))
            if f["srtt_us"]:
                t.srtt.append((ms, f["srtt_us"]))
        elif eid == "RTT":
            if f["srtt"]:
                t.srtt.append((ms, f["srtt"]))
        elif eid == "RETRANSMIT":
            t.retransmits.append(ms)
        elif eid == "RTO":
            t.rtos.append(ms)
        elif eid == "STATE_CHANGE":
            t.states.append((ms, states.get(f["new_state"], str(f["new_state"]))))
        if eid in ("OUT", "IN_PROBE", "IN") and snd_nxt is not None and snd_una is not None:
            t.inflight.append((ms, max(0, seq_diff(snd_nxt, snd_una))))
    if t0 is None:
        raise ToolError(f"no TCP events for session {session_id} in the capture")
    return t


def render(t: Timeline, path: str) -> None:
    """Draw the timeline into ``path`` (PNG, or whatever the suffix says)."""
    try:
        import matplotlib
    except ImportError as e:
        raise ToolError(f"matplotlib is needed ({e}): install pyelog's plot extra "
                        "(pip install 'pyelog[plot]'), or apt-get install python3-matplotlib") from None
    matplotlib.use("Agg")          # files only: no display needed
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        # A name in the capture may use letters the font lacks: a detail of
        # the drawing, not something to print among the tool's lines.
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from font")
        _draw(t, path, plt)


def _draw(t: Timeline, path: str, plt) -> None:
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(11, 8))
    panels = [
        (axes[0], "cwnd (segments)", [(t.cwnd, "cwnd", "tab:blue", "steps-post")]),
        (axes[1], "RTT (µs)", [(t.rtt, "sample", "tab:green", None),
                               (t.srtt, "smoothed", "tab:olive", "steps-post")]),
        (axes[2], "bytes in flight", [(t.inflight, "in flight", "tab:purple", "steps-post")]),
    ]
    for ax, label, series in panels:
        drawn = False
        for points, name, color, style in series:
            if not points:
                continue
            xs, ys = zip(*points)
            if style:
                ax.plot(xs, ys, drawstyle=style, color=color, label=name, linewidth=1.2)
            else:
                ax.plot(xs, ys, ".", color=color, label=name, markersize=4)
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no events for this panel in the capture", transform=ax.transAxes,
                    ha="center", va="center", color="grey")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        for x in t.retransmits:
            ax.axvline(x, color="red", linewidth=0.8, alpha=0.7)
        for x in t.rtos:
            ax.axvline(x, color="orange", linewidth=1.2, alpha=0.8)
        for x, _state in t.states:
            ax.axvline(x, color="grey", linestyle="--", linewidth=0.8, alpha=0.6)
        if drawn and len(series) > 1:
            ax.legend(loc="upper right", fontsize="small")
    top = axes[0]
    for x, state in t.states:
        top.annotate(terminal_safe(state), (x, 1.0), xycoords=("data", "axes fraction"), rotation=45,
                     fontsize="x-small", color="dimgrey", ha="left", va="bottom")
    marks = []
    if t.retransmits:
        n = len(t.retransmits)
        marks.append(f"{n} retransmission{'s' if n > 1 else ''} (red)")
    if t.rtos:
        marks.append(f"{len(t.rtos)} RTO{'s' if len(t.rtos) > 1 else ''} (orange)")
    axes[2].set_xlabel("ms since the session's first event"
                       + (" — " + ", ".join(marks) if marks else ""))
    fig.suptitle(t.title or f"TCP session {t.session_id}", y=0.995)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    # A private file like every output (records/output.py), published whole.
    out = PrivateFile(path, publish="close")
    try:
        with os.fdopen(out.fd, "wb") as f:
            out.fd = -1                 # the stream closes it
            fig.savefig(f, dpi=100, format=os.path.splitext(path)[1][1:].lower() or "png")
        out.commit()
    except ValueError as e:             # e.g. "Format 'txt' is not supported"
        out.discard()
        raise ToolError(f"{path}: {e}") from None
    except BaseException:
        out.discard()
        raise
    finally:
        plt.close(fig)


def main(argv: list[str]) -> int:
    """``pyelog plot``: parse ``argv``, draw; the exit status."""
    p = ArgumentParser(prog="pyelog plot", description=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="a capture (.elog, .elog.gz, .jsonl)")
    p.add_argument("--session", type=uint64_arg, metavar="ID", help="session id (default: the busiest)")
    p.add_argument("-o", "--output", required=True, metavar="PNG", help="picture to write")
    add_schema_option(p)
    a = p.parse_args(argv)
    return run_reporting("pyelog plot", lambda: _plot(a))


def _plot(a: argparse.Namespace) -> int:
    decoder = ConsumerSet.with_extra(a.schema)
    with open_capture(a.file) as r:
        records = list(r)
        names = r.provider_names
    rows = {s.session_id: s for s in summarize(records, names, decoder)}
    sid = a.session
    if sid is None:
        busy = [s for s in rows.values() if not s.listener]
        if not busy:
            raise ToolError(f"{a.file}: no TCP connection in the capture")
        sid = max(busy, key=lambda s: (s.bytes_sent + s.bytes_received, s.segs_out)).session_id
        print(f"pyelog plot: session {sid}", file=sys.stderr)
    t = timeline(records, names, decoder, sid)
    s = rows.get(sid)
    if s and s.laddr:
        t.title = (f"TCP session {sid}: {s.laddr}:{s.lport} → {s.raddr}:{s.rport}"
                   f" ({terminal_safe(s.comm) or '?'}, {s.bytes_sent} B sent, {s.bytes_received} B received)")
    render(t, a.output)
    return 0
