# SPDX-License-Identifier: BSD-2-Clause
"""Rotating captures: one capture split over numbered files, no record lost or written twice.

Checked against what was written, record by record:

* :class:`pyelog.tools.rotate.RotatingWriter` on runs of numbered records
  built here: file names, size and time limits (split at record
  boundaries, an oversized record alone in its file), ``max_files``, drops
  counted per file, gzip, no events;
* the ring drained into rotating files (``kernel``): the test provider's
  numbered events come back each exactly once, files filled to the limit;
* the recorder as users run it (``--rotate-size``, ``--max-files``;
  ``kernel``, traffic in namespaces of the test's own): every event it
  reports received is in exactly one file, and the oldest files go first.

(Option parsing, ``--rotate-size`` and the others: tests/test_cli_options.py.)
"""
from __future__ import annotations

import glob
import os
import struct

import pytest

from pyelog.records.format import ElogReader, pack_event
from pyelog.tools.rotate import RotatingWriter, rotated_name, split_point
from tests.helpers.netns import exchange_alone as exchange
from tests.helpers.recorder import Recorder, assert_header_counts, records

PROVIDERS = [(1, "test")]
PREAMBLE = 40 + 4 + 34                          # header + one-entry provider table


def run_of(first: int, n: int, ts0: int = 1000) -> bytes:
    """n SIMPLE-like records of 36 bytes carrying seq first..first+n-1."""
    return b"".join(pack_event(provider_id=1, timestamp=ts0 + s, session_id=7, event_id=0,
                               payload=struct.pack("<I", s)) for s in range(first, first + n))


def seqs(path) -> list[int]:
    with ElogReader(path) as r:
        recs = list(r)
        assert r.header.event_count == len(recs)
        assert r.truncated_bytes == 0
    return [struct.unpack("<I", x.payload)[0] for x in recs]


@pytest.mark.parametrize("path, index, want", [
    ("cap.elog", 0, "cap.elog"),
    ("cap.elog", 1, "cap.1.elog"),
    ("dir/cap.elog.gz", 12, "dir/cap.12.elog.gz"),
    ("cap", 2, "cap.2"),
    ("x.bin", 3, "x.3.bin"),
    ("x.tar.gz", 1, "x.1.tar.gz"),
])
def test_rotated_name(path, index, want):
    assert rotated_name(path, index) == want


def test_split_point():
    buf = run_of(0, 5)
    assert split_point(buf, 0) == (0, 0)
    assert split_point(buf, 71) == (36, 1)
    assert split_point(buf, 72) == (72, 2)
    assert split_point(buf, 10_000) == (180, 5)


def test_size_rotation_splits_runs_at_record_boundaries(tmp_path):
    base = str(tmp_path / "r.elog")
    w = RotatingWriter(base, PROVIDERS, max_bytes=PREAMBLE + 10 * 36)
    seq = 0
    for n in (25, 3, 1, 40, 11):                 # runs straddle file limits
        assert w.write_records(run_of(seq, n)) == n
        seq += n
    w.close()
    assert w.event_count == seq == 80
    assert w.files == [rotated_name(base, i) for i in range(8)]
    got = []
    for f in w.files:
        assert os.path.getsize(f) <= PREAMBLE + 360
        got += seqs(f)
    assert got == list(range(80))                # none lost, none twice, in order
    assert [len(seqs(f)) for f in w.files] == [10] * 8


def test_oversized_record_gets_its_own_file(tmp_path):
    base = str(tmp_path / "big.elog")
    w = RotatingWriter(base, PROVIDERS, max_bytes=PREAMBLE + 100)
    big = pack_event(provider_id=1, timestamp=5, session_id=1, event_id=9, payload=bytes(500))
    w.write_records(run_of(0, 2) + big + run_of(2, 1))
    w.close()
    with ElogReader(w.files[1]) as r:
        assert [x.event_id for x in r] == [9]
    assert seqs(w.files[0]) == [0, 1] and seqs(w.files[2]) == [2]


def test_time_rotation_and_idle_tick(tmp_path):
    now = [0.0]
    base = str(tmp_path / "t.elog")
    w = RotatingWriter(base, PROVIDERS, max_seconds=10, clock=lambda: now[0])
    w.write_records(run_of(0, 3))
    now[0] = 5
    w.write_records(run_of(3, 2))
    now[0] = 10
    w.tick()                                     # idle: the file is finalised on time
    assert len(w.files) == 1 and seqs(base) == [0, 1, 2, 3, 4]
    now[0] = 30
    w.tick()                                     # nothing open, nothing new
    assert len(w.files) == 1
    w.write_records(run_of(5, 1))
    now[0] = 41
    w.write_records(run_of(6, 1))                # due: rotates before writing
    w.close()
    assert [seqs(f) for f in w.files] == [[0, 1, 2, 3, 4], [5], [6]]


