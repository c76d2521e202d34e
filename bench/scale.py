# SPDX-License-Identifier: BSD-2-Clause
"""Benchmark 5, scale: the reader's cost per event as CPUs grow.

The reader half of the ring (pyelog.kernel.ring.RingReader, exactly as a
capture runs it: take each CPU's buffer by CAS, merge by timestamp, release)
over synthetic per-CPU buffers in user space, laid out as the BPF maps are
(RingReader.over_memory), for 1, 2, 8, 32, 64 and 128 CPUs. Every CPU's
buffer is full (default 512 KiB, 40-byte records) and the timestamps are
interleaved round-robin across CPUs (record i of CPU c at i*ncpu + c), the
worst case for a merge: every run it copies is one record long. Between
drains the control blocks are set back to "full, ready" (not timed).

Per CPU count: events/s and ns/event of the drains, and ns/event divided
by log2(CPUs), which stays flat if the cost grows as log(CPUs).

Sessions (root, BPF): a recorder (Loader, test provider, one ring
subscriber) with ``--max-sessions`` N for N = 10 k, 100 k and 1 M, the
table filled with N sessions, then events emitted one per
BPF_PROG_TEST_RUN of test_ctl, each on a session drawn at random from the
N (the session lookup misses the CPU caches as a busy server's would),
drained as they come. Per N: the producer's ns per event (BPF run time,
BPF_ENABLE_STATS, over the same with 1 session), the kernel memory of the
recorder's maps (memlock in fdinfo) and its own RSS; exact accounting
(emitted = received + dropped) is checked.

Result line: ``scale: cpus1=<events/s> ... ns1=<ns/event> ...
sess_ns_1=.. sess_ns_10k=.. ... map_mib_1m=.. rss_mib_1m=.. ratio=<slowest
events/s / 20 M>`` (>= 1: every CPU count meets the 20 M events/s target).
"""
from __future__ import annotations

import argparse
import math
import mmap
import os
import random
import statistics
import struct
import time

from common import enable_bpf_stats, note, prog_runtime, result, rss_kib
from pyelog.kernel import ring
from pyelog.kernel.ring import RingReader

RECORD = 40
TARGET = 20e6


class SyntheticRings:
    """``ncpu`` full buffers (buffer 0 of each CPU) with interleaved timestamps."""

    def __init__(self, ncpu: int, buffer_size: int) -> None:
        bufs_len, state_len = ring.map_sizes(ncpu, buffer_size)
        self.bufs = mmap.mmap(-1, bufs_len)
        self.state = mmap.mmap(-1, state_len)
        self.ncpu = ncpu
        self.per_cpu = buffer_size // RECORD
        elem = ring.element_size(ring.chunk_layout(buffer_size)[0])
        # header: length, cpu, provider, pad, timestamp, session, event id, pad; then 8 bytes
        rec = struct.Struct("<HHHHQQII8x")
        for cpu in range(ncpu):
            base = cpu * 2 * elem                  # buffer 0, chunk 0 of this CPU
            image = bytearray(self.per_cpu * RECORD)
            for i in range(self.per_cpu):
                rec.pack_into(image, i * RECORD, RECORD, cpu, 1, 0, i * ncpu + cpu + 1, 7, 1, 0)
            self.bufs[base:base + len(image)] = image
        self.reader = RingReader.over_memory(self.bufs, self.state, ncpu, buffer_size)
        self.bytes = self.per_cpu * RECORD

    def refill(self) -> None:
        """Every CPU: buffer 0 active and full, the reader's buffer drained."""
        a = ring.atomics()
        n = self.per_cpu
        for cpu in range(self.ncpu):
            at = self.reader._addr
            a.store(at(cpu, ring._OFF_WRITTEN), n << 32 | self.bytes, 5)
            a.store(at(cpu, ring._OFF_MIN_TS), cpu + 1, 5)
            a.store(at(cpu, ring._OFF_MAX_TS), (n - 1) * self.ncpu + cpu + 1, 5)
            a.store(at(cpu, ring._OFF_STATE), self.bytes << 2 | 2, 5)

    def drain(self) -> tuple[int, int]:
        """One drain as the capture loop does it: (records, bytes) handed out."""
        records = nbytes = 0
        for run, n in self.reader.read_counted(0):
            records += n
            nbytes += len(run)
        return records, nbytes

    def close(self) -> None:
        self.reader.close()
        self.bufs.close()
        self.state.close()


def measure(ncpu: int, buffer_size: int, min_seconds: float) -> float:
    """Events/s of full drains of ``ncpu`` interleaved buffers: the median
    drain of those run in ``min_seconds`` (at least 5), so that a moment
    when this shared machine lends the CPU elsewhere does not decide it."""
    rings = SyntheticRings(ncpu, buffer_size)
    try:
        rings.refill()
        rings.drain()                               # warm: the merge buffer made, pages touched
        times = []
        while sum(times) < min_seconds or len(times) < 5:
            rings.refill()
            t0 = time.perf_counter()
            records, nbytes = rings.drain()
            times.append(time.perf_counter() - t0)
            if records != ncpu * rings.per_cpu or nbytes != ncpu * rings.bytes:
                raise SystemExit(f"scale: {ncpu} CPUs: drained {records} records, "
                                 f"expected {ncpu * rings.per_cpu}")
        return ncpu * rings.per_cpu / statistics.median(times)
    finally:
        rings.close()


