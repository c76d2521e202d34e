# SPDX-License-Identifier: BSD-2-Clause
"""elog(5) reader and writer, checked against bytes packed by the test itself.

Every expected byte string here is built with ``struct`` from the formats in
elog(5) ("<4sIQQQQ", "<H32s", "<HHHHQQIi"), never with pyelog's own packers,
so a mistake shared by pyelog's reader and writer cannot hide.
"""
from __future__ import annotations

import gzip
import io
import struct
import time

import construct as cs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyelog.records import format as fmt
from pyelog.records.eventlog import DUMP_COMPLETE_ID, SESSION_CREATE_ID, SESSION_END_ID
from pyelog.records.format import (
    ElogFormatError,
    ElogReader,
    ElogWriter,
    Record,
    count_records,
    pack_event,
    pack_provider_table,
)

# --- hand packing (the test's own idea of elog(5)) ----------------------------

HDR = "<4sIQQQQ"
ENTRY = "<H32s"
EVT = "<HHHHQQIi"
SESSION_CREATE = 0xFFFFFFFE
SESSION_END = 0xFFFFFFFF
UTC0 = 1_700_000_000_000_000          # 2023-11-14 22:13:20 UTC


def hdr(capture_start=1_000_000, start_utc_us=UTC0, event_count=0, dropped=0,
        magic=b"ELOG", version=1) -> bytes:
    return struct.pack(HDR, magic, version, capture_start, start_utc_us, event_count, dropped)


def table(providers) -> bytes:
    return struct.pack("<I", len(providers)) + b"".join(
        struct.pack(ENTRY, pid, name.encode()) for pid, name in providers)


def ev(ts, event_id, payload=b"", *, provider_id=1, session_id=7, cpu=0, tid=100003,
       reserved=0, length=None) -> bytes:
    n = 32 + len(payload) if length is None else length
    return struct.pack(EVT, n, cpu, provider_id, reserved, ts, session_id, event_id, tid) + payload


TWO_TCP = [(1, "tcp"), (2, "tcp")]

# a capture: SESSION_CREATE (empty), two payload events, SESSION_END (empty)
EVENTS = [
    dict(ts=1_000_000, event_id=SESSION_CREATE, provider_id=1, session_id=42, cpu=0, tid=100003),
    dict(ts=1_000_010, event_id=100, payload=b"\x01\x02\x03", provider_id=2, session_id=42, cpu=3, tid=100004),
    dict(ts=1_000_500, event_id=101, payload=bytes(range(40)), provider_id=1, session_id=42, cpu=47, tid=-1,
         reserved=0xBEEF),
    dict(ts=1_002_000, event_id=SESSION_END, provider_id=1, session_id=42, cpu=1, tid=0),
]


def ev_of(d) -> bytes:
    d = dict(d)
    return ev(d.pop("ts"), d.pop("event_id"), d.pop("payload", b""), **d)


def record_tuple(d):
    payload = d.get("payload", b"")
    return (32 + len(payload), d.get("cpu", 0), d.get("provider_id", 1), d.get("reserved", 0),
            d["ts"], d.get("session_id", 7), d["event_id"], d.get("tid", 100003), payload)


BODY = b"".join(ev_of(d) for d in EVENTS)
CAPTURE = hdr(event_count=4) + table(TWO_TCP) + BODY
DATA_OFFSET = 40 + 4 + 2 * 34


