# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog export``: captures as a Parquet dataset (hand-built bytes, the decoder, incremental runs)."""
from __future__ import annotations

import datetime
import os
import random
import socket
import struct

import pytest

pa = pytest.importorskip("pyarrow")   # in the test extras: present wherever `make test` runs
import pyarrow.dataset as ds  # noqa: E402

from pyelog import cli  # noqa: E402
from pyelog.records.eventlog import SESSION_CREATE_ID, SESSION_END_ID  # noqa: E402
from pyelog.records.format import ElogReader, ElogWriter  # noqa: E402
from pyelog.schema.consumer import ConsumerSet  # noqa: E402
from pyelog.schema.runtime import enum_functions, flag_functions  # noqa: E402

UTC0 = 1_764_633_600_000_000        # 2025-12-02 00:00:00 UTC, in µs
DAY = 86_400_000_000


def table(out, provider: str, event: str):
    """One exported table, rows in file order, with host and day."""
    return ds.dataset(out / provider / event, format="parquet", partitioning="hive").to_table()


def export(*args) -> int:
    return cli.main(["export", *map(str, args)])


@pytest.fixture
def hand(tmp_path):
    """A capture built byte by byte from the schema's C layouts (no pyelog encoder)."""
    path = tmp_path / "hand.elog"
    w = ElogWriter(path, [(1, "tcp"), (7, "nosuch")], capture_start=1000, start_utc_us=UTC0 + DAY - 500)
    ip = struct.pack("<4sH2x4sH2x", socket.inet_aton("10.1.2.3"), socket.htons(443),
                     socket.inet_aton("192.168.0.9"), socket.htons(51000))
    w.write_event(provider_id=1, timestamp=1000, session_id=5, event_id=SESSION_CREATE_ID, cpu=1,
                  thread_id=77, payload=struct.pack("<QiH16s2x", 99, 4242, 2, b"nginx"))
    w.write_event(provider_id=1, timestamp=1100, session_id=5, event_id=0, cpu=1, thread_id=77,
                  payload=ip)
    w.write_event(provider_id=1, timestamp=1200, session_id=5, event_id=1000, payload=b"\x02\x01")
    # OUT cut after ack: the other fields read as 0, as the decoder reads them.
    w.write_event(provider_id=1, timestamp=1300, session_id=5, event_id=101,
                  payload=struct.pack("<II", 7, 8))
    w.write_event(provider_id=1, timestamp=1400, session_id=5, event_id=4242, payload=b"\xde\xad")
    w.write_event(provider_id=7, timestamp=1500, session_id=6, event_id=3, payload=b"xyz")
    # 600 µs after the first: past midnight UTC, the next day's partition.
    w.write_event(provider_id=1, timestamp=1600, session_id=5, event_id=1000, payload=b"\x01\x08")
    w.write_event(provider_id=1, timestamp=1700, session_id=5, event_id=SESSION_END_ID)
    w.close()
    return path


