# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog convert``: round trips, gzip, merge order, filters, split; output is valid elog(5)."""
from __future__ import annotations

import gzip
import json
import socket
import struct

import pytest

from pyelog import cli
from pyelog.records.eventlog import SESSION_CREATE_ID, SESSION_END_ID
from pyelog.records.format import ElogReader, ElogWriter

TCP = [(1, "tcp"), (2, "test")]
CONN_V4 = 0
IN = 100


def conn_v4(sport: int, dport: int, src=b"\x7f\0\0\1", dst=b"\x7f\0\0\1") -> bytes:
    """A CONN_SET_IP_V4 payload (ports in network byte order, as the kernel has them)."""
    return struct.pack("<4sH2x4sH2x", src, socket.htons(sport), dst, socket.htons(dport))


def make_capture(path, sessions, start=1_000_000, step=10, dropped=3, utc=1_700_000_000_000_000):
    """sessions: {sid: port}; events interleaved, timestamps start + i*step."""
    w = ElogWriter(path, TCP, start_utc_us=utc)
    ts = start
    for sid, port in sessions.items():
        w.write_event(provider_id=1, timestamp=ts, session_id=sid, event_id=SESSION_CREATE_ID,
                      cpu=1, thread_id=77, payload=bytes(34))
        ts += step
        w.write_event(provider_id=1, timestamp=ts, session_id=sid, event_id=CONN_V4,
                      payload=conn_v4(40000 + sid % 1000, port), reserved=sid & 0xFF)
        ts += step
    for sid in sessions:
        w.write_event(provider_id=1, timestamp=ts, session_id=sid, event_id=IN,
                      payload=struct.pack("<IIHHIB", 1, 2, 0x10, 500, 1000, 1), thread_id=-5)
        ts += step
        w.write_event(provider_id=2, timestamp=ts, session_id=sid, event_id=7, payload=b"\xff" * 3)
        ts += step
        w.write_event(provider_id=1, timestamp=ts, session_id=sid, event_id=SESSION_END_ID)
        ts += step
    w.close(dropped_events=dropped)
    return path


def convert(*args) -> int:
    return cli.main(["convert", *map(str, args)])


def walk(path):
    with ElogReader(path) as r:
        return r.header, r.providers, list(r)


@pytest.fixture
def cap(tmp_path):
    return make_capture(tmp_path / "a.elog", {4097: 80, 4098: 443})


@pytest.mark.parametrize("ext", [".jsonl", ".json"])
def test_elog_json_elog_is_byte_identical(cap, tmp_path, ext):
    js = tmp_path / f"a{ext}"
    back = tmp_path / "back.elog"
    assert convert(cap, js) == 0
    assert convert(js, back) == 0
    assert back.read_bytes() == cap.read_bytes()
    lines = js.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["event_count"] == 10 and head["dropped_events"] == 3
    ev = json.loads(lines[2])
    assert ev["event"] == "CONN_SET_IP_V4" and ev["fields"]["dst_port"] == 80


def test_gz_round_trip(cap, tmp_path):
    gz = tmp_path / "a.elog.gz"
    assert convert(cap, gz) == 0
    assert gzip.decompress(gz.read_bytes()) == cap.read_bytes()
    back = tmp_path / "b.elog"
    assert convert(gz, back) == 0
    assert back.read_bytes() == cap.read_bytes()
    assert not list(tmp_path.glob("*.partial"))


def test_merge_is_in_timestamp_order(tmp_path):
    a = make_capture(tmp_path / "a.elog", {1: 80}, start=1000, step=10, dropped=1)
    b = make_capture(tmp_path / "b.elog", {2: 81}, start=1005, step=10, dropped=2)
    out = tmp_path / "m.elog"
    assert convert(a, b, out) == 0
    head, providers, recs = walk(out)
    ts = [r.timestamp for r in recs]
    assert ts == sorted(ts) and len(recs) == 10
    assert [r.session_id for r in recs[:4]] == [1, 2, 1, 2]
    assert head.event_count == 10 and head.dropped_events == 3
    assert head.capture_start == 1000
    assert providers == walk(a)[1]
    # Every input record is there, bytes intact.
    assert sorted(r.pack() for r in recs) == sorted(r.pack() for r in walk(a)[2] + walk(b)[2])


