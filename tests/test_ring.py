# SPDX-License-Identifier: BSD-2-Clause
"""The per-CPU double-buffered ring (bpf/eventlog.h's protocol), both halves.

* On the real kernel (``kernel``; model: FreeBSD ktest_eventlog buffer
  tests): the test provider's writers against the reader, through the
  Loader: capacity and exact drops, two CPUs at full speed, a nested
  writer on one CPU, chunked buffers, the largest buffer.
* Without a kernel (run everywhere): the reader
  (:class:`pyelog.kernel.ring.RingReader`, over anonymous mmaps laid out
  as the two BPF arrays) against a writer in Python that follows the
  writer half of the protocol step by step (eventlog_reserve: CAS on the
  state word; eventlog_copy: copy, timestamps, one atomic add to
  ``written[b][k]``), with the offsets of struct eventlog_cpu_state and
  the ring's #defines read from bpf/eventlog.h itself. Checked against the
  records the test wrote: whole buffers in order, swaps, a buffer still
  being copied into, the timestamp merge of two CPUs, chunked buffers, the
  drop/oversize/swap counters.
"""
from __future__ import annotations

import ctypes
import functools
import mmap
import os
import random
import re
import struct
import sys
import threading
import time

import pytest

from pyelog.kernel import ring as ringmod
from pyelog.kernel.loader import Loader, Subscription, LEVEL_TRACE, SESSION_CREATE_ID
from pyelog.kernel.ring import RingReader, atomics, chunk_layout, iter_records
from pyelog.resources import bpf_source

B128K = 128 * 1024


# == on the real kernel (kernel) =============================================================

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
@pytest.mark.kernel
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


@pytest.mark.kernel
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
@pytest.mark.parametrize("chunk", [None, 65536], ids=["whole", "chunked"])
def test_two_cpus_full_speed_exact_accounting(chunk):
    from pyelog.providers import test as tp
    L, (sub,), d = _loader(size=256 * 1024, chunk=chunk)
    try:
        cpus = sorted(os.sched_getaffinity(0))[:2]
        for sid in (1, 2):
            d.create_session(sid)
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

        counts = d.emit_racing(dict(zip((1, 2), cpus)), tp.COMPLEX, 2.0, consume)
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


@pytest.mark.kernel
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


@pytest.mark.kernel
def test_chunked_records_of_every_size_cross_chunk_ends_whole():
    """Records up to 65535 bytes, some ending exactly on a chunk end, all
    come back whole and in order from 64 KiB chunks of a 256 KiB buffer."""
    from pyelog.providers import test as tp
    L, (sub,), d = _loader(size=256 * 1024, chunk=65536)
    try:
        assert sub.reader.chunks == 4
        d.create_session(1, cpu=0)
        _records(sub)                                  # drop SESSION_CREATE
        expected = []

        def write(seq: int, ln: int) -> None:
            assert _emit_sized(d, tp, seq, ln) == 1
            expected.append((ln, seq))

        got = _write_far(_sizes_across_chunks(48), 2 * (256 - 64) * 1024, write, lambda: _records(sub))
        st = sub.stats()
        assert st.dropped == 0 and st.oversized == 0
        _check_sized(got, expected)
    finally:
        L.close()


def _sizes_across_chunks(smallest: int) -> list[int]:
    """Record sizes for 64 KiB chunks: the second record ends exactly on
    the first chunk end, then sizes from ``smallest`` to the largest record."""
    rnd = random.Random(4)
    sizes = [32768, 32768, 40, 65535, 40, 65535 - 7]
    return sizes + [rnd.choice([rnd.randint(smallest, 65535), rnd.randint(smallest, 600)])
                    for _ in range(600)]


def _write_far(sizes: list[int], capacity: int, write, drain) -> list:
    """``write(seq, size)`` each record, calling ``drain()`` only when the
    two buffers (``capacity`` bytes before they must swap) might not hold
    the next: buffers fill far, and their records cross every chunk end.
    Returns what the drains returned, in order."""
    got, pending = [], 0
    for seq, ln in enumerate(sizes):
        if pending + ln > capacity:
            got += drain()
            pending = 0
        write(seq, ln)
        pending += ln
    return got + drain()


