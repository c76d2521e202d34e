"""Ring protocol on the real kernel (model: FreeBSD ktest_eventlog buffer tests)."""
from __future__ import annotations

import os
import struct
import threading
import time

import pytest

from pyelog.loader import Loader, Subscription, LEVEL_TRACE, SESSION_CREATE_ID
from pyelog.ring import iter_records

pytestmark = pytest.mark.kernel

B128K = 128 * 1024


def _loader(nsubs=1, size=B128K, **kw):
    from pyelog.providers import test as tp
    L = Loader([tp.provider(**kw)])
    subs = [L.add_ring_subscriber(size, [Subscription("test", LEVEL_TRACE, 0xFFFFFFFF)])
            for _ in range(nsubs)]
    L.start()
    return L, subs, tp.TestDriver(L, L.providers[0])


def _records(sub):
    out = []
    for run in sub.drain(0):
        for hdr, payload in iter_records(run):
            out.append((hdr, bytes(payload)))
    return out


def test_fill_to_capacity_exact_drops():
    from pyelog.providers import test as tp
    L, (sub,), d = _loader()
    try:
        per_buf = B128K // 36                         # 3640
        d.create_session(1, cpu=0)                    # SESSION_CREATE: 32 bytes
        # First buffer: SESSION_CREATE + 3640 SIMPLE events = exactly 131072 bytes.
        d.emit(1, tp.SIMPLE, per_buf, 0, cpu=0)
        active, swap_ok, pos, rlen = sub.reader.state(0)
        assert (active, swap_ok, pos, rlen) == (0, 1, 32 + per_buf * 36, 0)
        assert sub.stats().dropped == 0
        # Next event: proactive swap, nothing lost.
        d.emit(1, tp.SIMPLE, 1, per_buf, cpu=0)
        active, swap_ok, pos, rlen = sub.reader.state(0)
        assert (active, swap_ok, pos, rlen) == (1, 0, 36, B128K)
        assert sub.stats().dropped == 0 and sub.stats().swaps == 1
        # Fill the second buffer: 3640 records fit, the 3641st is the first drop.
        d.emit(1, tp.SIMPLE, per_buf - 1, per_buf + 1, cpu=0)
        assert sub.stats().dropped == 0
        d.emit(1, tp.SIMPLE, 1, 2 * per_buf, cpu=0)
        assert sub.stats().dropped == 1
        d.emit(1, tp.SIMPLE, 9, 2 * per_buf + 1, cpu=0)
        st = sub.stats()
        assert st.dropped == 10 and sub.reader.per_cpu_dropped()[0] == 10
        recs = _records(sub)
        assert recs[0][0][6] == SESSION_CREATE_ID and recs[0][0][0] == 32
        seqs = [struct.unpack("<I", p)[0] for h, p in recs[1:]]
        assert seqs == list(range(2 * per_buf))       # dropped ones are exactly the last 10
        assert all(h[0] == 36 and h[1] == 0 for h, _ in recs[1:])
        # Drained: both buffers free again, a new event goes through.
        d.emit(1, tp.SIMPLE, 1, 99999, cpu=0)
        assert [struct.unpack("<I", p)[0] for _, p in _records(sub)] == [99999]
    finally:
        L.close()


def _producer(d, sid, cpu, stop, counts, kind):
    os.sched_setaffinity(0, {cpu})
    seq = 0
    while not stop.is_set():
        seq += d.emit(sid, kind, 32, seq)
    counts[sid] = seq


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_two_cpus_full_speed_exact_accounting():
    from pyelog.providers import test as tp
    L, (sub,), d = _loader(size=256 * 1024)
    try:
        cpus = sorted(os.sched_getaffinity(0))[:2]
        for sid in (1, 2):
            d.create_session(sid)
        stop = threading.Event()
        counts: dict[int, int] = {}
        threads = [threading.Thread(target=_producer, args=(d, sid, cpu, stop, counts, tp.COMPLEX))
                   for sid, cpu in zip((1, 2), cpus)]
        got = {1: [], 2: []}
        bad = []

        def consume():
            for run in sub.drain(0.05):
                for hdr, p in iter_records(run):
                    if hdr[6] == SESSION_CREATE_ID:
                        continue
                    sid, value, status, flags, counter = struct.unpack("<QIBxxxIi", p)
                    if hdr[0] != 56 or hdr[6] != 3 or sid != hdr[5] or status != 2 or counter != -7:
                        bad.append(hdr)
                    got[sid].append(value)

        for t in threads:
            t.start()
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            consume()
        stop.set()
        for t in threads:
            t.join()
        consume()
        consume()
        st = sub.stats()
        assert not bad
        received = 0
        for sid in (1, 2):
            vals = sorted(got[sid])
            assert len(vals) == len(set(vals)), "duplicated records"
            assert set(vals) <= set(range(counts[sid]))
            received += len(vals)
        emitted = counts[1] + counts[2]
        assert emitted == received + st.dropped, (emitted, received, st)
        assert emitted > 100000
    finally:
        L.close()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_nested_writer_on_same_cpu_keeps_records_intact():
    """A hard-irq writer (IPI via BPF_PROG_TEST_RUN) lands on top of a
    process-context writer (syscall tracepoint) on the same CPU."""
    from pyelog.providers import test as tp
    L, (sub,), d = _loader(size=1024 * 1024, getppid_hook=True)
    try:
        cpus = sorted(os.sched_getaffinity(0))[:2]
        d.create_session(1)
        d.create_session(2)
        stop = threading.Event()
        counts = {}

        def syscaller():
            os.sched_setaffinity(0, {cpus[0]})
            d.arm_getppid(1)
            while not stop.is_set():
                for _ in range(1000):
                    os.getppid()
            counts[1] = d.disarm_getppid()

        def interrupter():
            os.sched_setaffinity(0, {cpus[1]})
            seq = 0
            while not stop.is_set():
                seq += d.emit(2, tp.SIMPLE, 32, seq, cpu=cpus[0])
            counts[2] = seq

        got = {1: [], 2: []}

        def consume():
            for run in sub.drain(0.05):
                for hdr, p in iter_records(run):
                    if hdr[6] == SESSION_CREATE_ID:
                        continue
                    assert hdr[0] == 36 and hdr[1] == cpus[0] and hdr[6] == 0
                    got[hdr[5]].append(struct.unpack("<I", p)[0])

        ts = [threading.Thread(target=syscaller), threading.Thread(target=interrupter)]
        for t in ts:
            t.start()
        t_end = time.monotonic() + 2.0
        while time.monotonic() < t_end:
            consume()
        stop.set()
        for t in ts:
            t.join()
        consume()
        consume()
        received = 0
        for sid in (1, 2):
            vals = got[sid]
            assert len(vals) == len(set(vals))
            assert set(vals) <= set(range(counts[sid]))
            received += len(vals)
        assert counts[1] + counts[2] == received + sub.stats().dropped
        assert counts[1] > 0 and counts[2] > 0
    finally:
        L.close()