def test_hand_built_capture(hand, tmp_path):
    out = tmp_path / "ds"
    assert export(hand, "-o", out, "--host", "web-1") == 0
    ip = table(out, "tcp", "CONN_SET_IP_V4").to_pylist()
    assert len(ip) == 1
    row = ip[0]
    assert (row["src_addr"], row["src_port"], row["dst_addr"], row["dst_port"]) == \
        ("10.1.2.3", 443, "192.168.0.9", 51000)
    assert row["session_id"] == 5 and row["cpu"] == 1 and row["thread_id"] == 77
    assert row["boot_us"] == 1100
    assert row["ts"] == datetime.datetime(2025, 12, 2, 23, 59, 59, 999600, tzinfo=datetime.timezone.utc)
    assert row["host"] == "web-1" and row["capture"] == "hand.elog"
    assert str(row["day"]) == "2025-12-02"

    create = table(out, "tcp", "SESSION_CREATE").to_pylist()[0]
    assert (create["netns"], create["pid"], create["family"], create["comm"]) == (99, 4242, 2, "nginx")

    states = table(out, "tcp", "STATE_CHANGE").sort_by("boot_us").to_pylist()
    assert [(r["old_state"], r["old_state_name"], r["new_state"], r["new_state_name"], str(r["day"]))
            for r in states] == [(2, "SYN_SENT", 1, "ESTABLISHED", "2025-12-02"),
                                 (1, "ESTABLISHED", 8, "CLOSE_WAIT", "2025-12-03")]
    assert sorted(os.listdir(out / "tcp" / "STATE_CHANGE" / "host=web-1")) == \
        ["day=2025-12-02", "day=2025-12-03"]

    assert [(r["record"], r["length"]) for r in states] == [(2, 2), (6, 2)]
    o = table(out, "tcp", "OUT").to_pylist()[0]
    assert (o["record"], o["length"]) == (3, 8)
    assert (o["seq"], o["ack"], o["flags"], o["flags_name"], o["len"], o["state"], o["state_name"]) == \
        (7, 8, 0, "", 0, 0, None)

    unknown = table(out, "tcp", "unknown-events").to_pylist()
    assert [(r["event_id"], r["event"], r["payload"]) for r in unknown] == [(4242, None, b"\xde\xad")]
    other = table(out, "nosuch", "unknown-events").to_pylist()
    assert [(r["event_id"], r["payload"], r["session_id"]) for r in other] == [(3, b"xyz", 6)]
    assert len(table(out, "tcp", "SESSION_END")) == 1
    # Every record is somewhere, once.
    total = sum(ds.dataset(out / p, format="parquet", partitioning="hive").count_rows()
                for p in ("tcp", "nosuch"))
    assert total == 8


def _random_capture(path, consumer, seed: int, n: int = 6000):
    """Every TCP event kind with random payload bytes, some short, some long."""
    rng = random.Random(seed)
    kinds = [(eid, size or 0) for eid, (_, _, _, size) in consumer.events.items()]
    w = ElogWriter(path, [(1, "tcp")], capture_start=10, start_utc_us=UTC0)
    t = 10
    for _ in range(n):
        eid, size = rng.choice(kinds)
        length = rng.choice([size, size, size, rng.randrange(0, size + 9)])
        t += rng.randrange(0, 50)
        w.write_event(provider_id=1, timestamp=t, session_id=rng.randrange(1, 40), event_id=eid,
                      cpu=rng.randrange(4), thread_id=rng.randrange(-1, 9999),
                      payload=rng.randbytes(length))
    w.close()


def test_columns_equal_the_decoder(tmp_path):
    """Each row, field by field, is what the generated decoder gives for that record."""
    consumer = ConsumerSet.default().get("tcp")
    path = tmp_path / "r.elog"
    _random_capture(path, consumer, seed=11)
    out = tmp_path / "ds"
    assert export(path, "-o", out, "--host", "h") == 0
    by_kind: dict[str, list] = {}
    with ElogReader(path) as r:
        for rec in r:
            by_kind.setdefault(consumer.event_name(rec.event_id), []).append(rec)
    for name, recs in by_kind.items():
        event = consumer.schema_event(recs[0].event_id)
        varlen = any(f.is_varlen for f in event.struct.fields) if event.struct else False
        rows = table(out, "tcp", "unknown-events" if varlen else name).to_pylist()
        if varlen:
            rows = [x for x in rows if x["event_id"] == recs[0].event_id]
        assert len(rows) == len(recs), name
        for rec, row in zip(recs, rows):
            assert (row["boot_us"], row["cpu"], row["thread_id"], row["session_id"]) == \
                (rec.timestamp, rec.cpu, rec.thread_id, rec.session_id)
            if varlen:
                assert row["payload"] == rec.payload
                continue
            fields = consumer.decode(rec.event_id, rec.payload) if rec.payload or not event.struct \
                else consumer.decode(rec.event_id, bytes(event.struct.size))
            for f in (event.struct.fields if event.struct else []):
                assert row[f.name] == fields[f.name], (name, f.name)
                if f.annotation == "enum":
                    label = enum_functions(f.table, consumer.enums[f.table])[0]
                    assert row[f.name + "_name"] == label(fields[f.name])
                elif f.annotation == "flag":
                    label = flag_functions(f.table, consumer.flags[f.table])[0]
                    assert row[f.name + "_name"] == label(fields[f.name])