def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.kernel
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


# == the reader alone, against a writer in Python (no kernel) ===============================

@functools.cache
def c_layout() -> dict:
    """struct eventlog_cpu_state's field offsets and size, and the ring's
    #defines, read from bpf/eventlog.h (every field there is a __u64 or an
    array of them: anything else fails here, to be taught to this parser).
    Called by each test, so that a failure here is that test's, not the module's."""
    src = bpf_source("eventlog.h")
    out: dict = {}
    for name in ("EVENTLOG_BUF_SLACK", "EVENTLOG_CHUNK_MAX", "EVENTLOG_MAX_CHUNKS"):
        expr = re.search(rf"^#define {name}\s+(.+?)\s*$", src, re.M).group(1)
        m = re.fullmatch(r"(\d+)U?|\(\s*(\d+)U?\s*<<\s*(\d+)\s*\)", expr)
        assert m, f"{name}: {expr!r} is neither N nor (N << M)"
        out[name] = int(m[1]) if m[1] else int(m[2]) << int(m[3])
    body = re.search(r"struct eventlog_cpu_state \{(.*?)\};", src, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    offsets, off = {}, 0
    for decl in filter(None, (d.strip() for d in body.split(";"))):
        m = re.fullmatch(r"__u64\s+(\w+)((?:\[\w+\])*)", decl)
        assert m, f"struct eventlog_cpu_state: not a __u64 field: {decl!r}"
        n = 1
        for dim in re.findall(r"\[(\w+)\]", m.group(2)):
            n *= int(dim) if dim.isdigit() else out[dim]
        offsets[m.group(1)] = off
        off += 8 * n
    out["offsets"], out["size"] = offsets, off
    return out


SEQ_CST = 5
_libatomic = ctypes.CDLL("libatomic.so.1")
_fetch_add = getattr(_libatomic, "__atomic_fetch_add_8")
_fetch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]
_fetch_add.restype = ctypes.c_uint64


def test_reader_offsets_are_those_of_eventlog_h():
    """ring.py hard-codes the control block's layout and the ring's sizes:
    they are the C header's."""
    c = c_layout()
    o = c["offsets"]
    assert list(o) == ["state", "written", "dropped", "oversized", "swaps", "min_ts", "max_ts"]
    assert c["size"] == ringmod.STATE_SIZE == 128
    assert (ringmod._OFF_STATE, ringmod._OFF_WRITTEN, ringmod._OFF_DROPPED, ringmod._OFF_OVERSIZED,
            ringmod._OFF_SWAPS, ringmod._OFF_MIN_TS, ringmod._OFF_MAX_TS) == \
        (o["state"], o["written"], o["dropped"], o["oversized"], o["swaps"], o["min_ts"], o["max_ts"])
    assert (ringmod.BUF_SLACK, ringmod.CHUNK_MAX, ringmod.MAX_CHUNKS) == \
        (c["EVENTLOG_BUF_SLACK"], c["EVENTLOG_CHUNK_MAX"], c["EVENTLOG_MAX_CHUNKS"])


