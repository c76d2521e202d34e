# SPDX-License-Identifier: BSD-2-Clause
"""User-space (reader) half of the per-CPU double-buffered ring.

The writer half lives in ``bpf/eventlog.h``; read its top comment first.
Per subscriber and CPU there are two buffers (mmapped from the
``eventlog_buf_<i>`` array, elements ``(cpu*2+b)*chunks`` on: a buffer
above 256 MiB is split into chunks, see "Chunks" in eventlog.h) and a
128-byte control block (``eventlog_state_<i>``, element ``cpu``) whose first 64-bit word is
the packed state::

    63..32 reader_len | 31..2 commit_pos | 1 swap_allowed | 0 active

The reader:

* takes a CPU's active buffer when its own buffer is drained
  (``swap_allowed``) and the active one holds data, with the same CAS the
  writers use (writers also swap proactively when their buffer fills, and
  then ring the doorbell);
* consumes a reader buffer only when the low 32 bits of ``written[b]``
  (summed over its chunks) equal ``reader_len`` (every reserved record
  fully copied: see the reserve-then-copy note in eventlog.h); a CPU whose
  copy is still in flight is simply retried later. The high 32 bits count
  the records copied (writers add ``bytes | 1 << 32`` in their one atomic),
  so each run is handed out with its record count and nobody walks it to
  count; the per-chunk byte counts also say where each chunk's records
  begin and end;
* hands out contiguous runs of whole records, merged across CPUs in
  timestamp order within one drain epoch: when the buffers' timestamp
  ranges do not overlap (the common case at low rates), whole buffers as
  memoryviews straight into the mapped buffer, without looking at single
  records; when they overlap, the output of a k-way merge in C
  (``_ring.c``: a tournament tree of sequences, one memcpy per run) in
  pieces of :data:`MERGE_OUT` bytes. Python never touches single records
  on this path, so its cost per event does not grow with the CPUs
  producing (``make bench``'s ``scale:`` line);
* then resets ``written[b]`` and, in one CAS, clears ``reader_len`` and sets
  ``swap_allowed``.

:meth:`RingReader.over_memory` builds the same reader over memory laid out
as the two arrays (:func:`map_sizes`), so that the protocol can be tested
against a writer in Python, without a kernel.

Atomic operations on the shared words go through libatomic (real
``lock cmpxchg`` on x86), never through Python arithmetic on copies.
Wake-ups come from a small BPF ring buffer ("doorbell") that writers poke
only when they swap buffers; :meth:`RingReader.read` waits on it with
epoll, so the reader wakes per buffer, or after ``timeout``, never per event.
A busy reader (its last drain took at least ``buffer_size // 8`` bytes, or
found a buffer it holds still being copied into, which keeps writers from
swapping and so from ringing) waits at most :data:`BUSY_WAIT` instead, taking half-full buffers rather
than sleeping until a writer fills one: at high rates the writers then have
more than one buffer of slack.
"""
from __future__ import annotations

import ctypes
import mmap
import select
import struct
from dataclasses import dataclass
from typing import Iterator

from pyelog.kernel import _ring
from pyelog.records.format import EVENT_HEADER

# The merge (C) reads event_length at offset 0 and the timestamp at 8 of
# each 32-byte header: the same fields as EVENT_HEADER's first and fifth.
_probe = bytes(range(EVENT_HEADER.size))
assert EVENT_HEADER.size == 32
assert EVENT_HEADER.unpack(_probe)[0:5:4] == struct.unpack_from("<H6xQ", _probe)
del _probe