def write(tmp_path, data: bytes, name="c.elog"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def read_all(source):
    with ElogReader(source) as r:
        return r, [tuple(rec) for rec in r]


# --- reading ------------------------------------------------------------------

def test_header_and_two_providers_named_tcp(tmp_path):
    r, recs = read_all(write(tmp_path, CAPTURE))
    assert r.header == (1_000_000, UTC0, 4, 0)
    assert r.header.capture_start == 1_000_000 and r.header.start_utc_us == UTC0
    assert r.header.event_count == 4 and r.header.dropped_events == 0
    assert [tuple(p) for p in r.providers] == [(1, "tcp"), (2, "tcp")]
    assert r.provider_names == {1: "tcp", 2: "tcp"}
    assert r.data_offset == DATA_OFFSET == 112
    assert len(recs) == 4


def test_records_header_only_and_payload(tmp_path):
    _, recs = read_all(write(tmp_path, CAPTURE))
    assert recs == [record_tuple(d) for d in EVENTS]
    create, _, _, end = recs
    assert create[0] == 32 and create[6] == 0xFFFFFFFE and create[8] == b""
    assert end[0] == 32 and end[6] == 0xFFFFFFFF and end[8] == b""
    assert recs[2][7] == -1                   # thread_id is signed
    assert recs[2][3] == 0xBEEF               # reserved copied through


def test_record_namedtuple_fields(tmp_path):
    with ElogReader(write(tmp_path, CAPTURE)) as r:
        rec = list(r)[1]
    assert isinstance(rec, Record)
    assert rec.event_length == 35 and rec.cpu == 3 and rec.provider_id == 2
    assert rec.timestamp == 1_000_010 and rec.session_id == 42 and rec.event_id == 100
    assert rec.thread_id == 100004 and rec.payload == b"\x01\x02\x03"
    assert rec.pack() == ev_of(EVENTS[1])


def test_unaligned_first_record_one_provider(tmp_path):
    data = hdr() + table([(9, "hpts")]) + ev(5, 1, b"abc", provider_id=9) + ev(6, 2, provider_id=9)
    r, recs = read_all(write(tmp_path, data))
    assert r.data_offset == 78
    assert [(x[4], x[6], x[8]) for x in recs] == [(5, 1, b"abc"), (6, 2, b"")]


def test_zero_providers_and_no_events(tmp_path):
    r, recs = read_all(write(tmp_path, hdr() + table([])))
    assert r.providers == [] and recs == [] and r.data_offset == 44 and r.truncated_bytes == 0


def test_provider_name_31_chars_and_garbage_after_nul(tmp_path):
    name31 = "p" * 31
    raw = struct.pack("<I", 2) + struct.pack(ENTRY, 1, name31.encode()) + struct.pack(ENTRY, 2, b"ab\0junk")
    r, _ = read_all(write(tmp_path, hdr() + raw))
    assert [tuple(p) for p in r.providers] == [(1, name31), (2, "ab")]


def test_provider_names_first_entry_wins(tmp_path):
    r, _ = read_all(write(tmp_path, hdr() + table([(3, "a"), (3, "b")])))
    assert r.provider_names == {3: "a"}


def test_reader_accepts_file_object():
    r, recs = read_all(io.BytesIO(CAPTURE))
    assert len(recs) == 4 and r.header.event_count == 4


def test_max_length_record(tmp_path):
    payload = bytes(range(256)) * 255 + b"x" * (65503 - 256 * 255)
    data = hdr() + table(TWO_TCP) + ev(1, 2, payload) + ev(3, 4)
    _, recs = read_all(write(tmp_path, data))
    assert recs[0][0] == 65535 and recs[0][8] == payload and recs[1][4] == 3


@pytest.mark.parametrize("chunk", [1, 7, 32, 33, 64, 1 << 20])
def test_chunk_boundaries(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(ElogReader, "CHUNK", chunk)
    _, recs = read_all(write(tmp_path, CAPTURE))
    assert recs == [record_tuple(d) for d in EVENTS]


def test_runs_cover_all_records(tmp_path, monkeypatch):
    monkeypatch.setattr(ElogReader, "CHUNK", 40)
    with ElogReader(write(tmp_path, CAPTURE)) as r:
        runs = [(bytes(buf), n, pos) for buf, n, pos in r.runs()]
    assert b"".join(b for b, _, _ in runs) == BODY
    assert sum(n for _, n, _ in runs) == 4
    pos = DATA_OFFSET
    for b, _, p in runs:
        assert p == pos
        pos += len(b)


# --- error paths ----------------------------------------------------------------

def fmt_error(tmp_path, data: bytes, name="c.elog") -> ElogFormatError:
    with pytest.raises(ElogFormatError) as ei:
        with ElogReader(write(tmp_path, data, name)) as r:
            list(r)
    return ei.value


def test_empty_file(tmp_path):
    assert str(fmt_error(tmp_path, b"")) == "File is empty"


@pytest.mark.parametrize("n", range(1, 40))
def test_short_header(tmp_path, n):
    e = fmt_error(tmp_path, hdr()[:n])
    assert str(e) == f"Unexpected end of file (read {n} of 40 bytes)"
    assert e.message == str(e)


@pytest.mark.parametrize("magic", [b"\0\0\0\0", b"ELOF", b"elog", b"GOLE"])
def test_bad_magic(tmp_path, magic):
    assert str(fmt_error(tmp_path, hdr(magic=magic) + table([]))) == "Invalid binary file: bad magic number"


def test_64_zero_bytes(tmp_path):
    assert str(fmt_error(tmp_path, bytes(64))) == "Invalid binary file: bad magic number"


@pytest.mark.parametrize("version", [0, 2, 0xFFFFFFFF])
def test_bad_version(tmp_path, version):
    e = fmt_error(tmp_path, hdr(version=version) + table([]))
    assert str(e) == f"Unsupported file version: {version} (expected 1)"


@pytest.mark.parametrize("count", [33, 34, 1000, 0xFFFFFFFF])
def test_provider_count_too_large(tmp_path, count):
    data = hdr() + struct.pack("<I", count) + struct.pack(ENTRY, 1, b"tcp") * 40
    e = fmt_error(tmp_path, data)
    assert str(e) == f"Invalid provider count {count} in file"
    assert e.offset == 40


def test_provider_count_32_is_fine(tmp_path):
    r, _ = read_all(write(tmp_path, hdr() + table([(i, f"p{i}") for i in range(1, 33)])))
    assert len(r.providers) == 32


@pytest.mark.parametrize("data", [
    hdr(),                                                  # no count at all
    hdr() + b"\x02\x00",                                    # half a count
    hdr() + struct.pack("<I", 2),                           # no entries
    hdr() + struct.pack("<I", 2) + struct.pack(ENTRY, 1, b"tcp"),          # one of two
    hdr() + table(TWO_TCP)[:-1],                            # last entry one byte short
], ids=["40", "42", "44", "78", "111"])
def test_short_provider_table(tmp_path, data):
    e = fmt_error(tmp_path, data)
    assert str(e).startswith("Unexpected end of file (read ")
    assert e.offset == len(data)


@pytest.mark.parametrize("bad_length", [0, 1, 31])
def test_bad_event_length_after_good_records(tmp_path, bad_length):
    good = ev_of(EVENTS[0]) + ev_of(EVENTS[1])
    bad = ev(9, 9, b"payload-of-bad-record", length=bad_length)
    data = hdr() + table(TWO_TCP) + good + bad + ev_of(EVENTS[3])
    seen = []
    with ElogReader(write(tmp_path, data)) as r:
        with pytest.raises(ElogFormatError) as ei:
            for rec in r:
                seen.append(tuple(rec))
    off = DATA_OFFSET + len(good)
    assert seen == [record_tuple(EVENTS[0]), record_tuple(EVENTS[1])]
    assert str(ei.value) == f"invalid event_length {bad_length} at offset {off}"
    assert ei.value.offset == off


@pytest.mark.parametrize("chunk", [1, 33, 100])
def test_bad_event_length_small_chunks(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(ElogReader, "CHUNK", chunk)
    good = ev_of(EVENTS[1]) * 3
    data = hdr() + table(TWO_TCP) + good + ev(1, 1, length=16)
    seen = []
    with pytest.raises(ElogFormatError) as ei:
        with ElogReader(write(tmp_path, data)) as r:
            for rec in r:
                seen.append(rec)
    assert len(seen) == 3
    assert ei.value.offset == DATA_OFFSET + len(good)


def test_bad_event_length_first_record(tmp_path):
    e = fmt_error(tmp_path, hdr() + table([]) + ev(1, 1, length=0))
    assert str(e) == "invalid event_length 0 at offset 44"


def test_corrupt_gz_not_gzip(tmp_path):
    e = fmt_error(tmp_path, CAPTURE, "c.elog.gz")
    assert isinstance(e, ElogFormatError)


def test_corrupt_gz_damaged_body(tmp_path):
    big = hdr() + table(TWO_TCP) + b"".join(ev(i, 100, bytes([i % 251]) * 50) for i in range(3000))
    gz = bytearray(gzip.compress(big))
    for i in range(len(gz) // 2, len(gz) // 2 + 64):
        gz[i] ^= 0xA5
    e = fmt_error(tmp_path, bytes(gz), "c.elog.gz")
    assert isinstance(e, ElogFormatError)


def test_corrupt_gz_bad_crc(tmp_path):
    gz = bytearray(gzip.compress(CAPTURE))
    gz[-8] ^= 0xFF                               # CRC32 of the member
    fmt_error(tmp_path, bytes(gz), "c.elog.gz")


@pytest.mark.parametrize("cut", [1, 10, 20])
def test_gz_cut_inside_preamble(tmp_path, cut):
    gz = gzip.compress(hdr() + table(TWO_TCP), compresslevel=0)
    fmt_error(tmp_path, gz[:cut + 10], "c.elog.gz")


def test_gz_empty_content(tmp_path):
    assert str(fmt_error(tmp_path, gzip.compress(b""), "c.elog.gz")) == "File is empty"


def test_gz_read(tmp_path):
    _, recs = read_all(write(tmp_path, gzip.compress(CAPTURE), "c.elog.gz"))
    assert recs == [record_tuple(d) for d in EVENTS]


def test_gz_cut_short_keeps_decoded_records(tmp_path):
    """A .gz whose end is missing (capture compressed while being written, or
    copied partially) must still give the records that decompress: the reader
    says so itself ("gzip stream cut short: what was decoded stands")."""
    n = 5000
    plain = hdr() + table(TWO_TCP) + b"".join(ev(i, 100, bytes(10)) for i in range(n))
    gz = gzip.compress(plain)
    cut = gz[:-30]
    import zlib
    decodable = zlib.decompressobj(31).decompress(cut)
    whole = (len(decodable) - DATA_OFFSET) // 42
    assert whole > 4000
    p = write(tmp_path, cut, "c.elog.gz")
    with ElogReader(p) as r:
        got = sum(1 for _ in r)
    assert got == whole


# --- truncation at every byte of the last record -----------------------------

@pytest.mark.parametrize("chunk", [1 << 20, 5])
def test_truncated_last_record_every_offset(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(ElogReader, "CHUNK", chunk)
    last = ev(2_000_000, 101, bytes(range(60)), provider_id=2)
    full = CAPTURE + last
    expected = [record_tuple(d) for d in EVENTS]
    for k in range(len(last)):
        data = full[:len(CAPTURE) + k]
        with ElogReader(write(tmp_path, data)) as r:
            recs = [tuple(x) for x in r]
            assert recs == expected, k
            assert r.truncated_bytes == k
    _, recs = read_all(write(tmp_path, full))
    assert len(recs) == 5


def test_truncated_every_offset_of_header_only_last_record(tmp_path):
    last = ev(3, SESSION_END)
    for k in range(32):
        _, recs = read_all(write(tmp_path, CAPTURE + last[:k]))
        assert len(recs) == 4


def test_truncated_length_claims_more_than_remaining(tmp_path):
    # event_length 200 but only 40 bytes remain: a truncated final record, not an error
    _, recs = read_all(write(tmp_path, CAPTURE + ev(1, 1, bytes(8), length=200)))
    assert len(recs) == 4


# --- writing --------------------------------------------------------------------

def test_writer_no_events_leaves_zero_bytes(tmp_path):
    p = tmp_path / "w.elog"
    w = ElogWriter(p, TWO_TCP)
    assert p.exists() and p.stat().st_size == 0
    assert w.header is None
    w.close(dropped_events=5)
    assert p.read_bytes() == b""


def test_writer_no_events_file_object():
    buf = io.BytesIO()
    with ElogWriter(buf, TWO_TCP):
        pass
    assert buf.getvalue() == b""


def test_writer_byte_for_byte(tmp_path):
    p = tmp_path / "w.elog"
    w = ElogWriter(p, TWO_TCP, start_utc_us=UTC0 + 5)
    for d in EVENTS:
        d = dict(d)
        w.write_event(provider_id=d["provider_id"], timestamp=d["ts"], session_id=d["session_id"],
                      event_id=d["event_id"], cpu=d["cpu"], thread_id=d["tid"],
                      payload=d.get("payload", b""), reserved=d.get("reserved", 0))
    w.flush()
    # while capturing: counts are 0 and capture_start is the first event's timestamp
    assert p.read_bytes() == hdr(1_000_000, UTC0 + 5, 0, 0) + table(TWO_TCP) + BODY
    assert w.header == (1_000_000, UTC0 + 5, 4, 0)
    w.close(dropped_events=17)
    assert p.read_bytes() == hdr(1_000_000, UTC0 + 5, 4, 17) + table(TWO_TCP) + BODY
    w.close(dropped_events=99)            # idempotent
    assert p.read_bytes()[32:40] == struct.pack("<Q", 17)


def _boot_us() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1000


def test_writer_start_utc_is_the_wall_clock_at_capture_start(tmp_path):
    """start_utc_us is the wall clock at the first event's own timestamp (µs
    since boot), not when the writer happened to see it: checked against
    the two clocks read here, with a first event 5 s older than the write."""
    p = tmp_path / "w.elog"
    ts = _boot_us() - 5_000_000
    before = time.time_ns() // 1000 - (_boot_us() - ts)
    with ElogWriter(p, [(1, "tcp")]) as w:
        w.write_event(provider_id=1, timestamp=ts, session_id=1, event_id=1)
    after = time.time_ns() // 1000 - (_boot_us() - ts)
    magic, version, cs_, utc, count, dropped = struct.unpack_from(HDR, p.read_bytes())
    assert (magic, version, cs_, count, dropped) == (b"ELOG", 1, ts, 1, 0)
    # before/after each read two clocks one after the other: on a busy
    # (or hypervisor-stolen) machine a preemption between the reads moves
    # them by that long, so allow 1 ms; the late anchor this guards
    # against would be 5 s off.
    assert before - 1000 <= utc <= after + 1000
    assert abs(utc - (time.time_ns() // 1000 - 5_000_000)) < 1_000_000


def test_writer_lazy_header_waits_for_first_event(tmp_path):
    """Nothing is written before the first event; its timestamp anchors the header."""
    p = tmp_path / "w.elog"
    w = ElogWriter(p, [(1, "tcp")])
    time.sleep(0.05)
    assert p.stat().st_size == 0
    ts = _boot_us()
    w.write_event(provider_id=1, timestamp=ts, session_id=1, event_id=1)
    w.close()
    _, _, cs_, utc, _, _ = struct.unpack_from(HDR, p.read_bytes())
    assert cs_ == ts and abs(utc - time.time_ns() // 1000) < 1_000_000


def test_writer_explicit_capture_start(tmp_path):
    p = tmp_path / "w.elog"
    with ElogWriter(p, [], capture_start=123, start_utc_us=456) as w:
        w.write_event(provider_id=1, timestamp=999, session_id=1, event_id=1)
    assert p.read_bytes() == hdr(123, 456, 1, 0) + table([]) + ev(999, 1, provider_id=1, session_id=1, tid=0)


def test_writer_write_records_buffer_as_is(tmp_path):
    p = tmp_path / "w.elog"
    buf = BODY
    with ElogWriter(p, TWO_TCP, start_utc_us=UTC0) as w:
        assert w.write_records(buf) == 4
        assert w.write_records(memoryview(buf)[:35 + 32], 2) == 2
        assert w.write_records(b"") == 0
        assert w.event_count == 6
    expected = hdr(1_000_000, UTC0, 6, 0) + table(TWO_TCP) + buf + buf[:67]
    assert p.read_bytes() == expected


def test_writer_write_record_roundtrip(tmp_path):
    src = write(tmp_path, CAPTURE)
    dst = tmp_path / "copy.elog"
    with ElogReader(src) as r, ElogWriter(dst, r.providers, start_utc_us=r.header.start_utc_us) as w:
        for rec in r:
            w.write_record(rec)
    assert dst.read_bytes() == CAPTURE


def test_writer_bad_buffer_refused_and_nothing_written(tmp_path):
    p = tmp_path / "w.elog"
    w = ElogWriter(p, TWO_TCP)
    with pytest.raises(ValueError):
        w.write_records(ev(1, 1)[:20])
    with pytest.raises(ValueError):
        w.write_records(ev(1, 1, length=8) + bytes(24))
    with pytest.raises(ValueError):
        w.write_records(ev(1, 1, bytes(4))[:-1])
    w.close()
    assert p.read_bytes() == b""


def test_writer_file_object_and_unseekable():
    class Pipe(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def seekable(self):
            return False

        def write(self, b):
            self.data += bytes(b)
            return len(b)

    pipe = Pipe()
    with ElogWriter(pipe, [(1, "tcp")], start_utc_us=1) as w:
        w.write_event(provider_id=1, timestamp=10, session_id=2, event_id=3)
    # counts cannot be patched on a pipe: they stay 0 (as after a killed capture)
    assert bytes(pipe.data) == hdr(10, 1, 0, 0) + table([(1, "tcp")]) + ev(10, 3, session_id=2, tid=0)

    buf = io.BytesIO()
    with ElogWriter(buf, [(1, "tcp")], start_utc_us=1) as w:
        w.write_event(provider_id=1, timestamp=10, session_id=2, event_id=3)
    assert buf.getvalue() == hdr(10, 1, 1, 0) + table([(1, "tcp")]) + ev(10, 3, session_id=2, tid=0)


def test_writer_gz_roundtrip(tmp_path):
    p = tmp_path / "w.elog.gz"
    with ElogWriter(p, TWO_TCP, start_utc_us=UTC0) as w:
        w.write_records(BODY)
    assert gzip.decompress(p.read_bytes()) == hdr(1_000_000, UTC0, 4, 0) + table(TWO_TCP) + BODY
    assert sorted(x.name for x in tmp_path.iterdir()) == ["w.elog.gz"]
    _, recs = read_all(p)
    assert recs == [record_tuple(d) for d in EVENTS]


def test_pack_event_matches_struct():
    assert pack_event(provider_id=2, timestamp=5, session_id=6, event_id=7, cpu=3, thread_id=-2,
                      payload=b"xy", reserved=1) == struct.pack(EVT, 34, 3, 2, 1, 5, 6, 7, -2) + b"xy"
    assert len(pack_event(provider_id=1, timestamp=0, session_id=0, event_id=0, payload=bytes(65503))) == 65535
    with pytest.raises(ValueError):
        pack_event(provider_id=1, timestamp=0, session_id=0, event_id=0, payload=bytes(65504))


def test_pack_provider_table_matches_struct():
    assert pack_provider_table(TWO_TCP) == table(TWO_TCP)
    assert pack_provider_table([]) == struct.pack("<I", 0)
    assert pack_provider_table([(5, "x" * 31)]) == table([(5, "x" * 31)])
    # A name that fills the field without its NUL (read from a capture) is
    # written back as the same 32 bytes; anything longer cannot be.
    assert pack_provider_table([(5, "x" * 32)])[4 + 2:] == b"x" * 32
    for bad in ([(5, "x" * 33)], [(i, "p") for i in range(33)], [(0x10000, "p")], [(5, "\u20ac")]):
        with pytest.raises(ElogFormatError):
            pack_provider_table(bad)


def test_count_records():
    assert count_records(b"") == 0
    assert count_records(BODY) == 4
    assert count_records(memoryview(BODY)) == 4
    for bad in (BODY[:-1], BODY + bytes(5), ev(1, 1, length=31) + bytes(100)):
        with pytest.raises(ValueError):
            count_records(bad)


# --- the construct declarations are the struct formats ------------------------

def test_declarations_equal_struct_formats():
    assert fmt.FileHeaderStruct.sizeof() == struct.calcsize(HDR) == 40
    assert fmt.ProviderEntryStruct.sizeof() == struct.calcsize(ENTRY) == 34
    assert fmt.EventHeaderStruct.sizeof() == struct.calcsize(EVT) == 32
    assert fmt.FILE_HEADER.format == HDR and fmt.PROVIDER_ENTRY.format == ENTRY
    assert fmt.EVENT_HEADER.format == EVT

    h = fmt.FileHeaderStruct.parse(hdr(11, 22, 33, 44))
    assert (h.magic, h.version, h.capture_start, h.start_utc_us, h.event_count, h.dropped_events) == \
        struct.unpack(HDR, hdr(11, 22, 33, 44))
    with pytest.raises(cs.ConstError):
        fmt.FileHeaderStruct.parse(hdr(magic=b"XLOG"))

    t = fmt.ProviderTableStruct.parse(table(TWO_TCP))
    assert t.count == 2 and [(e.provider_id, e.name) for e in t.entries] == TWO_TCP

    raw = struct.pack(EVT, 65535, 47, 2, 0xBEEF, 2**64 - 1, 2**63, 0xFFFFFFFD, -100003)
    e = fmt.EventHeaderStruct.parse(raw)
    assert (e.event_length, e.cpu, e.provider_id, e.reserved, e.timestamp, e.session_id,
            e.event_id, e.thread_id) == struct.unpack(EVT, raw)
    assert fmt.EventHeaderStruct.build(dict(e)) == raw


def test_constants():
    assert SESSION_END_ID == 0xFFFFFFFF and SESSION_CREATE_ID == 0xFFFFFFFE
    assert DUMP_COMPLETE_ID == 0xFFFFFFFD and fmt.FILE_MAX_PROVIDERS == 32
    assert fmt.MAGIC == b"ELOG" and fmt.VERSION == 1


# --- property-based -------------------------------------------------------------

def _read_never_crashes(data: bytes, name="f.elog", tmp=None):
    """Only ElogFormatError, only from construction or iteration."""
    src = io.BytesIO(data) if tmp is None else tmp
    try:
        r = ElogReader(src)
    except ElogFormatError:
        return None
    out = []
    try:
        for rec in r:
            assert rec.event_length >= 32 and len(rec.payload) == rec.event_length - 32
            out.append(rec)
    except ElogFormatError as e:
        assert e.offset is not None and e.offset >= r.data_offset
    r.close()
    return out


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(data):
    _read_never_crashes(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_body_after_valid_preamble(body):
    _read_never_crashes(hdr() + table(TWO_TCP) + body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_capture_never_crashes(data):
    buf = bytearray(CAPTURE + ev(5, 6, b"zz" * 20))
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        i = data.draw(st.integers(0, max(0, len(buf) - 1)))
        if kind == "flip" and buf:
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and buf:
            buf[i] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del buf[i:]
        elif kind == "insert":
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=40))
        elif kind == "delete":
            del buf[i:i + data.draw(st.integers(1, 40))]
    _read_never_crashes(bytes(buf))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_random_gz_never_crashes(tmp_path, data):
    p = tmp_path / "x.elog.gz"
    p.write_bytes(data)
    _read_never_crashes(b"", tmp=str(p))
    p.write_bytes(gzip.compress(data))
    _read_never_crashes(b"", tmp=str(p))


provider_st = st.lists(
    st.tuples(st.integers(0, 0xFFFF),
              st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=31)),
    max_size=32)

event_st = st.fixed_dictionaries(dict(
    provider_id=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 2**64 - 1),
    session_id=st.integers(0, 2**64 - 1),
    event_id=st.integers(0, 2**32 - 1),
    cpu=st.integers(0, 0xFFFF),
    thread_id=st.integers(-2**31, 2**31 - 1),
    payload=st.binary(max_size=300),
    reserved=st.integers(0, 0xFFFF),
))


def _expected_bytes(providers, events, utc, dropped):
    body = b"".join(struct.pack(EVT, 32 + len(e["payload"]), e["cpu"], e["provider_id"], e["reserved"],
                                e["timestamp"], e["session_id"], e["event_id"], e["thread_id"]) + e["payload"]
                    for e in events)
    if not events:
        return b""
    return hdr(events[0]["timestamp"], utc, len(events), dropped) + table(providers) + body


@settings(max_examples=150, deadline=None)
@given(provider_st, st.lists(event_st, max_size=25), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_writer_reader_roundtrip(providers, events, utc, dropped):
    buf = io.BytesIO()
    w = ElogWriter(buf, providers, start_utc_us=utc)
    for e in events:
        w.write_event(**e)
    w.close(dropped_events=dropped)
    data = buf.getvalue()
    assert data == _expected_bytes(providers, events, utc, dropped)
    if not events:
        return
    with ElogReader(io.BytesIO(data)) as r:
        assert r.header == (events[0]["timestamp"], utc, len(events), dropped)
        assert [tuple(p) for p in r.providers] == [tuple(p) for p in providers]
        recs = list(r)
        assert r.truncated_bytes == 0
    assert [(x.provider_id, x.timestamp, x.session_id, x.event_id, x.cpu, x.thread_id, x.payload,
             x.reserved) for x in recs] == \
        [(e["provider_id"], e["timestamp"], e["session_id"], e["event_id"], e["cpu"], e["thread_id"],
          e["payload"], e["reserved"]) for e in events]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(providers=provider_st, events=st.lists(event_st, min_size=1, max_size=15))
def test_gz_roundtrip(tmp_path, providers, events):
    p = tmp_path / "r.elog.gz"
    with ElogWriter(p, providers, start_utc_us=UTC0) as w:
        for e in events:
            w.write_event(**e)
    plain = _expected_bytes(providers, events, UTC0, 0)
    assert gzip.decompress(p.read_bytes()) == plain   # counts patched in the .gz too
    with ElogReader(p) as r:
        assert [tuple(x) for x in r.providers] == [tuple(x) for x in providers]
        assert [tuple(x) for x in r] == [
            (32 + len(e["payload"]), e["cpu"], e["provider_id"], e["reserved"], e["timestamp"],
             e["session_id"], e["event_id"], e["thread_id"], e["payload"]) for e in events]
