# SPDX-License-Identifier: BSD-2-Clause
"""elog(1)'s text line, compared character for character with hand-written lines."""
from __future__ import annotations

import pytest

from pyelog.records.format import Record
from pyelog.records.text import RawPayloads, TextOptions, TextPrinter

UTC0 = 1_700_000_000_000_000          # 2023-11-14 22:13:20.000000 UTC
CS = 5_000_000                         # capture_start: 5 s after boot
ANCHOR = (CS, UTC0)
NAMES = {1: "tcp", 2: "tcp", 7: "hpts"}


class TinyDecoder:
    """The text module's decoder protocol, with a record of what it was asked."""

    def __init__(self):
        self.calls = []

    def event_name(self, provider, event_id):
        self.calls.append(("name", provider, event_id))
        return {("tcp", 100): "IN", ("tcp", 101): "OUT", ("tcp", 0xFFFFFFFE): "SESSION_CREATE",
                ("tcp", 0xFFFFFFFF): "NOT_THIS"}.get((provider, event_id))

    def format_payload(self, provider, event_id, payload):
        self.calls.append(("payload", provider, event_id, payload))
        if provider == "?":
            return "[UNKNOWN_PROVIDER:?]"
        if event_id == 999:
            return ""                      # "formatter returned <= 0"
        return f"<{provider}:{event_id}:{payload.hex()}>"


def rec(ts, event_id=100, payload=b"", *, provider_id=1, session_id=8812, cpu=2, tid=100005):
    return Record(32 + len(payload), cpu, provider_id, 0, ts, session_id, event_id, tid, payload)


def printer(decoder=None, anchor=ANCHOR, names=NAMES, **opts):
    return TextPrinter(names, decoder or TinyDecoder(), TextOptions(**opts), anchor)


def test_basic_line():
    p = printer()
    assert p.line(rec(CS + 1_234_567, 100, b"\x01\x02")) == \
        "[ 2]186a5::22:13:21.234567 [tcp][8812] <tcp:100:0102>"


def test_reference_example_shape():
    # elog(1)'s line format: "[ 2]186a5::14:03:07.120455 [tcp][8812][IN] Received ..."
    anchor = (0, 14 * 3600_000_000 + 3 * 60_000_000 + 7_120_455)
    p = printer(anchor=anchor, event_names=True)
    assert p.line(rec(0, 100)) == "[ 2]186a5::14:03:07.120455 [tcp][8812][IN] <tcp:100:>"


@pytest.mark.parametrize("cpu, text", [(0, "[ 0]"), (3, "[ 3]"), (47, "[47]"), (123, "[123]"),
                                       (65535, "[65535]")])
def test_cpu_width(cpu, text):
    assert printer().line(rec(CS, cpu=cpu)).startswith(text + "186a5::")


@pytest.mark.parametrize("tid, text", [(0, "0000"), (0x1a, "001a"), (0xffff, "ffff"), (100003, "186a3"),
                                       (-1, "ffffffff"), (-2, "fffffffe"), (-2**31, "80000000"),
                                       (2**31 - 1, "7fffffff")])
def test_thread_id_hex(tid, text):
    assert printer().line(rec(CS, tid=tid)) == f"[ 2]{text}::22:13:20.000000 [tcp][8812] <tcp:100:>"


def test_utc_from_anchor_and_date():
    p = printer(date=True)
    assert p.line(rec(CS)) == "[ 2]186a5::2023-11-14 22:13:20.000000 [tcp][8812] <tcp:100:>"
    # crosses midnight: 1 h 46 min 40 s later = 2023-11-15 00:00:00
    assert p.line(rec(CS + 6_400_000_001)) == "[ 2]186a5::2023-11-15 00:00:00.000001 [tcp][8812] <tcp:100:>"
    p = printer()
    assert p.line(rec(CS + 6_400_000_001)) == "[ 2]186a5::00:00:00.000001 [tcp][8812] <tcp:100:>"


