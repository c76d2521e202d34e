"""Ring protocol on the real kernel (model: FreeBSD ktest_eventlog buffer tests)."""
from __future__ import annotations

import os
import struct
import threading
import time

import pytest

from pyelog.kernel.loader import Loader, Subscription, LEVEL_TRACE, SESSION_CREATE_ID
from pyelog.kernel.ring import iter_records

pytestmark = pytest.mark.kernel

B128K = 128 * 1024


def _loader(nsubs=1, size=B128K, chunk=None, **kw):
    from pyelog.providers import test as tp
    L = Loader([tp.provider(**kw)])
    subs = [L.add_ring_subscriber(size, [Subscription("test", LEVEL_TRACE, 0xFFFFFFFF)],
                                  chunk_size=chunk)
            for _ in range(nsubs)]
    L.start()
    return L, subs, tp.TestDriver(L, L.providers[0])


def _records(sub):
    out = []
    for run in sub.drain(0):
        for hdr, payload in iter_records(run):
            out.append((hdr, bytes(payload)))
    return out


# chunk=64 KiB splits each 128 KiB buffer in two (as 1 GiB buffers are split
# into 256 MiB chunks): 65536 % 36 != 0, so a record crosses the chunk end.
@pytest.mark.parametrize("chunk", [None, 65536], ids=["whole", "chunked"])
def test_fill_to_capacity_exact_drops(chunk):
    from pyelog.providers import test as tp
    L, (sub,), d = _loader(chunk=chunk)
    try:
        assert sub.reader.chunks == (1 if chunk is None else 2)
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
@pytest.mark.parametrize("chunk", [None, 65536], ids=["whole", "chunked"])
def test_two_cpus_full_speed_exact_accounting(chunk):
    from pyelog.providers import test as tp
    L, (sub,), d = _loader(size=256 * 1024, chunk=chunk)
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


def _emit_sized(d, tp, seq, record_len):
    """One RAW (or, for odd seq, GATHER) record of exactly record_len bytes."""
    if seq % 2:
        return d.emit(1, tp.GATHER, 1, seq, size=record_len - 32 - 8, cpu=0)
    return d.emit(1, tp.RAW, 1, seq, size=record_len - 32, cpu=0)


def _check_sized(recs, expected):
    assert [(h[0], struct.unpack_from("<Q", p)[0]) for h, p in recs] == expected
    for h, p in recs:
        if h[6] == 101 and h[0] >= 48:            # GATHER: the tail starts with seq + 1
            assert struct.unpack_from("<Q", p, 8)[0] == struct.unpack_from("<Q", p)[0] + 1


def test_chunked_records_of_every_size_cross_chunk_ends_whole():
    """Records up to 65535 bytes, some ending exactly on a chunk end, all
    come back whole and in order from 64 KiB chunks of a 256 KiB buffer."""
    import random
    from pyelog.providers import test as tp
    L, (sub,), d = _loader(size=256 * 1024, chunk=65536)
    try:
        assert sub.reader.chunks == 4
        d.create_session(1, cpu=0)
        _records(sub)                                  # drop SESSION_CREATE
        rnd = random.Random(4)
        # The second record ends exactly on the first chunk end; then sizes
        # from the smallest to the largest record.
        sizes = [32768, 32768, 40, 65535, 40, 65535 - 7]
        sizes += [rnd.choice([rnd.randint(48, 65535), rnd.randint(48, 600)]) for _ in range(600)]
        expected, got = [], []
        pending = 0
        for seq, ln in enumerate(sizes):
            # Drain only when the two buffers might not hold the next record
            # (each holds >= 256 KiB - 64 KiB before it swaps): buffers fill
            # far, and their records cross every chunk end.
            if pending + ln > 2 * (256 - 64) * 1024:
                got += _records(sub)
                pending = 0
            assert _emit_sized(d, tp, seq, ln) == 1
            expected.append((ln, seq))
            pending += ln
        got += _records(sub)
        st = sub.stats()
        assert st.dropped == 0 and st.oversized == 0
        _check_sized(got, expected)
    finally:
        L.close()


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def test_largest_buffer_holds_a_gigabyte_and_drops_exactly():
    """elog's largest buffer (1 GiB - 1: four 256 MiB chunks per buffer):
    fills to capacity with 64 KiB records across chunk ends, swaps without
    loss, then counts every drop."""
    from pyelog.providers import test as tp
    from pyelog.kernel.ring import BUFFER_SIZE_MAX
    from bcc.utils import get_possible_cpus
    ncpu = max(get_possible_cpus()) + 1
    need = 2 * ncpu * (BUFFER_SIZE_MAX + (1 << 20)) + (1 << 30)
    if _mem_available() < need:
        pytest.skip(f"needs {need >> 20} MiB of available memory for 1 GiB buffers "
                    f"on {ncpu} CPUs")
    L, (sub,), d = _loader(size=BUFFER_SIZE_MAX)
    try:
        assert (sub.reader.chunks, sub.reader.chunk_size) == (4, 1 << 28)
        d.create_session(1, cpu=0)
        _records(sub)
        big = 65535
        per_buf = BUFFER_SIZE_MAX // big                # 16384 records: 1073725440 bytes
        seq = 0
        for _ in range(per_buf):
            seq += _emit_sized(d, tp, seq, big)
        assert sub.reader.state(0)[2] == per_buf * big   # one buffer, exactly full
        seq += _emit_sized(d, tp, seq, big)              # proactive swap
        for _ in range(per_buf - 1):
            seq += _emit_sized(d, tp, seq, big)
        assert sub.stats().dropped == 0 and sub.stats().swaps == 1
        for _ in range(3):                               # both full: dropped, counted
            _emit_sized(d, tp, seq + 1000, big)
        assert sub.stats().dropped == 3
        got = []
        for run, n in sub.drain_counted(0):
            recs = list(iter_records(run))
            assert len(recs) == n
            got += [(h, p[:16]) for h, p in recs]
        _check_sized(got, [(big, i) for i in range(2 * per_buf)])
    finally:
        L.close()