class PyWriter:
    """The writer half of bpf/eventlog.h, step for step, over the reader's memory.

    :meth:`reserve` is eventlog_reserve (CAS on the state word; a proactive
    swap when the active buffer is full and the reader's is drained; a drop,
    counted, otherwise), :meth:`copy` is eventlog_copy (the bytes, the
    buffer's timestamp range, then one atomic add of ``len | 1 << 32`` to
    ``written[b][k]``), :meth:`emit` both, as eventlog_deliver_<i> does.
    Offsets come from eventlog.h (:func:`c_layout`), not from ring.py.
    """

    TRIES = 4                                  # EL_RESERVE_TRIES

    def __init__(self, bufs, state, buffer_size: int, chunk_size: int | None = None):
        self.c = c_layout()
        self.size = buffer_size
        self.chunk, self.chunks = chunk_layout(buffer_size, chunk_size)
        self.elem = (self.chunk + self.c["EVENTLOG_BUF_SLACK"] + 7) & ~7
        self.bufs = bufs
        self._obj = ctypes.c_char.from_buffer(state)
        self._base = ctypes.addressof(self._obj)
        self.a = atomics()
        self.bells = 0                         # doorbell rings (writer swaps)

    def addr(self, cpu: int, field: str, index: int = 0) -> int:
        return self._base + cpu * self.c["size"] + self.c["offsets"][field] + 8 * index

    def u64(self, cpu: int, field: str, index: int = 0) -> int:
        return self.a.load(self.addr(cpu, field, index), SEQ_CST)

    def reserve(self, cpu: int, total: int) -> tuple[int, int] | None:
        """(active, pos) of ``total`` reserved bytes, or None: dropped (counted)."""
        state = self.addr(cpu, "state")
        tried_swap = False
        for _ in range(self.TRIES):
            old = self.a.load(state, SEQ_CST)
            a, p = old & 1, (old >> 2) & 0x3FFFFFFF
            if p + total > self.size:
                if tried_swap or not (old >> 1) & 1:
                    break
                tried_swap = True
                if self.a.cas(state, old, (p << 32) | (a ^ 1))[0]:
                    self.bells += 1
                    _fetch_add(self.addr(cpu, "swaps"), 1, SEQ_CST)
                continue
            if self.a.cas(state, old, old + (total << 2))[0]:
                return a, p
        _fetch_add(self.addr(cpu, "dropped"), 1, SEQ_CST)
        return None

    def locate(self, cpu: int, active: int, pos: int) -> tuple[int, int]:
        """(chunk, offset in the buffer mapping) of logical position ``pos``."""
        if self.chunks == 1:
            chunk, off = 0, pos
        else:
            chunk, off = pos >> (self.chunk.bit_length() - 1), pos & (self.chunk - 1)
        return chunk, ((cpu * 2 + active) * self.chunks + chunk) * self.elem + off

    def copy(self, cpu: int, active: int, pos: int, record: bytes) -> None:
        chunk, at = self.locate(cpu, active, pos)
        self.bufs[at:at + len(record)] = record
        ts = struct.unpack_from("<Q", record, 8)[0]
        hi, lo = self.addr(cpu, "max_ts", active), self.addr(cpu, "min_ts", active)
        if ts > self.a.load(hi, SEQ_CST):
            self.a.store(hi, ts, SEQ_CST)
        low = self.a.load(lo, SEQ_CST)
        if low == 0 or ts < low:
            self.a.store(lo, ts, SEQ_CST)
        _fetch_add(self.addr(cpu, "written", active * self.c["EVENTLOG_MAX_CHUNKS"] + chunk),
                   len(record) | 1 << 32, SEQ_CST)

    def emit(self, cpu: int, record: bytes) -> bool:
        got = self.reserve(cpu, len(record))
        if got is None:
            return False
        self.copy(cpu, *got, record)
        return True

    def oversized(self, cpu: int) -> None:
        """An event over 65535 bytes: counted, never reserved."""
        _fetch_add(self.addr(cpu, "oversized"), 1, SEQ_CST)

    def close(self) -> None:
        self._obj = None


class MemRing:
    """A reader and a :class:`PyWriter` over anonymous mmaps laid out as the
    subscriber's two arrays (sizes computed from eventlog.h, not ring.py)."""

    def __init__(self, ncpu: int, buffer_size: int, chunk_size: int | None = None):
        c = c_layout()
        chunk, chunks = chunk_layout(buffer_size, chunk_size)
        elem = (chunk + c["EVENTLOG_BUF_SLACK"] + 7) & ~7
        self.bufs = mmap.mmap(-1, 2 * ncpu * chunks * elem)
        self.state = mmap.mmap(-1, ncpu * c["size"])
        self.writer = PyWriter(self.bufs, self.state, buffer_size, chunk_size)
        for cpu in range(ncpu):                # as Loader._init_states: swap_allowed = 1
            self.writer.a.store(self.writer.addr(cpu, "state"), 2, SEQ_CST)
        self.reader = RingReader.over_memory(self.bufs, self.state, ncpu, buffer_size,
                                             chunk_size=chunk_size)

    def drain(self, ordered: bool = True) -> list[tuple[bytes, int]]:
        """One read: (copy of each run, records in it as the reader counted)."""
        return [(bytes(run), n) for run, n in self.reader.read_counted(0, ordered)]

    def close(self) -> None:
        self.reader.close()
        self.writer.close()
        for m in (self.bufs, self.state):
            try:
                m.close()
            except BufferError:                # views kept alive by a failed test's traceback
                pass


