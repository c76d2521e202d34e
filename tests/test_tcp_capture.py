# SPDX-License-Identifier: BSD-2-Clause
"""Live TCP capture on the running kernel (elog_test.py's capture checks, on Linux).

pyelog -s -c tcp -o FILE runs in the background while the test makes
loopback connections inside a fresh network namespace; SIGTERM ends it.
(SIGKILL: tests/test_teardown.py.)
"""
from __future__ import annotations

import collections
import socket
import struct
import subprocess

import pytest

from pyelog.records.eventlog import SESSION_CREATE_ID, SESSION_END_ID
from pyelog.records.format import ElogReader
from tests.helpers.netns import Namespace, exchange
from tests.helpers.recorder import PYELOG, Recorder

pytestmark = pytest.mark.kernel
CONN_V4, CONN_V6, IN, OUT = 0, 1, 100, 101


def _exchange(family: int, host: str, port: int) -> list[int]:
    """One exchange in a fresh namespace; returns the listener, client and server cookies."""
    with Namespace() as ns:
        x = exchange(ns, port, family=family, host=host, send=5000)
    return [x.listener, x.client, x.server]


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_loopback_capture(tmp_path, family, host):
    path = tmp_path / "tcp.elog"
    port = 5001
    rec = Recorder(["-s", "-c", "tcp", "-o", str(path)])
    try:
        cookies = _exchange(family, host, port)
    finally:
        assert rec.stop() == 0, rec.stderr
    assert "[Stats]" in rec.stderr and "Events received:" in rec.stderr

    reader = ElogReader(path)
    records = list(reader)
    # Header counts equal what was walked; nothing dropped at this rate but
    # the SYN-ACK older kernels hide from the egress hook over IPv6, which
    # the accepted session then lacks (README, known departures).
    assert reader.header.event_count == len(records)
    synack = any(r.session_id == cookies[2] and r.event_id == OUT
                 and struct.unpack_from("<H", r.payload, 8)[0] == 0x12 for r in records)
    assert reader.header.dropped_events == (0 if synack or family == socket.AF_INET else 1)
    assert reader.header.capture_start > 0 and reader.header.start_utc_us > 0
    tcp_ids = {pr.provider_id for pr in reader.providers if pr.name == "tcp"}
    assert tcp_ids and all(r.provider_id in tcp_ids for r in records)
    assert all(r.event_length == 32 + len(r.payload) <= 4096 for r in records)

    by_session = collections.defaultdict(list)
    for r in records:
        by_session[r.session_id].append(r)
    for sid in cookies:           # session ids are the sockets' SO_COOKIE
        assert sid in by_session, f"no events for cookie {sid}"
    for sid, recs in by_session.items():
        ts = [r.timestamp for r in recs]
        assert ts == sorted(ts), f"session {sid} timestamps go backwards"

    conn_id = CONN_V4 if family == socket.AF_INET else CONN_V6
    for sid in cookies[1:]:       # the client and the accepted socket
        ids = {r.event_id for r in by_session[sid]}
        assert {SESSION_CREATE_ID, SESSION_END_ID, conn_id} <= ids
        assert IN in ids or OUT in ids
        conn = next(r for r in by_session[sid] if r.event_id == conn_id)
        if family == socket.AF_INET:
            assert len(conn.payload) == 16
            src, sport, dst, dport = struct.unpack("<4sH2x4sH2x", conn.payload)
            assert socket.inet_ntoa(src) == socket.inet_ntoa(dst) == "127.0.0.1"
            assert port in (socket.ntohs(sport), socket.ntohs(dport))
        else:
            assert len(conn.payload) == 40

    text = subprocess.run(PYELOG + ["-r", str(path), "-e"], capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    for fragment in ["[tcp]", "[SESSION_CREATE]", "[SESSION_END]", "flags SYN",
                     "in state ESTABLISHED", "Connection parameters: ISS", "MSS set to",
                     f":{port}", "[IN]", "[OUT]"]:
        assert fragment in out, fragment
    assert ("IPv4 connection 127.0.0.1:" if family == socket.AF_INET else "IPv6 connection [::1]:") in out
    again = subprocess.run(PYELOG + ["-r", str(path), "-e"], capture_output=True, text=True)
    assert again.stdout == out


def test_keyword_filter_rx_only(tmp_path):
    path = tmp_path / "rx.elog"
    rec = Recorder(["-c", "tcp", "VERBOSE", "RX", "-o", str(path)])
    try:
        _exchange(socket.AF_INET, "127.0.0.1", 5002)
    finally:
        assert rec.stop() == 0, rec.stderr
    ids = {r.event_id for r in ElogReader(path)}
    assert IN in ids and OUT not in ids