# The layout the C shares with this reader (bpf/eventlog.h). The loader
# compiles _Static_asserts of every value below (layout_checks()), so the
# two sides cannot drift apart.
BUF_SLACK = 131136          # EVENTLOG_BUF_SLACK
STATE_SIZE = 128            # sizeof(struct eventlog_cpu_state)
BUFFER_SIZE_MIN = 65536
# FreeBSD's limit, and the most the state word's 30-bit commit_pos holds.
BUFFER_SIZE_MAX = (1 << 30) - 1
BUFFER_SIZE_DEFAULT = 512 * 1024
# The verifier refuses variable offsets of 2^29 or more into one map value
# (BPF_MAX_VAR_OFF): larger buffers are split into chunks of this size.
CHUNK_MAX = 1 << 28         # EVENTLOG_CHUNK_MAX
MAX_CHUNKS = 4              # EVENTLOG_MAX_CHUNKS
# Longest doorbell wait after a drain of >= buffer_size // 8 bytes.
BUSY_WAIT = 0.001
# Bytes of merged records handed out at a time (the merge's one buffer;
# at least the longest record, 65535 bytes).
MERGE_OUT = 1 << 20

# Offsets inside struct eventlog_cpu_state.
_OFF_STATE = 0
_OFF_WRITTEN = 8            # u64[2][MAX_CHUNKS]
_OFF_DROPPED = 72
_OFF_OVERSIZED = 80
_OFF_SWAPS = 88
_OFF_MIN_TS = 96            # u64[2]
_OFF_MAX_TS = 112           # u64[2]

_SEQ_CST = 5
_POS_MASK = 0x3FFFFFFF
_LOW32 = 0xFFFFFFFF


def layout_checks() -> str:
    """C ``_Static_assert``s that bpf/eventlog.h lays the rings out as this
    reader reads them (compiled with every BPF object by the loader)."""
    cs = "struct eventlog_cpu_state"
    facts = {"EVENTLOG_BUF_SLACK": BUF_SLACK, "EVENTLOG_CHUNK_MAX": CHUNK_MAX,
             "EVENTLOG_MAX_CHUNKS": MAX_CHUNKS, f"sizeof({cs})": STATE_SIZE,
             f"__builtin_offsetof({cs}, state)": _OFF_STATE,
             f"__builtin_offsetof({cs}, written)": _OFF_WRITTEN,
             f"__builtin_offsetof({cs}, dropped)": _OFF_DROPPED,
             f"__builtin_offsetof({cs}, oversized)": _OFF_OVERSIZED,
             f"__builtin_offsetof({cs}, swaps)": _OFF_SWAPS,
             f"__builtin_offsetof({cs}, min_ts)": _OFF_MIN_TS,
             f"__builtin_offsetof({cs}, max_ts)": _OFF_MAX_TS}
    return "\n".join(f'_Static_assert({c} == {v}, "{c}: pyelog/kernel/ring.py reads {v}");'
                     for c, v in facts.items())


