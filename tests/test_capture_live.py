# SPDX-License-Identifier: BSD-2-Clause
"""Live capture through the command line, on the running kernel.

The recorder runs as users run it (``python -m pyelog.cli ...`` in the
background, ``-p`` so that its ``[Providers]`` line says when it is
attached); traffic is made inside namespaces of the test's own. Checks:
``-o dir=`` with ``-f tcp``, ``--duration``, live text and ``--json``, and
``pyelog summary`` against the traffic the test made. (SIGINT and SIGKILL:
tests/test_teardown.py; rotation: tests/test_rotation.py; the status line
on a terminal: tests/test_status_line.py.)
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time

import pytest

from pyelog.records.eventlog import SESSION_CREATE_ID
from pyelog.records.format import ElogReader
from tests.helpers.netns import exchange_alone as exchange
from tests.helpers.recorder import PYELOG, Recorder, assert_header_counts, records

pytestmark = pytest.mark.kernel


def test_dir_output_with_tcp_names(tmp_path):
    out = tmp_path / "sessions"
    rec = Recorder(["-s", "-c", "tcp", "-o", f"dir={out}", "-f", "tcp"])
    try:
        a = exchange(5101)
        b = exchange(5102)
    finally:
        assert rec.stop() == 0
    names = sorted(os.listdir(out))
    # Every session of ours has its file, named <cookie>_<lport>_<raddr>_<rport>.elog.
    for info, port in ((a, 5101), (b, 5102)):
        cli = [n for n in names if n.startswith(f"{info.client}_")]
        srv = [n for n in names if n.startswith(f"{info.server}_")]
        assert cli == [f"{info.client}_{info.client_port}_127.0.0.1_{port}.elog"], names
        assert srv == [f"{info.server}_{port}_127.0.0.1_{info.client_port}.elog"], names
        assert any(n.startswith(f"{info.listener}_{port}_") for n in names), names
    total = 0
    for n in names:
        recs = records(out / n)
        assert recs and recs[0].event_id == SESSION_CREATE_ID, n
        assert len({r.session_id for r in recs}) == 1
        total += assert_header_counts(out / n)
        with ElogReader(out / n) as r:
            assert r.header.dropped_events == 0
    assert total == rec.events_received()


def test_duration_stops_by_itself(tmp_path):
    path = tmp_path / "d.elog"
    t0 = time.monotonic()
    p = subprocess.run(PYELOG + ["-s", "-c", "tcp", "--duration", "3", "-o", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "[Stats]" in p.stderr
    assert time.monotonic() - t0 >= 3
    if path.stat().st_size:        # traffic of others may or may not have come by
        assert_header_counts(path)


def test_live_text_and_json(tmp_path):
    out = tmp_path / "live.txt"
    with open(out, "w") as f:
        rec = Recorder(["-e", "-c", "tcp", "INFO"], stdout=f)
        try:
            info = exchange(5105)
        finally:
            assert rec.stop() == 0
    text = out.read_text()
    assert f"[tcp][{info.client}][SESSION_CREATE]" in text
    assert f"IPv4 connection 127.0.0.1:{info.client_port} -> 127.0.0.1:5105" in text
    assert re.search(r"^\[ ?\d+\][0-9a-f]{4,}::\d\d+:\d\d:\d\d\.\d{6} \[tcp\]", text, re.M)
    assert "\033[K" not in rec.stderr          # no status line: stderr is not a terminal

    jl = tmp_path / "live.jsonl"
    with open(jl, "w") as f:
        rec = Recorder(["--json", "-c", "tcp", "INFO"], stdout=f)
        try:
            info = exchange(5106)
        finally:
            assert rec.stop() == 0
    lines = [json.loads(line) for line in jl.read_text().splitlines()]
    assert lines[0]["elog"] == 1 and lines[0]["providers"]
    events = lines[1:]
    mine = [e for e in events if e["session_id"] == info.client]
    assert mine[0]["event"] == "SESSION_CREATE"
    conn = next(e for e in mine if e["event"] == "CONN_SET_IP_V4")
    assert conn["fields"]["dst_port"] == 5106 and conn["fields"]["src_port"] == info.client_port
    assert mine[-1]["event"] == "SESSION_END"
    # A live JSON stream is a capture: it converts to elog(5).
    back = tmp_path / "back.elog"
    p = subprocess.run(PYELOG + ["convert", str(jl), str(back)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert len(records(back)) == len(events)


def test_summary_matches_the_traffic(tmp_path):
    path = tmp_path / "sum.elog"
    rec = Recorder(["-c", "tcp", "TRACE", "-o", str(path)])
    try:
        info = exchange(5107, send=300_000, reply=4321)
        info6 = exchange(5108, send=12345, reply=99, host="::1", family=socket.AF_INET6)
    finally:
        assert rec.stop() == 0
    p = subprocess.run(PYELOG + ["summary", str(path), "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rows = {r["session_id"]: r for r in map(json.loads, p.stdout.splitlines())}
    for i, sent, got, port, addr in ((info, 300_000, 4321, 5107, "127.0.0.1"),
                                     (info6, 12345, 99, 5108, "::1")):
        cli, srv = rows[i.client], rows[i.server]
        assert (cli["bytes_sent"], cli["bytes_received"]) == (sent, got), cli
        assert (srv["bytes_sent"], srv["bytes_received"]) == (got, sent), srv
        assert (cli["laddr"], cli["lport"], cli["raddr"], cli["rport"]) == (addr, i.client_port, addr, port)
        assert cli["ended"] and srv["ended"]
        assert cli["segs_out"] >= 3 and srv["segs_in"] >= 1
        assert cli["retransmits"] == 0
        assert 0 < cli["rtt_min_us"] <= cli["rtt_max_us"]
        assert cli["duration_ms"] > 0
        assert i.listener not in rows           # listeners only with --listeners
    table = subprocess.run(PYELOG + ["summary", str(path)], capture_output=True, text=True).stdout
    assert f"127.0.0.1:{info.client_port}" in table and "300000" in table
    png = tmp_path / "s.png"
    p = subprocess.run(PYELOG + ["plot", str(path), "--session", str(info.client), "-o", str(png)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_session_table_full_is_reported(tmp_path):
    # Two slots; one exchange holds three sockets (listener, client, server)
    # at once: at least one is refused, and -s and the header say how many.
    rec = Recorder(["-s", "-c", "tcp", "--max-sessions", "2", "-o", str(tmp_path / "s.elog")])
    try:
        exchange(5150)
    finally:
        assert rec.stop() == 0
    m = re.search(r"Sessions not tracked \(table full, see --max-sessions\): (\d+)", rec.stderr)
    assert m and int(m.group(1)) >= 1, rec.stderr
    # Every TCP session is enabled here (-c tcp): each refused one is one
    # SESSION_CREATE lost, in -s and in the capture's header, nothing else.
    refused = int(m.group(1))
    assert re.search(rf"Dropped events: {refused}\n", rec.stderr), rec.stderr
    with ElogReader(tmp_path / "s.elog") as r:
        assert r.header.dropped_events == refused