def test_merge_refuses_conflicting_provider_ids(tmp_path):
    a = make_capture(tmp_path / "a.elog", {1: 80})
    w = ElogWriter(tmp_path / "c.elog", [(1, "other")])
    w.write_event(provider_id=1, timestamp=5, session_id=1, event_id=1)
    w.close()
    assert convert(a, tmp_path / "c.elog", tmp_path / "m.elog") == 1


@pytest.mark.parametrize("args, keep", [
    (["--session", "4098"], lambda r: r.session_id == 4098),
    (["--event", "CONN_SET_IP_V4", "--event", "4294967295"],
     lambda r: r.event_id in (CONN_V4, SESSION_END_ID)),
    (["--provider", "test"], lambda r: r.provider_id == 2),
    (["--since", "1000030", "--until", "1000060"], lambda r: 1000030 <= r.timestamp <= 1000060),
    (["--session", "4097", "--provider", "tcp"], lambda r: r.session_id == 4097 and r.provider_id == 1),
])
def test_filters(cap, tmp_path, args, keep):
    out = tmp_path / "f.elog"
    assert convert(cap, out, *args) == 0
    head, _p, recs = walk(out)
    want = [r for r in walk(cap)[2] if keep(r)]
    assert recs == want and want
    assert head.event_count == len(want)
    # Filtered output keeps the clock anchor of its input.
    assert head.start_utc_us == walk(cap)[0].start_utc_us
    assert head.capture_start == walk(cap)[0].capture_start


def test_filter_to_json(cap, tmp_path):
    out = tmp_path / "f.jsonl"
    assert convert(cap, out, "--session", "4097") == 0
    lines = out.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["event_count"] == 5 == len(lines) - 1
    back = tmp_path / "f.elog"
    assert convert(out, back) == 0
    assert [r.session_id for r in walk(back)[2]] == [4097] * 5


def test_split_one_file_per_session(cap, tmp_path):
    d = tmp_path / "split"
    assert convert(cap, "--split", d) == 0
    files = sorted(p.name for p in d.iterdir())
    assert files == ["4097.elog", "4098.elog"]
    for name, sid in (("4097.elog", 4097), ("4098.elog", 4098)):
        head, providers, recs = walk(d / name)
        assert {r.session_id for r in recs} == {sid}
        assert recs[0].event_id == SESSION_CREATE_ID and recs[-1].event_id == SESSION_END_ID
        assert head.event_count == len(recs) == 5 and head.dropped_events == 0
        assert providers == walk(cap)[1]
        # Times stay those of the source: its anchor, not this host's clock.
        src = walk(cap)[0]
        assert (head.capture_start, head.start_utc_us) == (src.capture_start, src.start_utc_us)


def test_read_to_a_directory_writes_one_capture_per_session(cap, tmp_path, capsys):
    """``pyelog -r FILE -o dir=PATH`` does what elog does: one capture per
    session in PATH (the same names and bytes as ``convert --split``),
    nothing printed, exit 0; with ``-f tcp`` the files carry the ports."""
    assert convert(cap, "--split", tmp_path / "split") == 0
    assert cli.main(["-r", str(cap), "-o", f"dir={tmp_path / 'd'}"]) == 0
    assert capsys.readouterr().out == ""
    split = sorted((p.name, p.read_bytes()) for p in (tmp_path / "split").iterdir())
    assert sorted((p.name, p.read_bytes()) for p in (tmp_path / "d").iterdir()) == split
    assert [name for name, _ in split] == ["4097.elog", "4098.elog"]
    assert cli.main(["-r", str(cap), "-o", f"dir={tmp_path / 't'}", "-f", "tcp"]) == 0
    names = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert len(names) == 2 and "_80" in names[0] + names[1] and "_443" in names[0] + names[1], names


def test_output_is_also_input(cap):
    with pytest.raises(SystemExit):
        convert(cap, cap)


def test_missing_input_is_one_line(tmp_path, capsys):
    assert convert(tmp_path / "nope.elog", tmp_path / "out.elog") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.elog" in err[0]


def test_corrupt_json_names_the_line(cap, tmp_path, capsys):
    js = tmp_path / "a.jsonl"
    assert convert(cap, js) == 0
    lines = js.read_text().splitlines()
    lines[3] = "{not json"
    js.write_text("\n".join(lines) + "\n")
    assert convert(js, tmp_path / "x.elog") == 1
    assert "line 4" in capsys.readouterr().err


# --- malformed JSON lines: one line naming the line, nothing left behind (issue 17) ---