def test_incremental(hand, tmp_path, capsys):
    out = tmp_path / "ds"
    assert export(hand, "-o", out, "--host", "a") == 0
    files = sorted(p for p in out.rglob("*.parquet"))
    stamps = [p.stat().st_mtime_ns for p in files]
    capsys.readouterr()
    assert export(tmp_path, "-o", out, "--host", "a") == 0        # a directory of captures
    assert "unchanged" in capsys.readouterr().err
    assert [p.stat().st_mtime_ns for p in files] == stamps
    # The capture grows (a capture still being written): exported again, replacing its files.
    with ElogReader(hand) as r:
        recs = list(r)
        providers = [(p, n) for p, n in r.provider_names.items()]
        h = r.header
    w = ElogWriter(hand, providers, capture_start=h.capture_start, start_utc_us=h.start_utc_us)
    for rec in recs[:2]:
        w.write_records(rec.pack(), 1)
    w.close()
    assert export(hand, "-o", out, "--host", "a") == 0
    assert "exported" in capsys.readouterr().err
    assert ds.dataset(out / "tcp", format="parquet", partitioning="hive").count_rows() == 2
    assert not (out / "tcp" / "STATE_CHANGE").exists() or \
        ds.dataset(out / "tcp" / "STATE_CHANGE", format="parquet").count_rows() == 0
    # Another host's copy of the same file is another capture.
    assert export(hand, "-o", out, "--host", "b") == 0
    assert ds.dataset(out / "tcp", format="parquet", partitioning="hive").count_rows() == 4


def test_duckdb_reads_one_host(hand, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "ds"
    for host in ("a", "b", "c"):
        assert export(hand, "-o", out, "--host", host) == 0
    q = (f"SELECT host, count(*) FROM read_parquet('{out}/tcp/STATE_CHANGE/*/*/*.parquet', "
         "hive_partitioning=true) WHERE host = 'b' GROUP BY host")
    assert duckdb.sql(q).fetchall() == [("b", 2)]
    plan = duckdb.sql("EXPLAIN ANALYZE " + q).fetchall()[0][1]
    assert "host=a" not in plan


def test_damaged_capture_exports_its_whole_records(hand, tmp_path, capsys):
    data = hand.read_bytes()
    cut = tmp_path / "cut.elog"
    cut.write_bytes(data[:-5])
    out = tmp_path / "ds"
    assert export(cut, "-o", out) == 1
    err = capsys.readouterr().err
    assert "offset" in err and "Traceback" not in err
    assert ds.dataset(out / "tcp", format="parquet", partitioning="hive").count_rows() == 6


def test_json_capture_is_one_line_error(tmp_path, capsys):
    (tmp_path / "x.jsonl").write_text("")
    assert export(tmp_path / "x.jsonl", "-o", tmp_path / "ds") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "convert" in err[0]


def test_parts_of_a_killed_export_are_removed(hand, tmp_path, capsys):
    """What a SIGKILLed export leaves (unnamed part files, no lock held) is
    removed by the next one; a part another export is writing (locked) stays."""
    import fcntl
    out = tmp_path / "ds"
    assert export(hand, "-o", out, "--host", "a") == 0
    d = next((out / "tcp" / "OUT").glob("host=a/day=*"))
    stale = d / ".0123456789abcdef0123.parquet.k1ll3d.tmp"
    stale.write_bytes(b"PAR1 cut short")
    busy = d / ".fedcba9876543210fedc.parquet.wr1t1n.tmp"
    busy.write_bytes(b"PAR1 being written")
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        capsys.readouterr()
        assert export(hand, "-o", out, "--host", "a") == 0
        assert "removed 1 unfinished part files" in capsys.readouterr().err
        assert not stale.exists() and busy.exists()
    finally:
        os.close(fd)
    assert ds.dataset(out / "tcp", format="parquet", partitioning="hive").count_rows() > 0
