# SPDX-License-Identifier: BSD-2-Clause
"""Run-time consumers: Consumer / ConsumerSet API and the FreeBSD TCP schema."""
from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from pyelog.schema.consumer import SCHEMAS_DIR, Consumer, ConsumerSet
from pyelog.schema.dsl import SchemaError

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
FREEBSD = Path(__file__).resolve().parent / "data" / "freebsd_tcp"   # test data, not shipped


@pytest.fixture(scope="module")
def freebsd_tcp() -> Consumer:
    return ConsumerSet.from_paths([FREEBSD]).get("tcp")


def test_conn_set_ip_v4_hand_built_payload(freebsd_tcp):
    payload = struct.pack("<4sH2x4sH2x", socket.inet_aton("127.0.0.1"), socket.htons(40000),
                          socket.inet_aton("127.0.0.1"), socket.htons(5001))
    assert len(payload) == 16
    assert freebsd_tcp.format_payload(0, payload) == "IPv4 connection 127.0.0.1:40000 -> 127.0.0.1:5001"
    assert freebsd_tcp.decode(0, payload) == {
        "src_addr": "127.0.0.1", "src_port": 40000, "dst_addr": "127.0.0.1", "dst_port": 5001}
    assert freebsd_tcp.event_name(0) == "CONN_SET_IP_V4"


def test_freebsd_tcp_texts(freebsd_tcp):
    v6 = struct.pack("<16sH2x16sH2x", socket.inet_pton(socket.AF_INET6, "::1"), socket.htons(5001),
                     socket.inet_pton(socket.AF_INET6, "::1"), socket.htons(40001))
    assert freebsd_tcp.format_payload(1, v6) == "IPv6 connection [::1]:5001 -> [::1]:40001"
    params = struct.pack("<IIIBBB16s32sx", 1000, 2000, 1448, 7, 8, 0x43, b"cubic", b"freebsd")
    assert freebsd_tcp.format_payload(3, params) == (
        "Connection parameters: ISS 1000, IRS 2000, MSS 1448, snd_wscale 7, rcv_wscale 8, "
        "flags CP_SACK_PERMIT|CP_TIMESTAMPS|CP_WINDOW_SCALE, cc cubic, stack freebsd")
    assert freebsd_tcp.format_payload(4, struct.pack("<I", 1448)) == "MSS set to 1448 bytes"
    seg_in = struct.pack("<IIHHIIBBHH6xQ", 2864140103, 0, 0x02, 65535, 65535, 0, 1, 5, 0xABCD, 0, 512330981)
    assert len(seg_in) == 40
    assert freebsd_tcp.format_payload(100, seg_in) == (
        "Received 0 bytes (seq 2864140103, ack 0, win 65535, flags SYN) in state LISTEN rcv_time 512330981 us")
    seg_out = struct.pack("<IIHHIIIBBHH2x", 1, 2, 0x12, 512, 65536, 100, 14480, 4, 5, 0x1234, 0)
    assert len(seg_out) == 32
    assert freebsd_tcp.format_payload(101, seg_out) == (
        "Sent 100 bytes (seq 1, ack 2, win 65536, flags SYN|ACK) in state ESTABLISHED cwnd 14480")
    assert freebsd_tcp.decode(101, seg_out)["th_sum"] == 0x1234
    assert freebsd_tcp.format_payload(0xFFFFFFFE, struct.pack("<Q", 0xFFFFF80012345678)) == \
        "Session created (tp=0xfffff80012345678)"
    assert freebsd_tcp.format_payload(0xFFFFFFFE, b"") == "Session created"
    assert freebsd_tcp.format_payload(501, b"") == "Timer canceled"
    assert freebsd_tcp.format_payload(700, struct.pack("<II", 81, 1)) == "Socket option TCP_EVENTLOG set to 1"
    assert freebsd_tcp.format_payload(800, struct.pack("<iiiiIB3x", 1, 0, 3, 2, 10, 0)) == (
        "Output decision: did_output 1 nxt_pkt 0 way_out 3 nsegs 2 inflight 10 in_persist 0")
    assert freebsd_tcp.keyword_from_string("rtt") == 0x100