def chunk_layout(buffer_size: int, chunk_size: int | None = None) -> tuple[int, int]:
    """(chunk size, number of chunks) of a buffer of ``buffer_size`` bytes.

    Buffers up to :data:`CHUNK_MAX` are one chunk; larger ones are split
    into chunks of :data:`CHUNK_MAX`. ``chunk_size`` forces a split (tests
    use small chunks to cross chunk ends often): a power of two from 64 KiB
    (a record then crosses at most one chunk end) to :data:`CHUNK_MAX`.
    Raises ValueError for a layout the kernel side cannot hold.
    """
    if chunk_size is None:
        chunk_size = min(buffer_size, CHUNK_MAX)
    chunks = -(-buffer_size // chunk_size)
    if chunks > 1 and (chunk_size & (chunk_size - 1) or not 65536 <= chunk_size <= CHUNK_MAX):
        raise ValueError(f"chunk size must be a power of two from 64 KiB to {CHUNK_MAX} bytes")
    if chunks > MAX_CHUNKS:
        raise ValueError(f"a buffer is at most {MAX_CHUNKS} chunks")
    return chunk_size, chunks


def element_size(chunk_size: int) -> int:
    """Bytes between two chunks in the mapped buffer array: one map value
    (a chunk and its slack), rounded up to 8 as the kernel lays out arrays."""
    return (chunk_size + BUF_SLACK + 7) & ~7


def map_sizes(ncpu: int, buffer_size: int, chunk_size: int | None = None) -> tuple[int, int]:
    """Bytes the reader maps of (``eventlog_buf_<i>``, ``eventlog_state_<i>``).

    The buffer array holds ``2 * ncpu * chunks`` elements of
    :func:`element_size`, element ``(cpu*2 + b)*chunks + k``; the state
    array ``ncpu`` control blocks of :data:`STATE_SIZE` bytes, element
    ``cpu``.
    """
    chunk, chunks = chunk_layout(buffer_size, chunk_size)
    return 2 * ncpu * chunks * element_size(chunk), ncpu * STATE_SIZE


class RingCorrupt(RuntimeError):
    """A buffer did not parse as whole records: a protocol bug, never expected."""


class _Atomics:
    """64-bit atomics on raw addresses, from libatomic."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libatomic.so.1")
        self.load = getattr(lib, "__atomic_load_8")
        self.load.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.load.restype = ctypes.c_uint64
        self.store = getattr(lib, "__atomic_store_8")
        self.store.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]
        self.store.restype = None
        self._cas = getattr(lib, "__atomic_compare_exchange_8")
        self._cas.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                              ctypes.c_int, ctypes.c_int]
        self._cas.restype = ctypes.c_bool
        self._expected = ctypes.c_uint64()

    def cas(self, addr: int, expected: int, desired: int) -> tuple[bool, int]:
        """Compare-and-swap; returns (won, value seen)."""
        self._expected.value = expected
        won = self._cas(addr, ctypes.byref(self._expected), desired, _SEQ_CST, _SEQ_CST)
        return bool(won), self._expected.value


_atomics: _Atomics | None = None


def atomics() -> _Atomics:
    global _atomics
    if _atomics is None:
        _atomics = _Atomics()
    return _atomics


def unpack_state(word: int) -> tuple[int, int, int, int]:
    """(active, swap_allowed, commit_pos, reader_len) of a packed state word."""
    return word & 1, (word >> 1) & 1, (word >> 2) & _POS_MASK, word >> 32


@dataclass
class RingStats:
    """Counters summed over CPUs (exact: every lost event is counted)."""
    dropped: int = 0        # buffer full (or, never seen, CAS contention)
    oversized: int = 0      # events > 65535 bytes, discarded before the ring
    swaps: int = 0          # writer-initiated buffer swaps
    bytes: int = 0          # bytes handed out by this reader


class _Doorbell:
    """Consumer side of a BPF ring buffer used only as a wake-up signal."""

    def __init__(self, fd: int) -> None:
        page = mmap.PAGESIZE
        self._cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._cons_obj = ctypes.c_char.from_buffer(self._cons)
        self._cons_addr = ctypes.addressof(self._cons_obj)
        self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLIN)

    def _producer_pos(self) -> int:
        return struct.unpack_from("<Q", self._prod, 0)[0]

    def wait(self, timeout: float) -> bool:
        """Sleep until a writer swapped a buffer or ``timeout`` seconds passed."""
        ring = self._epoll.poll(timeout) if timeout > 0 else self._epoll.poll(0)
        # Discard all pending doorbell records: their content is not needed.
        atomics().store(self._cons_addr, self._producer_pos(), _SEQ_CST)
        return bool(ring)

    def close(self) -> None:
        self._epoll.close()
        self._cons_addr = 0
        del self._cons_obj
        for m in (self._cons, self._prod):
            try:
                m.close()
            except BufferError:
                pass


class RingReader:
    """Reader half of one subscriber's per-CPU double buffers.

    ``buf_fd``/``state_fd``/``bell_fd`` are the subscriber's three maps;
    ``ncpu`` the number of possible CPUs the arrays were sized for;
    ``chunk_size`` as given to :func:`chunk_layout` when the maps were made.
    :meth:`over_memory` builds the same reader over memory of the caller's
    (tests: a writer in Python, no kernel).
    """

    def __init__(self, buf_fd: int, state_fd: int, bell_fd: int | None, ncpu: int,
                 buffer_size: int, cpus: list[int] | None = None,
                 chunk_size: int | None = None) -> None:
        bufs_len, state_len = map_sizes(ncpu, buffer_size, chunk_size)
        state_len = (state_len + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        bufs = mmap.mmap(buf_fd, bufs_len, mmap.MAP_SHARED, mmap.PROT_READ)
        state = mmap.mmap(state_fd, state_len, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._setup(bufs, state, ncpu, buffer_size, cpus, chunk_size)
        self._owned = (bufs, state)
        self._bell = _Doorbell(bell_fd) if bell_fd is not None else None

    @classmethod
    def over_memory(cls, bufs, state, ncpu: int, buffer_size: int,
                    cpus: list[int] | None = None,
                    chunk_size: int | None = None) -> "RingReader":
        """A reader over ``bufs`` and ``state``, laid out exactly as the two
        mapped arrays are (see :func:`map_sizes`), e.g. anonymous mmaps.

        ``state`` must be writable (the reader swaps and releases buffers
        in it with atomics). No doorbell: :meth:`wait` returns at once.
        The memory stays the caller's: :meth:`close` does not close it.
        """
        bufs_len, state_len = map_sizes(ncpu, buffer_size, chunk_size)
        if len(bufs) < bufs_len or len(state) < state_len:
            raise ValueError(f"{ncpu} CPUs of {buffer_size}-byte buffers need {bufs_len} bytes "
                             f"of buffers and {state_len} of control blocks")
        self = cls.__new__(cls)
        self._setup(bufs, state, ncpu, buffer_size, cpus, chunk_size)
        self._owned = ()
        self._bell = None
        return self

    def _setup(self, bufs, state, ncpu: int, buffer_size: int, cpus: list[int] | None,
               chunk_size: int | None) -> None:
        self.ncpu = ncpu
        self.cpus = list(cpus) if cpus is not None else list(range(ncpu))
        self.buffer_size = buffer_size
        self.chunk_size, self.chunks = chunk_layout(buffer_size, chunk_size)
        self.elem = element_size(self.chunk_size)
        self._bufs = bufs
        self._state = state
        self._state_obj = ctypes.c_char.from_buffer(state)
        self._state_addr = ctypes.addressof(self._state_obj)
        self._view = memoryview(bufs)
        self._a = atomics()
        self.bytes = 0
        self.records = 0        # records handed out by this reader
        self._busy = False      # the last drain was large: wait briefly
        self._in_flight = False  # a held buffer still had a copy in flight
        self._merged: bytearray | None = None   # the merge's output, made on first use

    # -- protocol primitives ------------------------------------------------
    def _addr(self, cpu: int, off: int) -> int:
        return self._state_addr + cpu * STATE_SIZE + off

    def reset(self) -> None:
        """Put every CPU's control block in the protocol's initial state:
        nothing reserved, buffer 0 active, swap allowed (the reader's buffer
        is empty), every counter 0. BPF array maps start zeroed, which would
        forbid the first swap; a host instance's slot (pyelog.kernel.host)
        is reset again for each new subscriber, while no filter delivers
        to it."""
        a = atomics()
        for cpu in range(self.ncpu):
            for off in range(8, STATE_SIZE, 8):
                a.store(self._addr(cpu, off), 0, _SEQ_CST)
            a.store(self._addr(cpu, _OFF_STATE), 2, _SEQ_CST)

    def state(self, cpu: int) -> tuple[int, int, int, int]:
        """(active, swap_allowed, commit_pos, reader_len) of one CPU, for tests."""
        return unpack_state(self._a.load(self._addr(cpu, _OFF_STATE), _SEQ_CST))

    def _u64(self, cpu: int, off: int) -> int:
        return self._a.load(self._addr(cpu, off), _SEQ_CST)

    def _written(self, rb: int, k: int) -> int:
        """Offset of written[rb][k] in a control block."""
        return _OFF_WRITTEN + 8 * (MAX_CHUNKS * rb + k)

    def _take(self, cpu: int) -> tuple[int, list[int]] | None:
        """Make sure this CPU's reader buffer holds data if any exists.

        Returns (reader buffer index, its chunks' ``written`` words) when a
        buffer is ready to be consumed (all its reserved bytes written),
        else None.
        """
        word = _ring.take(self._state, cpu * STATE_SIZE + _OFF_STATE)
        active, _, _, rlen = unpack_state(word)
        rb = active ^ 1
        if rlen == 0:
            return None
        written = [self._u64(cpu, self._written(rb, k)) for k in range(self.chunks)]
        # Each word only grows while copies are in flight, so equal sums
        # mean every copy is done.
        if sum(w & _LOW32 for w in written) != rlen:
            # A reserved copy is still in flight. The reader holds this
            # buffer, so writers cannot swap (nor ring) until it is taken:
            # look again soon, not after a whole timeout.
            self._in_flight = True
            return None
        return rb, written

    def _release(self, cpu: int, rb: int) -> None:
        """Reader buffer fully consumed: let writers swap into it again."""
        self._a.store(self._addr(cpu, _OFF_MIN_TS + 8 * rb), 0, _SEQ_CST)
        self._a.store(self._addr(cpu, _OFF_MAX_TS + 8 * rb), 0, _SEQ_CST)
        for k in range(self.chunks):
            self._a.store(self._addr(cpu, self._written(rb, k)), 0, _SEQ_CST)
        _ring.release(self._state, cpu * STATE_SIZE + _OFF_STATE)

    # -- draining ------------------------------------------------------------
    def wait(self, timeout: float) -> bool:
        """Block until a writer swapped a buffer (True) or timeout (False)."""
        if self._bell is None:
            return False
        return self._bell.wait(timeout)

    def read(self, timeout: float = 0.0, ordered: bool = True,
             max_rounds: int = 4) -> Iterator[memoryview]:
        """Yield contiguous runs of whole records, then release the buffers.

        Waits up to ``timeout`` seconds for a doorbell first (0: don't wait;
        at most :data:`BUSY_WAIT` when the previous drain was large), then
        drains every CPU: each round takes the ready reader buffers, yields
        their records (merged by timestamp when ``ordered``), and releases
        them, which lets writers swap again. A yielded memoryview points
        into the shared buffer and is valid only until the generator is
        resumed: write or copy it before asking for the next run.
        """
        for run, _count in self.read_counted(timeout, ordered, max_rounds):
            yield run

    def read_counted(self, timeout: float = 0.0, ordered: bool = True,
                     max_rounds: int = 4) -> Iterator[tuple[memoryview, int]]:
        """:meth:`read`, yielding ``(run, records in run)``.

        The counts come from the writers' ``written`` words (whole buffers)
        or from the merge's index (merged runs): nothing walks a run only to
        count it.
        """
        if timeout > 0:
            self.wait(min(timeout, BUSY_WAIT) if self._busy else timeout)
        before = self.bytes
        self._in_flight = False
        try:
            for _ in range(max_rounds):
                batch = []
                for cpu in self.cpus:
                    got = self._take(cpu)
                    if got is not None:
                        batch.append((cpu, *got))
                if not batch:
                    return
                try:
                    for run, n in self._runs(batch, ordered):
                        self.bytes += len(run)
                        self.records += n
                        yield run, n
                finally:
                    for cpu, rb, _ in batch:
                        self._release(cpu, rb)
        finally:
            self._busy = self._in_flight or self.bytes - before >= self.buffer_size // 8

    def _regions(self, cpu: int, rb: int, written: list[int]) -> list[tuple[int, int, int]]:
        """(start, end, records) in the mapping of each chunk's records."""
        base = (cpu * 2 + rb) * self.chunks * self.elem
        out = []
        begin = 0       # where chunk k's first record starts, inside chunk k
        for k, w in enumerate(written):
            nbytes = w & _LOW32
            if not nbytes:
                break
            start = base + k * self.elem + begin
            out.append((start, start + nbytes, w >> 32))
            # The last record may run past the chunk's end, into its slack;
            # the next chunk's records begin where it ended.
            begin += nbytes - self.chunk_size
        return out

    def _runs(self, batch: list[tuple[int, int, list[int]]],
              ordered: bool) -> Iterator[tuple[memoryview, int]]:
        view = self._view
        spans = []
        for cpu, rb, written in batch:
            lo = self._u64(cpu, _OFF_MIN_TS + 8 * rb)
            hi = self._u64(cpu, _OFF_MAX_TS + 8 * rb)
            spans.append((lo, hi, cpu, self._regions(cpu, rb, written)))
        spans.sort()
        disjoint = all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
        if not ordered or disjoint:
            for _, _, _, regions in spans:
                for start, end, n in regions:
                    yield view[start:end], n
            return
        # Chunks of one buffer are merged as separate sequences: each is in
        # order, and together they are the buffer's.
        yield from self._merge([[start, end] for *_, regions in spans
                                for start, end, _ in regions])

    def _merge(self, seqs: list[list[int]]) -> Iterator[tuple[memoryview, int]]:
        """Merge ordered sequences ([start, end) in the mapping) by timestamp.

        The merge itself is C (pyelog/kernel/_ring.c): it looks at every
        record, which Python could do only a few million times a second.
        It fills :data:`MERGE_OUT` bytes at a time, so memory stays flat
        whatever the number of CPUs and buffer size.
        """
        if self._merged is None:
            self._merged = bytearray(MERGE_OUT)
        out = memoryview(self._merged)
        while True:
            try:
                nbytes, n = _ring.merge(self._bufs, seqs, self._merged)
            except ValueError as e:
                raise RingCorrupt(str(e)) from None
            if not nbytes:
                return
            yield out[:nbytes], n

    def stats(self) -> RingStats:
        """Drop/oversize/swap counters summed over CPUs, plus reader totals."""
        st = RingStats(bytes=self.bytes)
        for cpu in range(self.ncpu):
            st.dropped += self._u64(cpu, _OFF_DROPPED)
            st.oversized += self._u64(cpu, _OFF_OVERSIZED)
            st.swaps += self._u64(cpu, _OFF_SWAPS)
        return st

    def per_cpu_dropped(self) -> list[int]:
        """Exact drop counter of each CPU."""
        return [self._u64(cpu, _OFF_DROPPED) for cpu in range(self.ncpu)]

    def close(self) -> None:
        """Unmap everything (views still held by callers keep their map alive).

        Memory given to :meth:`over_memory` is only let go of, not closed.
        """
        if self._bell is not None:
            self._bell.close()
            self._bell = None
        self._state_addr = 0
        self._state_obj = None
        try:
            self._view.release()
        except BufferError:
            pass
        for m in self._owned:
            try:
                m.close()
            except BufferError:
                pass


def iter_records(buf: bytes | memoryview) -> Iterator[tuple[tuple, memoryview]]:
    """Walk whole records: yields (header tuple, payload view). Per-event: use for decoding only.

    Unlike :func:`pyelog.records.format.iter_records` (whole
    :class:`~pyelog.records.format.Record` objects over one copy of the
    buffer), nothing is copied: the payload views point into ``buf`` (for a
    run from :meth:`RingReader.read`, into the ring itself, valid only until
    the reader resumes), and a record length below the header size or past
    the end raises :class:`RingCorrupt`.
    """
    mv = memoryview(buf)
    off, end = 0, len(mv)
    unpack = EVENT_HEADER.unpack_from
    size = EVENT_HEADER.size
    while off + size <= end:
        hdr = unpack(mv, off)
        ln = hdr[0]
        if ln < size or off + ln > end:
            raise RingCorrupt(f"bad record length {ln} at offset {off}")
        yield hdr, mv[off + size:off + ln]
        off += ln
