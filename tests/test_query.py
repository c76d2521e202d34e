# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog query``: DuckDB over an exported dataset; the ready-made views against what the test wrote."""
from __future__ import annotations

import csv
import io
import json
import struct

import pytest

pytest.importorskip("duckdb")      # in the test extras: present wherever `make test` runs

from pyelog import cli  # noqa: E402
from pyelog.records.format import ElogWriter  # noqa: E402
from tests.test_summary import EST, SYN, Session, capture, dump_state_capture  # noqa: E402,F401  (capture: a fixture)

# RTT samples per connection, as the test writes them (RTT_SAMPLE rtt_us).
SAMPLES = {20: [100, 200, 300, 400, 1000], 21: [50, 70]}


def percentile(values: list[int], q: float) -> float:
    """Linear interpolation between closest ranks (quantile_cont's definition), by hand."""
    v = sorted(values)
    pos = (len(v) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _capture(path, utc=1_700_000_000_000_000):
    w = ElogWriter(path, [(1, "tcp")], start_utc_us=utc)
    a = Session(w, 20, 1_000_000).create().conn("10.0.0.1", 40000, "10.0.0.2", 80)
    a.out(1000, 0, flags=SYN).state(2, EST)
    for us in SAMPLES[20]:
        a.rtt_sample(us)
    a.out(1001, 1000).retransmit(1001, 1).retransmit(2001, 3)
    a.ev(1001, struct.pack("<IIiB3x", 3001, 2, -11, EST))      # err != 0: not a retransmission
    a.ev(1003, bytes([EST])).end()                              # a reset received
    b = Session(w, 21, 2_000_000).create().conn("10.0.0.1", 40001, "10.0.0.3", 443)
    for us in SAMPLES[21]:
        b.rtt_sample(us)
    b.ev(1002, bytes([EST])).end()                              # a reset sent
    c = Session(w, 22, 3_000_000).create().conn("10.0.0.1", 40002, "10.0.0.4", 22)
    c.out(5000, 10).end()
    w.close()
    return path


def query(capsys, *args) -> tuple[int, str, str]:
    rc = cli.main(["query", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def dataset(tmp_path, capsys):
    for host in ("web-1", "web-2"):
        _capture(tmp_path / f"{host}.elog")
        assert cli.main(["export", str(tmp_path / f"{host}.elog"), "-o", str(tmp_path / "ds"),
                         "--host", host]) == 0
    capsys.readouterr()
    return tmp_path / "ds"


def test_retransmissions_view(dataset, capsys, tmp_path):
    rc, out, _ = query(capsys, "SELECT host, session_id, raddr, rport, retransmitted_segments, events "
                               "FROM retransmissions ORDER BY host, session_id", dataset, "--json")
    assert rc == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows == [{"host": h, "session_id": 20, "raddr": "10.0.0.2", "rport": 80,
                     "retransmitted_segments": 4, "events": 2} for h in ("web-1", "web-2")]
    # The same count as pyelog summary's RETRANS column.
    assert cli.main(["summary", "--json", str(tmp_path / "web-1.elog")]) == 0
    summary = {r["session_id"]: r["retransmits"] for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert summary == {20: 4, 21: 0, 22: 0}


def test_resets_view(dataset, capsys):
    rc, out, _ = query(capsys, "SELECT session_id, direction, state, raddr FROM resets "
                               "WHERE host = 'web-2' ORDER BY session_id", dataset, "--csv")
    assert rc == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["session_id", "direction", "state", "raddr"],
        ["20", "received", "ESTABLISHED", "10.0.0.2"],
        ["21", "sent", "ESTABLISHED", "10.0.0.3"]]


def test_rtt_views(dataset, capsys):
    rc, out, _ = query(capsys, "SELECT session_id, samples, min_us, p50_us, p90_us, p99_us, max_us FROM rtt "
                               "WHERE host = 'web-1' ORDER BY session_id", dataset, "--json")
    assert rc == 0
    for row, (sid, us) in zip(map(json.loads, out.splitlines()), sorted(SAMPLES.items()), strict=True):
        assert row == {"session_id": sid, "samples": len(us), "min_us": min(us),
                       "p50_us": pytest.approx(percentile(us, 0.5)),
                       "p90_us": pytest.approx(percentile(us, 0.9)),
                       "p99_us": pytest.approx(percentile(us, 0.99)), "max_us": max(us)}
    rc, out, _ = query(capsys, "SELECT host, connections, samples, p50_us FROM rtt_by_host ORDER BY host",
                       dataset, "--json")
    every = SAMPLES[20] + SAMPLES[21]
    assert [json.loads(line) for line in out.splitlines()] == [
        {"host": h, "connections": 2, "samples": len(every), "p50_us": pytest.approx(percentile(every, 0.5))}
        for h in ("web-1", "web-2")]


def test_event_tables_and_text_output(dataset, capsys):
    rc, out, _ = query(capsys, "SELECT host, count(*) AS n FROM tcp_state_change GROUP BY host ORDER BY host",
                       dataset)
    assert rc == 0
    assert out.splitlines() == ["host   n", "web-1  1", "web-2  1"]


def test_captures_without_a_dataset(tmp_path, capsys):
    """Captures are exported to a temporary dataset; tables the capture lacks are empty, not errors."""
    path = tmp_path / "one.elog"
    w = ElogWriter(path, [(1, "tcp")], start_utc_us=1_700_000_000_000_000)
    Session(w, 30, 1_000_000).create().conn("10.0.0.1", 1, "10.0.0.2", 2).end()
    w.close()
    rc, out, _ = query(capsys, "SELECT (SELECT count(*) FROM rtt) AS r, (SELECT count(*) FROM resets) AS s, "
                               "(SELECT count(*) FROM tcp_conns) AS c", path, "--host", "x", "--csv")
    assert rc == 0
    assert out.splitlines() == ["r,s,c", "0,0,1"]


def test_bad_sql_is_one_line(dataset, capsys):
    rc, out, err = query(capsys, "SELECT nope FROM", dataset)
    assert rc == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("pyelog query: SQL:")


def connections_vs_summary(path, capsys) -> tuple[list[dict], list[dict]]:
    """``pyelog summary --listeners --json`` and the connections view, in the same order."""
    assert cli.main(["summary", "--listeners", "--json", str(path)]) == 0
    summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rc, out, _ = query(capsys, "SELECT * EXCLUDE (host, capture, listener, first_record) FROM connections "
                               "ORDER BY first_record", path, "--json")
    assert rc == 0
    return summary, [json.loads(line) for line in out.splitlines()]


def test_connections_view_is_summary_row_for_row(capture, tmp_path, capsys):
    """Hand-made captures: data across the 32-bit wrap, a resend, probes, a
    FIN, an unfinished session, a listener (test_summary's), resets and RTT
    samples (this module's), a connection older than the capture (-D)."""
    dump = dump_state_capture(tmp_path / "dump.elog")
    for path in (capture, _capture(tmp_path / "q.elog"), dump):
        summary, view = connections_vs_summary(path, capsys)
        assert summary and view == summary