def map_memory(pid: int | str = "self") -> int:
    """Bytes of kernel memory (memlock) of every BPF map the process holds."""
    total = 0
    fds = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fds):
        try:
            with open(os.path.join(fds, fd)) as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if "map_type" in info:
            total += int(info.get("memlock", "0").strip())
    return total


def sessions_cost(n: int, events: int) -> dict[str, float]:
    """A recorder sized for and holding ``n`` sessions: ns per event (BPF
    run time of test_ctl, one event per run, on random sessions), its map
    memory and RSS."""
    from pyelog.kernel.loader import LEVEL_TRACE, Loader, Subscription
    from pyelog.providers import test as tp

    L = Loader([tp.provider()], max_sessions=n)
    sub = L.add_ring_subscriber(ring.BUFFER_SIZE_DEFAULT,
                                [Subscription("test", LEVEL_TRACE, 0xFFFFFFFF)])
    received = 0
    with L:
        d = tp.TestDriver(L, L.providers[0])
        for sid in range(1, n + 1):
            d.create_session(sid)
            if sid % 8192 == 0:
                received += sum(k for _, k in sub.drain_counted(0))
        rng = random.Random(n)
        sids = [rng.randrange(1, n + 1) for _ in range(events)]
        ns0, runs0 = prog_runtime(d.fd)
        for i, sid in enumerate(sids):
            d.emit(sid)
            if i % 8192 == 8191:
                received += sum(k for _, k in sub.drain_counted(0))
        ns1, runs1 = prog_runtime(d.fd)
        received += sum(k for _, k in sub.drain_counted(0))
        dropped = sub.stats().dropped + L.provider_lost()
        if n + events != received + dropped or L.sessions_failed():
            raise SystemExit(f"scale: {n} sessions: emitted {n + events} != received {received} "
                             f"+ dropped {dropped} (sessions refused: {L.sessions_failed()})")
        mem = map_memory()
        rss = rss_kib(os.getpid()) * 1024
    return {"ns": (ns1 - ns0) / max(runs1 - runs0, 1), "map": mem, "rss": rss}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", default="1,2,8,32,64,128")
    ap.add_argument("-b", "--buffer-size", type=int, default=ring.BUFFER_SIZE_DEFAULT)
    ap.add_argument("--seconds", type=float, default=1.0, help="drain time per CPU count")
    ap.add_argument("--sessions", default="10000,100000,1000000",
                    help="session counts (needs root and BPF; empty: skip)")
    ap.add_argument("--events", type=int, default=200_000, help="events per session count")
    a = ap.parse_args()
    figures: dict[str, float] = {}
    rates = []
    for ncpu in (int(x) for x in a.cpus.split(",")):
        rate = measure(ncpu, a.buffer_size, a.seconds)
        ns = 1e9 / rate
        per_log = ns / math.log2(ncpu) if ncpu > 1 else float("nan")
        note(f"reader {ncpu:3d} CPUs: {rate / 1e6:6.1f} M events/s, {ns:5.1f} ns/event"
             + (f", {per_log:4.1f} ns per log2(CPUs)" if ncpu > 1 else " (one buffer: no merge)"))
        figures[f"cpus{ncpu}"] = rate
        figures[f"ns{ncpu}"] = ns
        rates.append(rate)
    if a.sessions:
        stats_fd = enable_bpf_stats()
        if stats_fd is None:
            raise SystemExit("scale: BPF_ENABLE_STATS refused (root needed)")
        base = sessions_cost(1, a.events)
        figures["sess_ns_1"] = base["ns"]
        note(f"producer, 1 session: {base['ns']:.0f} ns/event (BPF run time per test_ctl run)")
        for n in (int(x) for x in a.sessions.split(",")):
            c = sessions_cost(n, a.events)
            tag = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}m"
            note(f"producer, {n:>9,} sessions: {c['ns']:.0f} ns/event ({c['ns'] / base['ns']:.2f}x 1 session), "
                 f"recorder maps {c['map'] / 2**20:.0f} MiB ({(c['map'] - base['map']) / n:.0f} B per session), "
                 f"RSS {c['rss'] / 2**20:.0f} MiB")
            figures[f"sess_ns_{tag}"] = c["ns"]
            figures[f"map_mib_{tag}"] = c["map"] / 2**20
            figures[f"rss_mib_{tag}"] = c["rss"] / 2**20
        os.close(stats_fd)
    result("scale", **figures, ratio=min(rates) / TARGET)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