@pytest.fixture
def mem_ring():
    rings = []

    def make(ncpu: int, buffer_size: int, chunk_size: int | None = None) -> MemRing:
        rings.append(MemRing(ncpu, buffer_size, chunk_size))
        return rings[-1]

    yield make
    for r in rings:
        r.close()


def rec(ts: int, seq: int, cpu: int = 0, length: int = 36) -> bytes:
    """A record of ``length`` bytes whose payload starts with ``seq`` (u32),
    then bytes derived from it (a torn or misplaced copy shows)."""
    body = struct.pack("<I", seq) + bytes((seq + i) & 0xFF for i in range(length - 36))
    return struct.pack("<HHHHQQIi", length, cpu, 1, 0, ts, 7, 0, 0) + body


def decode(runs: list[tuple[bytes, int]]) -> list[tuple[int, int, int]]:
    """(cpu, timestamp, seq) of every record, checking each run's count and body."""
    out = []
    for run, n in runs:
        got = list(iter_records(run))
        assert len(got) == n, "the count handed out with a run is its records'"
        for h, p in got:
            seq = struct.unpack_from("<I", p)[0]
            assert bytes(p) == rec(h[4], seq, h[1], h[0])[32:], f"record {seq} torn"
            out.append((h[1], h[4], seq))
    return out


def test_whole_buffers_are_read_in_order(mem_ring):
    r = mem_ring(ncpu=2, buffer_size=65536)
    w = r.writer
    first = [rec(100 + i, i) for i in range(50)]
    for x in first:
        assert w.emit(0, x)
    assert r.reader.state(0) == (0, 1, 50 * 36, 0)   # active 0, reader's buffer drained
    # The reader takes the active buffer (a swap by CAS) and hands it out
    # whole, as written, with the count the writers kept.
    assert r.drain() == [(b"".join(first), 50)]
    # Released: writers on buffer 1, buffer 0 free again, its counters reset.
    assert r.reader.state(0) == (1, 1, 0, 0)
    assert [w.u64(0, "written", k) for k in range(2 * c_layout()["EVENTLOG_MAX_CHUNKS"])] == [0] * 8
    assert [w.u64(0, f, b) for f in ("min_ts", "max_ts") for b in (0, 1)] == [0] * 4
    assert r.drain() == []                            # nothing new: nothing handed out
    second = [rec(200 + i, 50 + i) for i in range(30)]
    for x in second:
        assert w.emit(0, x)
    assert r.drain() == [(b"".join(second), 30)]
    assert r.reader.state(0) == (0, 1, 0, 0)
    assert (r.reader.records, r.reader.bytes, r.reader.stats().bytes) == (80, 80 * 36, 80 * 36)
    assert r.reader.state(1) == (0, 1, 0, 0)          # the other CPU never moved


def test_a_full_buffer_is_swapped_by_the_writer_then_drops_are_exact(mem_ring):
    size = 65536
    per_buf = size // 36                              # 1820 records, 16 bytes left over
    r = mem_ring(ncpu=1, buffer_size=size)
    w = r.writer
    recs = [rec(1 + i, i) for i in range(2 * per_buf + 5)]
    for x in recs[:per_buf]:
        assert w.emit(0, x)
    assert r.reader.state(0) == (0, 1, per_buf * 36, 0)
    # The next record does not fit: the writer swaps (the reader's buffer
    # is drained), rings, and writes it at the start of the other buffer.
    assert w.emit(0, recs[per_buf])
    assert r.reader.state(0) == (1, 0, 36, per_buf * 36)
    assert w.bells == 1 and r.reader.stats().swaps == 1
    for x in recs[per_buf + 1:2 * per_buf]:
        assert w.emit(0, x)
    # Both full, the reader's not drained: dropped, each counted.
    assert [w.emit(0, x) for x in recs[2 * per_buf:]] == [False] * 5
    st = r.reader.stats()
    assert (st.dropped, st.swaps, st.oversized) == (5, 1, 0)
    # One read takes the full reader buffer, releases it, then swaps and
    # takes the other: every record, in order, buffer by buffer.
    runs = r.drain()
    assert runs == [(b"".join(recs[:per_buf]), per_buf),
                    (b"".join(recs[per_buf:2 * per_buf]), per_buf)]
    assert r.reader.state(0) == (0, 1, 0, 0)
    assert w.emit(0, rec(99999, 99999))               # room again
    assert decode(r.drain()) == [(0, 99999, 99999)]