def test_timestamp_before_capture_start():
    # records are not globally sorted: ts < capture_start gives an earlier UTC time
    assert printer().line(rec(CS - 1)) == "[ 2]186a5::22:13:19.999999 [tcp][8812] <tcp:100:>"


def test_timestamp_text_directly():
    p = printer()
    assert p.timestamp_text(CS + 59_999_999) == "22:14:19.999999"
    assert printer(date=True).timestamp_text(CS) == "2023-11-14 22:13:20.000000"


def test_provider_and_session():
    p = printer()
    assert p.line(rec(CS, provider_id=7, session_id=0)) == "[ 2]186a5::22:13:20.000000 [hpts][0] <hpts:100:>"
    assert p.line(rec(CS, provider_id=2, session_id=2**64 - 1)) == \
        "[ 2]186a5::22:13:20.000000 [tcp][18446744073709551615] <tcp:100:>"


def test_unknown_provider_is_question_mark():
    d = TinyDecoder()
    p = printer(d, event_names=True)
    assert p.line(rec(CS, 100, b"\xff", provider_id=3)) == \
        "[ 2]186a5::22:13:20.000000 [?][8812][?100] [UNKNOWN_PROVIDER:?]"
    assert ("payload", "?", 100, b"\xff") in d.calls


def test_event_names():
    p = printer(event_names=True)
    assert p.line(rec(CS, 100)) == "[ 2]186a5::22:13:20.000000 [tcp][8812][IN] <tcp:100:>"
    assert p.line(rec(CS, 0xFFFFFFFE)) == \
        "[ 2]186a5::22:13:20.000000 [tcp][8812][SESSION_CREATE] <tcp:4294967294:>"
    assert p.line(rec(CS, 5)) == "[ 2]186a5::22:13:20.000000 [tcp][8812][?5] <tcp:5:>"
    assert p.line(rec(CS, 0xFFFFFFFD)) == \
        "[ 2]186a5::22:13:20.000000 [tcp][8812][?4294967293] <tcp:4294967293:>"


def test_session_end_always_named():
    p = printer(event_names=True)
    # whatever the decoder says, and for unknown providers too
    assert p.line(rec(CS, 0xFFFFFFFF)) == "[ 2]186a5::22:13:20.000000 [tcp][8812][SESSION_END] <tcp:4294967295:>"
    assert p.line(rec(CS, 0xFFFFFFFF, provider_id=99)) == \
        "[ 2]186a5::22:13:20.000000 [?][8812][SESSION_END] [UNKNOWN_PROVIDER:?]"


def test_no_names_without_e():
    assert "[IN]" not in printer().line(rec(CS, 100))
    assert "[SESSION_END]" not in printer().line(rec(CS, 0xFFFFFFFF))


def test_empty_payload_text_gives_unknown_event_id():
    assert printer().line(rec(CS, 999, b"abc")) == \
        "[ 2]186a5::22:13:20.000000 [tcp][8812] [UNKNOWN_EVENT_ID:999]"


def test_numbers():
    p = printer(numbers=True)
    lines = [p.line(rec(CS + i)) for i in range(12)]
    assert lines[0] == "1        [ 2]186a5::22:13:20.000000 [tcp][8812] <tcp:100:>"
    assert lines[8].startswith("9        [ 2]")
    assert lines[9].startswith("10       [ 2]")
    assert lines[11] == "12       [ 2]186a5::22:13:20.000011 [tcp][8812] <tcp:100:>"


def test_numbers_wider_than_eight():
    p = printer(numbers=True)
    p._count = 123456788          # white-box: skip ahead
    assert p.line(rec(CS)).startswith("123456789 [ 2]")
    assert p.line(rec(CS)).startswith("123456790 [ 2]")


def test_relative_time():
    p = printer(relative=True)
    assert p.line(rec(CS + 10)) == "+0.000000 [ 2]186a5::22:13:20.000010 [tcp][8812] <tcp:100:>"
    assert p.line(rec(CS + 1_500_010)).startswith("+1.500000 [ 2]")
    assert p.line(rec(CS + 3_601_000_010)).startswith("+3601.000000 [ 2]")