def _json_lines(cap, tmp_path) -> list[bytes]:
    js = tmp_path / "good.jsonl"
    assert convert(cap, js) == 0
    lines = js.read_bytes().splitlines()
    js.unlink()
    return lines


def _header_with(lines: list[bytes], **changes) -> bytes:
    head = json.loads(lines[0])
    head.update(changes)
    return json.dumps(head).encode()


def _event_with(lines: list[bytes], **changes) -> bytes:
    ev = json.loads(lines[3])
    ev.update(changes)
    return json.dumps(ev).encode()


# name -> (line to replace, its new text (from the good lines), line reported, what the message says)
_BAD_JSON = {
    "not_utf8": (3, lambda ls: ls[3][:-2] + b"\xff\"}", 4, "not UTF-8 text"),
    "nested_event": (3, lambda ls: b"[" * 100_000, 4, "nested too deeply"),
    "nested_header": (0, lambda ls: b"[" * 100_000, 1, "nested too deeply"),
    "provider_id": (0, lambda ls: _header_with(ls, providers=[[70000, "tcp"]]), 1, "provider id out of range"),
    "provider_not_pair": (0, lambda ls: _header_with(ls, providers=[[1, "tcp", 3]]), 1, "not an [id, name] pair"),
    "header_count": (0, lambda ls: _header_with(ls, event_count=-1), 1, "must be integers from 0 to 2**64-1"),
    "header_missing": (0, lambda ls: b'{"elog": 1}', 1, "no 'capture_start' field"),
    "cpu": (3, lambda ls: _event_with(ls, cpu=1 << 16), 4, "cpu must be an integer from 0 to 65535"),
    "thread_id": (3, lambda ls: _event_with(ls, thread_id=-(1 << 31) - 1), 4, "thread_id must be an integer"),
    "timestamp_text": (3, lambda ls: _event_with(ls, timestamp="soon"), 4, "timestamp must be an integer"),
    "timestamp_float": (3, lambda ls: _event_with(ls, timestamp=1.5), 4, "timestamp must be an integer"),
    "payload_too_long": (3, lambda ls: _event_with(ls, payload="00" * 65504), 4, "payload of 65504 bytes"),
    "payload_missing": (3, lambda ls: b'{"cpu": 1}', 4, "no 'payload' field"),
    "not_an_object": (3, lambda ls: b"[1, 2]", 4, "not a JSON object"),
    "bad_json": (3, lambda ls: b'{"cpu": 1', 4, "invalid JSON"),
}


@pytest.mark.parametrize("out", ["o.elog", "o.elog.gz", "o.jsonl", "--split"])
@pytest.mark.parametrize("name", sorted(_BAD_JSON))
def test_malformed_json_is_one_line_and_leaves_no_output(cap, tmp_path, capsys, name, out):
    lines = _json_lines(cap, tmp_path)
    index, bad, lineno, message = _BAD_JSON[name]
    lines[index] = bad(lines)
    js = tmp_path / "bad.jsonl"
    js.write_bytes(b"\n".join(lines) + b"\n")
    capsys.readouterr()
    args = ["--split", tmp_path / "split"] if out == "--split" else [tmp_path / out]
    assert convert(js, *args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pyelog convert: {js}: line {lineno}: ") and err.count("\n") == 1, err
    assert message in err and len(err) < 300, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.elog", "bad.jsonl"]


def test_failed_conversion_keeps_files_it_did_not_create(cap, tmp_path, capsys):
    lines = _json_lines(cap, tmp_path)
    lines[5] = b"{broken"
    js = tmp_path / "bad.jsonl"
    js.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "old.elog"
    out.write_bytes(b"someone's file")
    split = tmp_path / "split"
    split.mkdir()
    (split / "4097.elog").write_bytes(b"old")
    (split / "notes.txt").write_bytes(b"mine")
    assert convert(js, out) == 1
    assert out.exists()
    assert convert(js, "--split", split) == 1
    # 4097.elog existed (it was overwritten, not created): kept; 4098.elog was new: removed.
    assert sorted(p.name for p in split.iterdir()) == ["4097.elog", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.elog", "bad.jsonl", "old.elog", "split"]


def test_successful_json_conversion_still_byte_identical_after_checks(cap, tmp_path):
    js = tmp_path / "a.jsonl"
    assert convert(cap, js) == 0
    assert convert(js, tmp_path / "b.elog") == 0
    assert (tmp_path / "b.elog").read_bytes() == cap.read_bytes()