@pytest.mark.parametrize("chunk", [None, 65536], ids=["whole", "chunked"])
def test_a_buffer_still_being_copied_into_is_not_consumed(mem_ring, chunk):
    r = mem_ring(ncpu=1, buffer_size=B128K, chunk_size=chunk)
    w = r.writer
    n = 2000                                          # 72000 bytes: into the second chunk
    for i in range(n):
        assert w.emit(0, rec(1 + i, i))
    late = rec(1 + n, n)
    slot = w.reserve(0, len(late))                    # reserved; its writer is interrupted
    assert slot == (0, n * 36)
    for i in range(n + 1, n + 5):                     # a nested writer reserves and copies after it
        assert w.emit(0, rec(1 + i, i))
    # The reader takes the buffer, but written != reader_len: it hands out
    # nothing and keeps it (no release, so writers cannot swap into it).
    assert r.drain() == []
    held = (n + 5) * 36
    assert r.reader.state(0) == (1, 0, 0, held)
    assert sum(w.u64(0, "written", k) & 0xFFFFFFFF for k in range(4)) == held - 36
    assert w.emit(0, rec(1 + n + 5, n + 5))           # writers go on in the other buffer
    assert r.drain() == []                            # still in flight: still nothing
    assert r.reader.state(0) == (1, 0, 36, held)
    w.copy(0, *slot, late)                            # the interrupted copy completes
    got = decode(r.drain())
    assert [s for _, _, s in got] == list(range(n + 6))
    assert r.reader.state(0) == (0, 1, 0, 0)
    assert r.reader.stats().dropped == 0


def _emit_all(w, per_cpu: dict[int, list[int]]) -> dict[int, list[bytes]]:
    """Records with the given timestamps on each CPU, seq 0.. per CPU."""
    out = {}
    for cpu, stamps in per_cpu.items():
        out[cpu] = [rec(ts, i, cpu) for i, ts in enumerate(stamps)]
        for x in out[cpu]:
            assert w.emit(cpu, x)
    return out


def test_overlapping_buffers_of_two_cpus_are_merged_by_timestamp(mem_ring):
    r = mem_ring(ncpu=2, buffer_size=65536)
    # Bursts of 5 in turn: CPU 0 at 10k+0..4, CPU 1 at 10k+5..9 (k < 60).
    stamps = {0: [10 * k + j for k in range(60) for j in range(5)],
              1: [10 * k + 5 + j for k in range(60) for j in range(5)]}
    stamps[0][0] = 1                                  # 0 would mean "no timestamp" to min_ts
    _emit_all(r.writer, stamps)
    runs = r.drain()
    # The merge hands out its output as one run, counted.
    assert [n for _, n in runs] == [600]
    got = decode(runs)
    assert [ts for _, ts, _ in got] == sorted(stamps[0] + stamps[1])
    for cpu in (0, 1):
        assert [s for c, _, s in got if c == cpu] == list(range(300))
    assert r.reader.records == 600

    # Equal timestamps on both CPUs: still in order, nothing lost or repeated.
    stamps = {0: [1000, 1002, 1002, 1003, 1005], 1: [1002, 1002, 1004]}
    _emit_all(r.writer, stamps)
    runs = r.drain()
    got = decode(runs)
    assert [ts for _, ts, _ in got] == [1000, 1002, 1002, 1002, 1002, 1003, 1004, 1005]
    assert [(c, s) for c, _, s in got if c == 0] == [(0, i) for i in range(5)]
    assert [(c, s) for c, _, s in got if c == 1] == [(1, i) for i in range(3)]
    assert sum(n for _, n in runs) == 8

    # ordered=False: whole buffers, however they overlap.
    recs = _emit_all(r.writer, {0: [2000, 2002, 2004], 1: [2001, 2003]})
    assert sorted(r.drain(ordered=False)) == sorted([(b"".join(recs[0]), 3), (b"".join(recs[1]), 2)])


