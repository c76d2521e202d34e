"""Live capture through the command line, on the running kernel.

The recorder runs as users run it (``python -m pyelog.cli ...`` in the
background, ``-p`` so that its ``[Providers]`` line says when it is
attached); traffic is made inside namespaces of the test's own. Checks:
``-o dir=`` with ``-f tcp``, ``--duration``, SIGINT, SIGKILL (the file
reads, nothing of the recorder stays in the kernel), rotation, live text and
``--json``, and ``pyelog summary`` against the traffic the test made.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import netns  # noqa: E402
from netns import Namespace  # noqa: E402
from recorder import PYELOG, Recorder  # noqa: E402

from pyelog.records.format import SESSION_CREATE_ID, SESSION_END_ID, ElogReader  # noqa: E402

pytestmark = pytest.mark.kernel


def exchange(port: int, **kw) -> netns.Exchange:
    """One exchange (see netns.exchange) in a fresh namespace of its own."""
    with Namespace() as ns:
        info = netns.exchange(ns, port, **kw)
        time.sleep(0.2)
    return info


def records(path) -> list:
    with ElogReader(path) as r:
        return list(r)


def assert_header_counts(path) -> int:
    with ElogReader(path) as r:
        n = sum(1 for _ in r)
        assert r.header.event_count == n, path
        assert r.truncated_bytes == 0
    return n


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


def test_sigint_is_a_clean_stop(tmp_path):
    path = tmp_path / "int.elog"
    rec = Recorder(["-s", "-c", "tcp", "-o", str(path)])
    try:
        info = exchange(5103)
    finally:
        assert rec.stop(signal.SIGINT) == 0
    n = assert_header_counts(path)
    assert n == rec.events_received()
    sids = {r.session_id for r in records(path)}
    assert {info.client, info.server} <= sids


def test_sigkill_file_reads_and_nothing_stays_attached(tmp_path):
    path = tmp_path / "killed.elog"
    rec = Recorder(["-c", "tcp", "-o", str(path)])
    progs, links = rec.bpf_ids()
    assert progs and links, "the recorder should hold program and link fds"
    exchange(5104)
    time.sleep(1.5)                     # a drain or two reach the file
    rec.stop(signal.SIGKILL, settle=0)
    time.sleep(1.0)                     # the kernel frees programs after an RCU grace period
    for pid in progs:
        r = subprocess.run(["bpftool", "prog", "show", "id", str(pid)], capture_output=True, text=True)
        assert r.returncode != 0, f"program {pid} of the killed recorder is still loaded:\n{r.stdout}"
    for lid in links:
        r = subprocess.run(["bpftool", "link", "show", "id", str(lid)], capture_output=True, text=True)
        assert r.returncode != 0, f"link {lid} of the killed recorder is still attached:\n{r.stdout}"
    # The header was never patched (as with elog), but what is there reads.
    recs = records(path)
    with ElogReader(path) as r:
        assert r.header.event_count == 0
    assert recs, "a second of drains should have reached the file"


def test_rotation_loses_and_duplicates_nothing(tmp_path):
    base = tmp_path / "rot.elog"
    rec = Recorder(["-s", "-c", "tcp", "TRACE", "-o", str(base), "--rotate-size", "4K"])
    try:
        for i in range(3):
            exchange(5110 + i, send=200_000)
    finally:
        assert rec.stop() == 0
    files = sorted(glob.glob(str(tmp_path / "rot*.elog")), key=lambda f: (len(f), f))
    assert len(files) >= 2, files
    assert files[0] == str(base) and files[1] == str(tmp_path / "rot.1.elog")
    seen = []
    for f in files:
        assert_header_counts(f)
        assert os.path.getsize(f) <= 4 * 1024 or len(records(f)) == 1
        seen += [r.pack() + r.cpu.to_bytes(2, "little") for r in records(f)]
    assert len(seen) == rec.events_received()
    assert len(set(seen)) == len(seen), "an event was written twice"


def test_rotation_max_files(tmp_path):
    base = tmp_path / "keep.elog"
    rec = Recorder(["-c", "tcp", "TRACE", "-o", str(base), "--rotate-size", "4K", "--max-files", "2"])
    try:
        for i in range(3):
            exchange(5120 + i, send=100_000)
    finally:
        assert rec.stop() == 0
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 2, files
    assert "keep.elog" not in files        # the oldest went first
    for f in files:
        assert_header_counts(tmp_path / f)


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


@pytest.mark.skipif(not shutil.which("script"), reason="needs script(1) for a terminal")
def test_status_line_on_a_terminal(tmp_path):
    path = tmp_path / "st.elog"
    cmd = f"{sys.executable} -m pyelog.cli -c tcp -o {path} --duration 3"
    # Bytes: text mode would turn the carriage returns into newlines.
    p = subprocess.run(["script", "-qc", cmd, "/dev/null"], capture_output=True, timeout=120)
    out = p.stdout.decode()
    assert "Traceback" not in out
    assert re.search(r"\r\033\[Kpyelog: \d+ ev/s  \d+ events  \d+ dropped  \d+ sessions open  "
                     r"[\d.]+ (B|KiB|MiB) written", out), out
    assert out.rstrip("\r\n").endswith("\r\033[K")      # erased at the end
