# SPDX-License-Identifier: BSD-2-Clause
"""``pyelog selftest``: the core checks, run against the running kernel.

One line per check (``ok``/``FAIL``), then ``selftest: N passed, M failed``;
exit status 0 only when every check passed. Without root or bcc: one line,
exit 1.
"""
from __future__ import annotations

import os
import struct
import sys
import time
import warnings
from typing import Callable

B128K = 128 * 1024


def _records(sub) -> list[tuple[tuple, bytes]]:
    from pyelog.kernel.ring import iter_records
    return [(h, bytes(p)) for run in sub.drain(0) for h, p in iter_records(run)]


def check_load_16_subscribers() -> None:
    from pyelog.kernel.loader import Loader, Subscription
    from pyelog.providers import test as tp
    L = Loader([tp.provider()])
    subs = [L.add_ring_subscriber(65536, [Subscription("test", 5, 0xFFFFFFFF)]) for _ in range(16)]
    with L:
        d = tp.TestDriver(L, L.providers[0])
        d.create_session(1)
        d.emit(1, tp.SIMPLE, 3, 0)
        counts = [len(_records(s)) for s in subs]
        assert counts == [4] * 16, counts


def _fill_and_exact_drops(chunk_size: int | None) -> None:
    from pyelog.kernel.loader import Loader, Subscription
    from pyelog.records.eventlog import SESSION_CREATE_ID
    from pyelog.providers import test as tp
    L = Loader([tp.provider()])
    sub = L.add_ring_subscriber(B128K, [Subscription("test", 5, 0xFFFFFFFF)],
                                chunk_size=chunk_size)
    with L:
        d = tp.TestDriver(L, L.providers[0])
        per = B128K // 36
        d.create_session(1, cpu=0)
        d.emit(1, tp.SIMPLE, per, 0, cpu=0)
        assert sub.reader.state(0)[2] == B128K, "first buffer not exactly full"
        d.emit(1, tp.SIMPLE, 1, per, cpu=0)
        assert sub.stats().dropped == 0 and sub.stats().swaps == 1, "proactive swap lost events"
        d.emit(1, tp.SIMPLE, per - 1, per + 1, cpu=0)
        assert sub.stats().dropped == 0
        d.emit(1, tp.SIMPLE, 7, 2 * per, cpu=0)
        assert sub.stats().dropped == 7, f"dropped {sub.stats().dropped}, expected 7"
        recs = _records(sub)
        assert recs[0][0][6] == SESSION_CREATE_ID
        seqs = [struct.unpack("<I", p)[0] for _, p in recs[1:]]
        assert seqs == list(range(2 * per)), "records lost or reordered"


def check_fill_and_exact_drops() -> None:
    _fill_and_exact_drops(None)


def check_chunked_fill_and_exact_drops() -> None:
    # Buffers above 256 MiB are split into chunks; 64 KiB chunks put the
    # same protocol (and a record crossing a chunk end) on 128 KiB buffers.
    _fill_and_exact_drops(65536)


def check_two_cpus() -> None:
    from pyelog.kernel.loader import Loader, Subscription
    from pyelog.records.eventlog import SESSION_CREATE_ID
    from pyelog.providers import test as tp
    from pyelog.kernel.ring import iter_records
    cpus = sorted(os.sched_getaffinity(0))[:2]
    L = Loader([tp.provider()])
    sub = L.add_ring_subscriber(256 * 1024, [Subscription("test", 5, 0xFFFFFFFF)])
    with L:
        d = tp.TestDriver(L, L.providers[0])
        got: dict[int, set[int]] = {}
        bad = []

        def consume() -> None:
            for run in sub.drain(0.05):
                for h, p in iter_records(run):
                    if h[6] == SESSION_CREATE_ID:
                        continue
                    if h[0] != 36:
                        bad.append(h)
                    s = got.setdefault(h[5], set())
                    v = struct.unpack("<I", p)[0]
                    if v in s:
                        bad.append(("dup", h))
                    s.add(v)

        for i in range(len(cpus)):
            d.create_session(i + 1)
        counts = d.emit_racing({i + 1: cpu for i, cpu in enumerate(cpus)}, tp.SIMPLE, 1.5, consume)
        assert not bad, f"corrupt or duplicated records: {bad[:3]}"
        received = sum(len(s) for s in got.values())
        emitted = sum(counts.values())
        for sid, s in got.items():
            assert s <= set(range(counts[sid])), "unknown sequence numbers"
        assert emitted == received + sub.stats().dropped, \
            f"emitted {emitted} != received {received} + dropped {sub.stats().dropped}"