@pytest.mark.parametrize("seed", range(40))
def test_the_merge_is_a_stable_sort_for_any_sequences_lengths_and_ties(seed):
    """pyelog/kernel/_merge.c on its own, against its definition: the
    records of all sequences ordered by (timestamp, sequence), each
    sequence's order kept. Up to 130 sequences of 0-60 records of 32-300
    bytes, few distinct timestamps (many ties), merged through an output
    buffer that holds only a few records at a time (so that it stops
    between runs and inside them, and resumes)."""
    rng = random.Random(seed)
    k = rng.choice([1, 2, 3, 8, 64, 130])
    blob, regions, expected = bytearray(), [], []
    for i in range(k):
        start = len(blob)
        for j, t in enumerate(sorted(rng.randrange(1, 40) for _ in range(rng.randrange(0, 60)))):
            blob += rec(t, i << 20 | j, length=rng.randrange(32 + 4, 300))
            expected.append((t, i, j))
        regions.append([start, len(blob)])
    expected.sort()
    dst = bytearray(rng.choice([300, 1000, 1 << 16]))
    merged, records = [], 0
    while True:
        nbytes, n = ringmod._ring.merge(bytes(blob), regions, dst)
        if not nbytes:
            break
        merged += [(ts, seq >> 20, seq & 0xFFFFF) for _, ts, seq in decode([(bytes(dst[:nbytes]), n)])]
        records += n
    assert all(start == end for start, end in regions), "every sequence consumed"
    assert records == len(merged)
    assert merged == expected


def test_a_bad_record_length_in_a_merge_names_its_offset(mem_ring):
    r = mem_ring(ncpu=2, buffer_size=65536)
    _emit_all(r.writer, {0: [1, 3, 5], 1: [2, 4, 6]})
    elem = r.writer.elem
    r.bufs[2 * elem + 36:2 * elem + 38] = struct.pack("<H", 31)   # CPU 1's second record
    with pytest.raises(ringmod.RingCorrupt, match=f"bad record length 31 at mapping offset {2 * elem + 36}"):
        r.drain()


def test_a_merge_larger_than_its_buffer_comes_in_pieces(mem_ring, monkeypatch):
    monkeypatch.setattr(ringmod, "MERGE_OUT", 65536)
    r = mem_ring(ncpu=2, buffer_size=B128K)
    n = 3000                                          # 2 x 108 000 bytes: four pieces
    stamps = {cpu: [1 + 2 * i + cpu for i in range(n)] for cpu in (0, 1)}
    _emit_all(r.writer, stamps)
    runs = r.drain()
    assert [len(run) for run, _ in runs] == [65520, 65520, 65520, 19440]
    got = decode(runs)
    assert [ts for _, ts, _ in got] == list(range(1, 2 * n + 1))


def test_disjoint_buffers_are_handed_out_whole_in_timestamp_order(mem_ring):
    r = mem_ring(ncpu=3, buffer_size=65536)
    # CPU 2 wrote earliest, then CPU 0; CPU 1 nothing. Touching ends count as disjoint.
    recs = _emit_all(r.writer, {0: [500, 501, 600], 2: [100, 200, 300, 500]})
    assert r.drain() == [(b"".join(recs[2]), 4), (b"".join(recs[0]), 3)]


