# SPDX-License-Identifier: BSD-2-Clause
"""The C printer (pyelog/records/_records.c) against the Python one: text and JSON lines.

``TextPrinter.line`` (the generated per-event formatters) defines every
line; ``TextPrinter.run_lines`` renders runs of records in C where a text
plan exists (pyelog/schema/textplan.py) and hands the rest back. Both must
print the same bytes for any records: every event of the shipped schemas,
the FreeBSD-style test schema and a schema of every printf conversion,
with random payloads (short, long, non-ASCII strings, unknown ids and
providers), random headers and capture anchors, with and without -e/-d;
and JSON lines (``JsonEventFormatter.run_lines`` against ``line``).
"""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyelog.records import text as text_module
from pyelog.records.format import EVENT_HEADER, iter_records
from pyelog.records.jsonl import JsonEventFormatter
from pyelog.records.text import RawPayloads, TextOptions, TextPrinter
from pyelog.schema.consumer import ConsumerSet
from pyelog.schema.dsl import parse_schema
from tests.test_codegen import ALL_TYPES

DATA = Path(__file__).resolve().parent / "data"
# Every printf conversion the plans take, and some they leave to Python.
PRINTF = """\
PROVIDER pf
KEYWORD A 1
ENUM st 0:ZERO 1:ONE 255:MAX
FLAG fl 0x1:F0 0x2:F1 0x80000000:TOP
STRUCT P a:uint8_t b:int8_t c:uint16_t d:int16_t e:uint32_t f:int32_t g:uint64_t h:int64_t
    i:uint16_t:ntohs j:uint32_t:hex k:uint8_t:enum_st l:uint32_t:flag_fl m:char[12] n:in_addr_t
    o:in6_addr_t p:void*
EVENT W 1 INFO A P "%-5d|%-5u|%.5x|%X|%o|%.3d|%+ld|% ld|%hhd|%hu|%lx|%s|%s|%s|%s|%-08lu"
EVENT N 2 INFO A P "%1 %2 %3 %4 %5 %6 %7 %8 %9 %10 %11 %12 [%13] %14 %15 %16"
EVENT X 3 INFO A P "%#x %c %p %-8s %e|%hhu %hd %lld %llu %.2u"
EVENT S 4 INFO A P "%d %d %d %u %u %x %x %hhx %hx %lo %s"
EVENT Z 6 INFO A P "%.0d %.d"
EVENT E 5 INFO A NONE ""
"""


def _set(*texts: str) -> ConsumerSet:
    return ConsumerSet.from_schemas([parse_schema(t, f"/x/{t.split()[1]}_eventlog_schema.src", None)
                                     for t in texts])


SETS = {
    "shipped": ConsumerSet.default(),
    "freebsd-style": ConsumerSet.from_paths([DATA / "freebsd_tcp"]),
    "printf": _set(PRINTF, ALL_TYPES),
}


def event_ids(decoder: ConsumerSet) -> dict[str, list[int]]:
    return {p: sorted(decoder.get(p).events) for p in decoder.providers}


@st.composite
def records(draw, decoder: ConsumerSet):
    providers = decoder.providers
    table = {i + 1: name for i, name in enumerate(providers)}
    ids = event_ids(decoder)
    out = []
    for _ in range(draw(st.integers(1, 40))):
        pid = draw(st.sampled_from([*table, 9]))           # 9: not in the table
        name = table.get(pid, "?")
        known = ids.get(name, [])
        eid = draw(st.sampled_from(known) if known and draw(st.booleans()) else
                   st.sampled_from([0, 1, 2, 3, 4, 5, 100, 0xFFFFFFFD, 0xFFFFFFFE, 0xFFFFFFFF]))
        size = draw(st.integers(0, 120))
        payload = draw(st.one_of(st.binary(min_size=size, max_size=size),
                                 st.binary(min_size=size, max_size=size).map(
                                     lambda b: bytes(x & 0x7F | 0x20 for x in b))))
        ts = draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(10**9, 10**13)))
        out.append(EVENT_HEADER.pack(32 + len(payload), draw(st.integers(0, 65535)), pid, 0, ts,
                                     draw(st.integers(0, 2**64 - 1)), eid,
                                     draw(st.integers(-2**31, 2**31 - 1))) + payload)
    return table, b"".join(out), len(out)


ANCHORS = st.one_of(st.none(), st.just((0, 0)),
                    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
                    st.tuples(st.integers(10**9, 10**13), st.integers(1_600_000_000_000_000, 1_800_000_000_000_000)))
OPTIONS = st.sampled_from([TextOptions(), TextOptions(event_names=True), TextOptions(date=True),
                           TextOptions(event_names=True, date=True), TextOptions(numbers=True)])