def check_filters() -> None:
    from pyelog.kernel.loader import Loader, Subscription
    from pyelog.providers import test as tp
    L = Loader([tp.provider()])
    a = L.add_ring_subscriber(65536, [Subscription("test", 3, 0x1)])
    L.add_ring_subscriber(65536, [Subscription("test", 2, 0x2)])
    with L:
        p = L.providers[0]
        d = tp.TestDriver(L, p)
        assert L.provider_filter(p) == (3, 0x3), L.provider_filter(p)
        d.create_session(1)
        d.emit(1, tp.SIMPLE, 1, 0)
        d.emit(1, tp.FLAGS, 1, 0)
        d.emit(1, tp.COMPLEX, 1, 0)
        assert [h[6] for h, _ in _records(a)] == [0], "level/keyword filter"
        L.unsubscribe(a, "test")
        assert L.provider_filter(p) == (2, 0x2)
        L.unsubscribe(L.subscribers[1], "test")
        assert L.provider_filter(p) == (0, 0)


def check_unsubscribed_silent() -> None:
    from pyelog.kernel.loader import Loader
    from pyelog.providers import test as tp
    L = Loader([tp.provider()])
    sub = L.add_ring_subscriber(65536)
    with L:
        d = tp.TestDriver(L, L.providers[0])
        d.create_session(1)
        d.emit(1, tp.SIMPLE, 500, 0, gated=True)
        d.emit(1, tp.SIMPLE, 500, 0)
        assert _records(sub) == [] and sub.stats().dropped == 0


def check_teardown() -> None:
    from pyelog.kernel.bpf import programs_held
    from pyelog.kernel.loader import Loader
    from pyelog.providers import test as tp
    L = Loader([tp.provider(getppid_hook=True)])
    L.add_ring_subscriber(65536)
    before = programs_held(os.getpid())
    L.start()
    mine = programs_held(os.getpid()) - before
    assert mine, "no programs loaded"
    L.close()
    left = programs_held(os.getpid()) & mine
    assert not left, f"programs still held after close(): {sorted(left)}"


CHECKS: list[tuple[str, Callable[[], None]]] = [
    ("load: core + test provider with 16 subscribers", check_load_16_subscribers),
    ("ring: fill to capacity, proactive swap, exact drop count", check_fill_and_exact_drops),
    ("ring: the same with buffers split into chunks", check_chunked_fill_and_exact_drops),
    ("ring: two CPUs at full speed, emitted = received + dropped", check_two_cpus),
    ("filters: level/keyword matrix and aggregation", check_filters),
    ("providers: unsubscribed provider emits nothing", check_unsubscribed_silent),
    ("teardown: close() releases every program", check_teardown),
]


def main(argv: list[str]) -> int:
    """Run every check; 0 only if all pass."""
    from pyelog.kernel.bpf import unavailable_reason
    reason = unavailable_reason()
    if reason:
        print(f"selftest: {reason}", file=sys.stderr)
        return 1
    warnings.simplefilter("ignore", DeprecationWarning)   # bcc's str-vs-bytes noise
    passed = failed = 0
    for name, fn in CHECKS:
        t0 = time.monotonic()
        try:
            fn()
        except Exception as e:  # a check failing must not stop the others
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}".splitlines()[0], flush=True)
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - t0:.1f}s)", flush=True)
    print(f"selftest: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