def test_consumer_set_dispatch():
    cs = ConsumerSet.from_paths([SCHEMAS / "test_eventlog_schema.src"])
    assert cs.providers == ["test"]
    assert isinstance(cs.get("test"), Consumer) and cs.get("nope") is None
    assert cs.event_name("test", 2) == "FLAGS_EVENT"
    assert cs.event_name("test", 77) is None
    assert cs.event_name("nope", 0xFFFFFFFF) == "SESSION_END"
    assert cs.event_name("test", 0xFFFFFFFF) == "SESSION_END"
    assert cs.event_name("nope", 0xFFFFFFFD) == "DUMP_COMPLETE"
    assert cs.event_name("nope", 1) is None
    assert cs.format_payload("nope", 0, b"") == "[UNKNOWN_PROVIDER:nope]"
    assert cs.format_payload("test", 0, struct.pack("<I", 42)) == "Simple event: value=42"
    assert cs.format_payload("test", 9, b"") == "[UNKNOWN_EVENT_ID:9]"
    assert cs.decode("test", 0, struct.pack("<I", 42)) == {"value": 42}
    assert cs.decode("nope", 0, b"") is None
    assert cs.keyword_from_string("test", "basic") == 1
    assert cs.keyword_from_string("nope", "basic") == 0


def test_consumer_attributes():
    c = Consumer.from_path(SCHEMAS / "test_eventlog_schema.src")
    assert c.provider == "test"
    assert c.keywords["SESSION"] == 0x80000000
    assert c.enums["test_status"][1] == "RUNNING"
    assert c.flags["test_flags"][0] == (1, "FLAG_A")
    assert c.events[3] == ("COMPLEX_EVENT", 2, 8, 24)


def test_default_loads_top_level_schemas_only():
    assert SCHEMAS_DIR == SCHEMAS
    cs = ConsumerSet.default()
    assert "test" in cs.providers
    tcp = cs.get("tcp")
    if tcp is not None:  # the Linux provider, not the FreeBSD-style test schema's
        freebsd = ConsumerSet.from_paths([FREEBSD]).get("tcp")
        assert tcp.events != freebsd.events


def test_later_paths_override_same_provider(tmp_path):
    d = tmp_path / "override"
    d.mkdir()
    (d / "test_eventlog_schema.src").write_text("PROVIDER test\nKEYWORD K 1\nEVENT ONLY 0 INFO K NONE \"mine\"\n")
    (d / "ignored.src").write_text("not a schema")
    cs = ConsumerSet.from_paths([SCHEMAS / "test_eventlog_schema.src", d])
    assert cs.format_payload("test", 0, b"") == "mine"
    cs = ConsumerSet.from_paths([d, SCHEMAS / "test_eventlog_schema.src"])
    assert cs.format_payload("test", 0, struct.pack("<I", 1)) == "Simple event: value=1"


def test_bad_schema_raises_schema_error(tmp_path):
    (tmp_path / "bad_eventlog_schema.src").write_text("PROVIDER bad\n")
    with pytest.raises(SchemaError, match="no EVENT defined"):
        ConsumerSet.from_paths([tmp_path])


def test_formatter_is_format_payload_looked_up_once():
    cs = ConsumerSet.from_paths([SCHEMAS / "test_eventlog_schema.src"])
    consumer = cs.get("test")
    payload = struct.pack("<I", 42)
    assert consumer.formatter(0)(payload) == consumer.format_payload(0, payload) == "Simple event: value=42"
    assert consumer.formatter(0) is consumer.module._format_SIMPLE_EVENT  # the generated function itself
    assert cs.formatter("test", 0)(payload) == cs.format_payload("test", 0, payload)
    assert cs.formatter("test", 9)(b"") == "[UNKNOWN_EVENT_ID:9]"
    assert cs.formatter("nope", 0)(b"") == cs.format_payload("nope", 0, b"") == "[UNKNOWN_PROVIDER:nope]"
    assert cs.formatter("nope", 0xFFFFFFFD)(b"") == "[UNKNOWN_PROVIDER:nope]"