def test_a_record_crossing_a_chunk_end_lies_whole_in_the_slack(mem_ring):
    r = mem_ring(ncpu=1, buffer_size=B128K, chunk_size=65536)
    w = r.writer
    assert (r.reader.chunks, r.reader.chunk_size) == (2, 65536)
    n = B128K // 36                                   # 3640 records
    recs = [rec(1 + i, i) for i in range(n)]
    for x in recs:
        assert w.emit(0, x)
    cross = 65536 // 36                               # record 1820: bytes 65520..65556
    elem = w.elem
    # Chunk 0 holds it whole, 20 bytes into its slack; chunk 1's records
    # begin where it ended, 20 bytes in (its first 20 bytes stay unused).
    assert r.bufs[65520:65556] == recs[cross]
    assert r.bufs[elem:elem + 20] == bytes(20)
    assert r.bufs[elem + 20:elem + 56] == recs[cross + 1]
    assert [w.u64(0, "written", k) for k in (0, 1)] == [
        (cross + 1) << 32 | (cross + 1) * 36, (n - cross - 1) << 32 | (n - cross - 1) * 36]
    # Each chunk is one run of whole records, counted; together, the buffer.
    assert r.drain() == [(b"".join(recs[:cross + 1]), cross + 1),
                         (b"".join(recs[cross + 1:]), n - cross - 1)]


def test_chunked_records_of_every_size_come_back_whole_and_in_order(mem_ring):
    """The live test's sizes against the Python writer: records up to 65535
    bytes over 64 KiB chunks of a 256 KiB buffer, one ending exactly on a
    chunk end, buffers filled far (writers swapping by themselves)."""
    size, chunk = 256 * 1024, 65536
    r = mem_ring(ncpu=1, buffer_size=size, chunk_size=chunk)
    expected = []

    def write(seq: int, ln: int) -> None:
        assert r.writer.emit(0, rec(1 + seq, seq, 0, ln))
        if seq == 1:                                  # two records of 32 KiB: the first chunk, exactly
            assert sum(r.writer.u64(0, "written", k) & 0xFFFFFFFF for k in range(4)) == chunk
        expected.append(seq)

    got = _write_far(_sizes_across_chunks(36), 2 * (size - chunk), write, lambda: decode(r.drain()))
    st = r.reader.stats()
    assert (st.dropped, st.oversized) == (0, 0) and st.swaps > 0
    assert [s for _, _, s in got] == expected


def test_chunked_buffers_of_two_cpus_are_merged_chunk_by_chunk(mem_ring):
    r = mem_ring(ncpu=2, buffer_size=B128K, chunk_size=65536)
    # 100-byte records, timestamps interleaved: both CPUs cross their chunk end.
    n = 1000
    recs = {cpu: [rec(1 + 2 * i + cpu, i, cpu, 100) for i in range(n)] for cpu in (0, 1)}
    for i in range(n):
        for cpu in (0, 1):
            assert r.writer.emit(cpu, recs[cpu][i])
    got = decode(r.drain())
    assert [ts for _, ts, _ in got] == list(range(1, 2 * n + 1))
    for cpu in (0, 1):
        assert [s for c, _, s in got if c == cpu] == list(range(n))


def test_dropped_oversized_and_swaps_read_back(mem_ring):
    size = 65536
    per_buf = size // 36
    r = mem_ring(ncpu=3, buffer_size=size)
    w = r.writer
    for i in range(2 * per_buf + 7):                  # CPU 1: both buffers full, then 7 dropped
        w.emit(1, rec(1 + i, i, 1))
    for _ in range(3):                                # CPU 2: three events over 65535 bytes
        w.oversized(2)
    w.emit(0, rec(1, 0, 0))
    st = r.reader.stats()
    assert (st.dropped, st.oversized, st.swaps, st.bytes) == (7, 3, 1, 0)
    assert r.reader.per_cpu_dropped() == [0, 7, 0]
    got = decode(r.drain())
    assert len(got) == 2 * per_buf + 1
    st = r.reader.stats()
    assert (st.dropped, st.oversized, st.swaps) == (7, 3, 1)   # counters are never reset
    assert st.bytes == r.reader.bytes == (2 * per_buf + 1) * 36