@pytest.mark.skipif(text_module._records is None, reason="the C extension is not built")
@pytest.mark.parametrize("name", sorted(SETS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_c_lines_equal_python_lines(name, data):
    decoder = SETS[name]
    table, buf, n = data.draw(records(decoder), label="records")
    anchor = data.draw(ANCHORS, label="anchor")
    options = data.draw(OPTIONS, label="options")
    fast = "".join(TextPrinter(table, decoder, options, anchor).run_lines(buf, n))
    slow = TextPrinter(table, decoder, options, anchor)
    want = "".join(slow.line(rec) + "\n" for rec in iter_records(buf))
    assert fast == want


@pytest.mark.skipif(text_module._records is None, reason="the C extension is not built")
@pytest.mark.parametrize("name", sorted(SETS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_c_json_lines_equal_python_json_lines(name, data):
    decoder = SETS[name]
    table, buf, n = data.draw(records(decoder), label="records")
    fast = "".join(JsonEventFormatter(table, decoder).run_lines(buf, n))
    slow = JsonEventFormatter(table, decoder)
    assert fast == "".join(slow.line(rec) + "\n" for rec in iter_records(buf))
    raw = JsonEventFormatter(table, RawPayloads())  # no decode: "fields": null, all Python
    assert "".join(raw.run_lines(buf, n)) == "".join(raw.line(rec) + "\n" for rec in iter_records(buf))


def test_plans_cover_the_tcp_hot_events():
    """The per-segment events of a TCP capture have plans: they are the
    lines a big capture is made of."""
    tcp = ConsumerSet.default().get("tcp")
    for name in ("OUT", "IN", "IN_PROBE", "CWND", "RTT_SAMPLE", "RCV_SPACE", "STATE_CHANGE",
                 "RETRANSMIT", "CONN_SET_IP_V4", "CONN_SET_IP_V6", "CONN_PARAMS"):
        assert tcp.text_plan(tcp.event_id(name)) is not None, name
        assert tcp.json_plan(tcp.event_id(name)) is not None, name
    pf = SETS["printf"].get("pf")
    assert pf.text_plan(1) is not None and pf.text_plan(2) is not None
    assert pf.text_plan(3) is None                 # %#x, %c, %p, %-8s, %e: Python's
    assert pf.text_plan(6) is None                 # %.0d of 0: '' in C, '0' in Python


def test_c_printer_renders_without_python_for_planned_events():
    """A run of OUT records goes through C alone: the fallback is never called."""
    decoder = ConsumerSet.default()
    tcp = decoder.get("tcp")
    out_id = tcp.event_id("OUT")
    payload = struct.pack("<IIHHII", 1000, 2000, 0x18, 512, 1448, 10) + bytes(56)
    buf = b"".join(EVENT_HEADER.pack(32 + len(payload), 1, 1, 0, 5_000_000 + i, 7, out_id, 42) + payload
                   for i in range(100))
    p = TextPrinter({1: "tcp"}, decoder, TextOptions(event_names=True), (5_000_000, 1_700_000_000_000_000))
    calls = []
    p._line_of_bytes = lambda raw: calls.append(raw) or "x"
    lines = "".join(p.run_lines(buf, 100)).splitlines()
    assert not calls and len(lines) == 100
    assert lines[0].startswith("[ 1]002a::22:13:20.000000 [tcp][7][OUT] Sent 1448 bytes (seq 1000, "
                               "ack 2000, win 512, flags PUSH|ACK) in state ")
    assert lines[0] == TextPrinter({1: "tcp"}, decoder, TextOptions(event_names=True),
                                   (5_000_000, 1_700_000_000_000_000)).line(next(iter_records(buf)))


def test_c_printer_in_several_threads():
    """Callbacks into Python (records the C printer leaves to it) let other
    threads run, and print too: each call's output stays its own."""
    import threading
    decoder = ConsumerSet.default()
    tcp = decoder.get("tcp")
    create, out_id = 0xFFFFFFFE, tcp.event_id("OUT")
    payload = struct.pack("<IIHHII", 1000, 2000, 0x18, 512, 1448, 10) + bytes(56)
    recs = []
    for i in range(3000):
        eid, body = (create, bytes(32)) if i % 3 == 0 else (out_id, payload)
        recs.append(EVENT_HEADER.pack(32 + len(body), i % 4, 1, 0, 5_000_000 + i, 7 + i % 5, eid, 42) + body)
    buf = b"".join(recs)
    want = "".join(TextPrinter({1: "tcp"}, decoder).line(rec) + "\n" for rec in iter_records(buf))
    got, errors = [], []

    def work():
        try:
            for _ in range(5):
                got.append("".join(TextPrinter({1: "tcp"}, decoder).run_lines(buf, 3000)))
        except Exception as e:          # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 20 and all(g == want for g in got)
