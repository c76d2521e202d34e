# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog plot`` on a capture made here: a transfer both ways across a
lossy router (tests/helpers/wire.py LossyPath, one MSS per frame), recorded
at VERBOSE by ``pyelog`` as users run it.

The series the plot is built from (before any thinning) must be the
events': every OUT with data is one segment bar (new or resent), the
resent bars start where the kernel's RETRANSMIT events say data went out
again, every RETRANSMIT (err 0) is one mark at its sequence number, every
IN with ACK one point of the ACK and window lines, every SACK block one
span; both sockets' directions are drawn. The counts are taken from the
decoded events directly, not through the plot's code. Then the PNG (with
its five panels) and the self-contained HTML page are written.
"""
from __future__ import annotations

import collections
import socket
import threading

import pytest

from pyelog.records.format import ElogReader
from pyelog.schema.consumer import ConsumerSet
from pyelog.tools.plot import connection_plot
from pyelog.tools.plotdraw import draw_html, draw_picture
from pyelog.tools.tcpseq import seq_diff
from tests.helpers.netns import connected, so_cookie
from tests.helpers.recorder import Recorder
from tests.helpers.wire import LossyPath
from tests.test_query import connections_vs_summary

pytestmark = pytest.mark.kernel

TCP = ConsumerSet.default().get("tcp")
UP, DOWN = 3_000_000, 1_000_000


def _pump(sock: socket.socket, n: int) -> None:
    sock.sendall(b"p" * n)
    sock.shutdown(socket.SHUT_WR)


def _drain(sock: socket.socket, n: int) -> None:
    got = 0
    while chunk := sock.recv(1 << 20):
        got += len(chunk)
    assert got == n


def lossy_transfer(tmp_path):
    path = tmp_path / "lossy.elog"
    with LossyPath(drop_permille=40, gso_max_segs=1) as lp:
        rec = Recorder(["-c", "tcp", "VERBOSE", "-b", "8M", "-o", str(path),
                        "--netns", lp.client.name, "--netns", lp.server.name])
        try:
            srv, cli, acc = connected(lp.server, 7301, host=lp.server_addr(4), client_ns=lp.client)
            srv.close()
            for s in (cli, acc):
                s.settimeout(120)
            cookies = so_cookie(cli), so_cookie(acc)
            threads = [threading.Thread(target=_pump, args=(cli, UP)),
                       threading.Thread(target=_pump, args=(acc, DOWN))]
            for t in threads:
                t.start()
            readers = [threading.Thread(target=_drain, args=(acc, UP)),
                       threading.Thread(target=_drain, args=(cli, DOWN))]
            for t in readers:
                t.start()
            for t in threads + readers:
                t.join(120)
            cli.close()
            acc.close()
            dropped = lp.dropped()
        finally:
            assert rec.stop(settle=1.0) == 0, rec.stderr
    assert dropped > 0, "the router dropped nothing"
    return path, cookies


def events_of(path, session_id):
    """(name, fields) of one session's TCP events, decoded here."""
    with ElogReader(path) as r:
        return [(TCP.event_name(rec.event_id), TCP.decode(rec.event_id, rec.payload))
                for rec in r if rec.session_id == session_id]


def test_plot_of_a_lossy_transfer_matches_its_events(tmp_path, capsys):
    path, (client, server) = lossy_transfer(tmp_path)
    with ElogReader(path) as r:
        recs, names = list(r), r.provider_names
    plot = connection_plot(recs, names, ConsumerSet.default(), client)
    assert [d.session_id for d in plot.directions] == [client, server]
    for d, sent in zip(plot.directions, (UP, DOWN)):
        ev = events_of(path, d.session_id)
        outs = [f for n, f in ev if n == "OUT" and f["len"]]
        retrans = [f for n, f in ev if n == "RETRANSMIT" and not f["err"]]
        acks = [f for n, f in ev if n == "IN" and f["flags"] & 0x10]
        sacks = sum(min(f["nsack"], 4) for f in acks)
        assert len(d.segments) + len(d.resent) == len(outs)
        assert len(d.retransmits) == len(retrans) and len(d.acks) == len(d.window) == len(acks)
        assert len(d.sacks) == sacks
        assert len(d.rtos) == sum(1 for n, _ in ev if n == "RTO")
        # The data went across: the highest byte drawn is the application's
        # last byte (the SYN is byte 0, data 1..sent).
        assert d.data_bytes == sent + 1
        # Resent bars are where the kernel says it retransmitted: the
        # multiset of their start sequence numbers is RETRANSMIT's.
        base = next(f["seq"] for n, f in ev if n == "OUT" and f["flags"] & 0x02)
        want = collections.Counter(seq_diff(f["seq"], base) for f in retrans)
        assert collections.Counter(lo for _, lo, _ in d.resent) == want
        assert collections.Counter(seq for _, seq in d.retransmits) == want
    # The uploader lost data on the way and recovered with SACK: it shows.
    up = plot.directions[0]
    assert up.resent and up.sacks and up.rtt and up.cwnd
    png, html = tmp_path / "lossy.png", tmp_path / "lossy.html"
    titles = draw_picture(plot, str(png))
    assert titles == [f"time-sequence: {d.label}" for d in plot.directions] + [
        "cwnd / ssthresh (segments)", "RTT (µs)", "bytes in flight"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert draw_html(plot, str(html)) == titles
    page = html.read_text()
    assert "Plotly.newPlot" in page and "<script src=" not in page
    # A zoomed window holds only its part.
    mid = up.segments[len(up.segments) // 2][0]
    z = connection_plot(recs, names, ConsumerSet.default(), client, from_ms=mid).directions[0]
    assert 0 < len(z.segments) < len(up.segments) and min(t for t, _, _ in z.segments) >= mid
    # pyelog query's connections view on this real, lossy capture: pyelog
    # summary's rows, and the bytes the test's applications moved.
    summary, view = connections_vs_summary(path, capsys)
    assert view == summary
    moved = {r["session_id"]: (r["bytes_sent"], r["bytes_received"]) for r in view}
    assert moved[client] == (UP, DOWN) and moved[server] == (DOWN, UP)