def test_max_files_keeps_the_newest(tmp_path):
    base = str(tmp_path / "m.elog")
    w = RotatingWriter(base, PROVIDERS, max_bytes=PREAMBLE + 36, max_files=3)
    for s in range(7):
        w.write_records(run_of(s, 1))
        assert len(os.listdir(tmp_path)) <= 3
    w.close()
    left = sorted(os.listdir(tmp_path))
    assert left == ["m.4.elog", "m.5.elog", "m.6.elog"]
    assert [seqs(tmp_path / f) for f in left] == [[4], [5], [6]]


def test_drops_are_counted_per_file(tmp_path):
    drops = [0]
    w = RotatingWriter(str(tmp_path / "d.elog"), PROVIDERS, max_bytes=PREAMBLE + 72,
                       dropped=lambda: drops[0])
    w.write_records(run_of(0, 2))
    drops[0] = 5
    w.write_records(run_of(2, 2))                # file 0 closes having seen 5 drops
    drops[0] = 7
    w.close()
    heads = []
    for f in w.files:
        with ElogReader(f) as r:
            heads.append(r.header.dropped_events)
    assert heads == [5, 2]


def test_drops_between_files_go_to_the_next(tmp_path):
    # A time rotation finishes a file when idle; the next opens with the
    # next record. Drops in between belong to the later file: the headers
    # sum to the capture's total, which close() is given.
    drops, now = [0], [0.0]
    w = RotatingWriter(str(tmp_path / "t.elog"), PROVIDERS, max_seconds=1.0,
                       dropped=lambda: drops[0], clock=lambda: now[0])
    w.write_records(run_of(0, 2))
    drops[0] = 4
    now[0] = 1.5
    w.tick()                                     # file 0 finished: 4 drops
    drops[0] = 10                                # ... while no file is open
    w.write_records(run_of(2, 2))
    drops[0] = 11
    w.close(dropped_events=13)                   # the capture's final total
    heads = []
    for f in w.files:
        with ElogReader(f) as r:
            heads.append(r.header.dropped_events)
    assert heads == [4, 9] and sum(heads) == 13


def test_gzip_rotation(tmp_path):
    base = str(tmp_path / "g.elog.gz")
    w = RotatingWriter(base, PROVIDERS, max_bytes=PREAMBLE + 360)
    w.write_records(run_of(0, 15))
    w.close()
    assert w.files == [base, str(tmp_path / "g.1.elog.gz")]
    assert seqs(w.files[0]) + seqs(w.files[1]) == list(range(15))
    assert not list(tmp_path.glob("*.partial"))


def test_no_events_leaves_one_empty_file(tmp_path):
    # As elog: the -o file exists (0 bytes) even when nothing arrived.
    w = RotatingWriter(str(tmp_path / "e.elog"), PROVIDERS, max_bytes=4096)
    w.close()
    assert os.listdir(tmp_path) == ["e.elog"] and os.path.getsize(tmp_path / "e.elog") == 0


@pytest.mark.kernel
def test_ring_to_rotating_files_exact(tmp_path):
    """Numbered events from the test provider, drained through rotation: each exactly once."""
    from pyelog.records.format import Provider
    from pyelog.kernel.loader import LEVEL_TRACE, Loader, Subscription
    from pyelog.providers import test as tp

    loader = Loader([tp.provider()])
    sub = loader.add_ring_subscriber(128 * 1024, [Subscription("test", LEVEL_TRACE, 0xFFFFFFFF)])
    total = 6000
    with loader:
        d = tp.TestDriver(loader, loader.providers[0])
        w = RotatingWriter(str(tmp_path / "ring.elog"), [Provider(*p) for p in sub.providers()],
                           max_bytes=8 * 1024, dropped=lambda: sub.stats().dropped)
        d.create_session(1)
        seq = 0
        while seq < total:
            seq += d.emit(1, tp.SIMPLE, min(700, total - seq), seq)
            for run in sub.drain(0):
                w.write_records(run)
        for run in sub.drain(0):
            w.write_records(run)
        assert sub.stats().dropped == 0
        w.close()
    got = []
    for f in w.files:
        assert os.path.getsize(f) <= 8 * 1024
        with ElogReader(f) as r:
            recs = list(r)
            assert r.header.event_count == len(recs)
        got += [struct.unpack("<I", x.payload)[0] for x in recs if x.event_id == tp.SIMPLE]
    assert got == list(range(total))
    assert w.event_count == total + 1            # and the SESSION_CREATE
    # Files are filled to the limit (less than one record of slack each).
    assert len(w.files) == -(-(total * 36 + 32) // ((8 * 1024 - PREAMBLE) // 36 * 36))


# -- the recorder (from test_capture_live.py) ------------------------------------------

@pytest.mark.kernel
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


@pytest.mark.kernel
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