def test_delta_time():
    p = printer(delta=True)
    assert p.line(rec(CS)).startswith("d0.000000 [ 2]")
    assert p.line(rec(CS + 250)).startswith("d0.000250 [ 2]")
    assert p.line(rec(CS + 2_000_250)).startswith("d2.000000 [ 2]")
    assert p.line(rec(CS + 2_000_250)).startswith("d0.000000 [ 2]")


def test_all_prefixes_in_order():
    p = printer(numbers=True, relative=True, delta=True, event_names=True, date=True)
    assert p.line(rec(CS + 100, 100, b"\x0a")) == \
        "1        +0.000000 d0.000000 [ 2]186a5::2023-11-14 22:13:20.000100 [tcp][8812][IN] <tcp:100:0a>"
    assert p.line(rec(CS + 1_100_200, 101, cpu=11, tid=100003, provider_id=2)) == \
        "2        +1.100100 d1.100100 [11]186a3::2023-11-14 22:13:21.100200 [tcp][8812][OUT] <tcp:101:>"
    assert p.line(rec(CS + 1_100_300, 0xFFFFFFFF)) == \
        "3        +1.100200 d0.000100 [ 2]186a5::2023-11-14 22:13:21.100300 [tcp][8812][SESSION_END] " \
        "<tcp:4294967295:>"


@pytest.mark.parametrize("anchor", [None, (CS, 0)])
def test_live_mode_time_since_boot(anchor):
    p = printer(anchor=anchor, date=True)           # -d has no effect without an anchor
    assert p.line(rec(0)) == "[ 2]186a5::00:00:00.000000 [tcp][8812] <tcp:100:>"
    assert p.line(rec(5_000_001)) == "[ 2]186a5::00:00:05.000001 [tcp][8812] <tcp:100:>"
    assert p.line(rec(3_723_000_042)) == "[ 2]186a5::01:02:03.000042 [tcp][8812] <tcp:100:>"
    assert p.line(rec(100 * 3600_000_000 + 1)) == "[ 2]186a5::100:00:00.000001 [tcp][8812] <tcp:100:>"
    assert p.line(rec(25 * 3600_000_000)) == "[ 2]186a5::25:00:00.000000 [tcp][8812] <tcp:100:>"


def test_raw_payloads():
    r = RawPayloads()
    assert r.format_payload("tcp", 100, b"\x01\x02\xff") == "[RAW 3] 0102ff"
    assert r.format_payload("tcp", 100, b"") == "[RAW 0]"
    assert r.event_name("tcp", 0xFFFFFFFF) == "SESSION_END"
    assert r.event_name("tcp", 100) is None
    p = printer(RawPayloads(), event_names=True)
    assert p.line(rec(CS, 100, b"\xde\xad")) == "[ 2]186a5::22:13:20.000000 [tcp][8812][?100] [RAW 2] dead"
    assert p.line(rec(CS, 0xFFFFFFFE)) == "[ 2]186a5::22:13:20.000000 [tcp][8812][?4294967294] [RAW 0]"
    assert p.line(rec(CS, 0xFFFFFFFF)) == "[ 2]186a5::22:13:20.000000 [tcp][8812][SESSION_END] [RAW 0]"


def test_default_options():
    p = TextPrinter(NAMES, RawPayloads())
    assert p.line(rec(61_000_000, 1, b"\x00")) == "[ 2]186a5::00:01:01.000000 [tcp][8812] [RAW 1] 00"


def test_far_out_timestamps_do_not_raise():
    p = printer(date=True)
    line = p.line(rec(2**64 - 1))
    assert line.startswith("[ 2]186a5::") and line.endswith(" [tcp][8812] <tcp:100:>")
    line = printer(anchor=(2**64 - 1, 1)).line(rec(0))
    assert line.startswith("[ 2]186a5::")