def test_concurrent_writer_and_reader_lose_and_repeat_nothing(mem_ring):
    """The writer in one thread, the reader draining in another (the GIL
    switching often): every record is read once or counted as dropped."""
    r = mem_ring(ncpu=2, buffer_size=65536)
    total = 20000
    done = threading.Event()
    got: list[tuple[int, int, int]] = []

    def write():
        for i in range(total):
            r.writer.emit(i % 2, rec(1 + i, i, i % 2))
        done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        t = threading.Thread(target=write)
        t.start()
        while not done.is_set():
            got += decode(r.drain())
        t.join()
    finally:
        sys.setswitchinterval(old)
    got += decode(r.drain())
    got += decode(r.drain())
    seqs = [s for _, _, s in got]
    assert len(seqs) == len(set(seqs)), "a record was read twice"
    assert all(c == s % 2 for c, _, s in got)
    for cpu in (0, 1):
        mine = [s for c, _, s in got if c == cpu]
        assert mine == sorted(mine), f"CPU {cpu}'s records out of order"
    assert len(seqs) + r.reader.stats().dropped == total


def test_over_memory_checks_the_layout_and_leaves_the_memory_to_its_owner():
    bufs, state = mmap.mmap(-1, 4096), mmap.mmap(-1, 4096)
    with pytest.raises(ValueError, match="need"):
        RingReader.over_memory(bufs, state, 1, 65536)
    r = MemRing(ncpu=2, buffer_size=65536)
    r.writer.emit(0, rec(1, 0))
    with pytest.raises(BufferError):
        r.bufs.close()                                # the reader holds it
    assert len(r.drain()) == 1
    r.reader.close()
    r.writer.close()
    assert not r.bufs.closed and not r.state.closed   # not the reader's to close
    r.bufs.close()
    r.state.close()
    bufs.close()
    state.close()


@pytest.mark.kernel
def test_getppid_hook_session_cache_follows_the_table():
    """on_getppid finds its session through a per-CPU cached copy
    (eventlog_session_lookup_cached): a session ended in BPF, or removed by
    user space followed by Loader.sessions_changed(), is never emitted on
    again. Checked by sequence numbers, which the hook takes only when it
    found the session. Only that instance's epochs move: a second test
    instance, whose hooks do not cache, ends sessions without a bump."""
    from pyelog.providers import test as tp
    L = Loader([tp.provider(getppid_hook=True), tp.provider(name="plain")])
    sub = L.add_ring_subscriber(B128K, [Subscription("test", LEVEL_TRACE, 0xFFFFFFFF)])
    L.start()
    d, plain = tp.TestDriver(L, L.providers[0]), tp.TestDriver(L, L.providers[1])
    epochs = L.bpf["eventlog_session_epoch"]

    def epoch(inst):
        v = epochs[epochs.Key(inst.id)]
        return v.cached, v.kernel, v.user
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(old)})      # one CPU: one cache
    try:
        def calls(n):
            for _ in range(n):
                os.getppid()

        def simple_seqs():
            return [struct.unpack("<I", p[:4])[0] for h, p in _records(sub)
                    if h[6] == 0 and h[5] == 7]

        d.create_session(7)
        d.arm_getppid(7)
        calls(10)
        assert epoch(L.providers[0]) == (1, 0, 0)
        d.end_session(7)                      # BPF: destroy, the kernel epoch moves
        assert epoch(L.providers[0]) == (1, 1, 0)
        calls(10)
        assert simple_seqs() == list(range(10))
        plain.create_session(8)
        plain.end_session(8)
        L.sessions_changed(L.providers[1])
        assert epoch(L.providers[1]) == (0, 0, 0)
        assert epoch(L.providers[0]) == (1, 1, 0)
        d.create_session(7)
        calls(5)
        assert simple_seqs() == list(range(10, 15))
        # User space removes the session: the cache answers until told.
        t = L.bpf["eventlog_sessions"]
        k = t.Key()
        k.session_id, k.provider_id = 7, L.providers[0].id
        del t[k]
        calls(3)
        assert simple_seqs() == [15, 16, 17], "the cached copy is what the hook used"
        L.sessions_changed(L.providers[0])
        assert epoch(L.providers[0]) == (1, 1, 1)
        calls(10)
        assert simple_seqs() == [] and d.disarm_getppid() == 18
    finally:
        os.sched_setaffinity(0, old)
        L.close()
