# SPDX-License-Identifier: BSD-2-Clause
"""The recorder under test, as its own process: pyelog's live-capture loop.

    record.py --provider test --getppid-tgid PID [-o FILE] [-b BYTES]
    record.py --provider tcp --level INFO [-o FILE]

Builds a Loader with one ring subscriber (test provider: and session 1),
prints ``ready pid=<pid> prog_id=<test_ctl id>`` once every probe is
attached (bench/drivers/testrun_loop.c drives test_ctl by that id), then runs the same loop as ``pyelog -c ... -o FILE``
(pyelog/tools/capture.py: ``drain_counted(timeout=1.0)`` -> ``ElogWriter.write_records(run, n)``)
at the nice value ``pyelog -c`` takes (``--nice``, default -10 as root),
until SIGTERM/SIGINT, drains what is left and prints one line::

    written=N dropped=N emitted=N bytes=N swaps=N maxrss_kib=N

(``--bpf-stats`` adds ``prog_ns``: ns per run of its busiest BPF program.)
``--bpf-stats`` also gives ``bpf_ns``, the run time of all its programs
(the kernel-side cost), and ``cpu_s`` is the recorder process's own CPU
time (user + system) from ``ready`` on. ``emitted`` (test provider) is the getppid hook's sequence counter (every
call that reached the emit path) plus the one SESSION_CREATE; add what a
batch driver emitted, and ``emitted == written + dropped`` checks exact
accounting. ``--drain-log`` times every pass of the loop and adds to that
line where the drops happened (see :class:`DrainLog`).
"""
from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import warnings  # noqa: E402
warnings.filterwarnings("ignore", category=DeprecationWarning)   # bcc str->bytes noise

from common import busiest_prog_ns, enable_bpf_stats, prog_id, total_prog_ns  # noqa: E402
from pyelog.records.format import ElogWriter  # noqa: E402
from pyelog.kernel.loader import LEVELS, Loader, Subscription  # noqa: E402
from pyelog.kernel.ring import BUFFER_SIZE_DEFAULT  # noqa: E402
try:
    from pyelog.tools.capture import draining_at, reader_nice  # noqa: E402
except ImportError:                     # an older pyelog tree: drains at the caller's nice
    import contextlib

    def reader_nice(requested):
        return None

    def draining_at(nice):
        return contextlib.nullcontext()


class DrainLog:
    """Where drops happen: after the reader was away, or while it was busy.

    Each pass of the loop is timed: the wait (off until the ring has
    buffers, normally at most the 1 ms doorbell timeout) up to the first
    run handed out, then the drain (merge, copies and the writer's
    ``write(2)``) with its CPU time and the part spent in
    ``write_records``. The drops counted by the end of a pass are charged
    to its wait when that was longer than ``slow`` (the reader was off-CPU
    or asleep), else to a drain longer than that, its own or the one
    before (which held buffers while the producers filled the others),
    else to neither ("other").
    """

    def __init__(self, slow: float = 0.003) -> None:
        self.slow = slow
        self.rows: list[tuple[float, float, float, float, int]] = []   # wait, drain, cpu, write, drops
        self._dropped = 0

    def record(self, wait: float, drain: float, cpu: float, write: float, dropped: int) -> None:
        """One pass; ``dropped``: the ring's drop counter at its end."""
        self.rows.append((wait, drain, cpu, write, dropped - self._dropped))
        self._dropped = dropped

    def figures(self) -> dict[str, float]:
        """Where the drops happened, and the waits and drains, in ms."""
        after_gap = after_drain = other = 0
        drain_write = drain_cpu = drain_wall = 0.0
        prev = None
        for row in self.rows:
            wait, _, _, _, drops = row
            long = [r for r in (prev, row) if r is not None and r[1] > self.slow]
            if drops and wait > self.slow:
                after_gap += drops
            elif drops and long:
                after_drain += drops
                drain_wall += sum(r[1] for r in long)
                drain_cpu += sum(r[2] for r in long)
                drain_write += sum(r[3] for r in long)
            else:
                other += drops
            prev = row
        waits = sorted(r[0] for r in self.rows) or [0.0]
        drains = sorted(r[1] for r in self.rows) or [0.0]
        ms = 1e3
        return {"passes": len(self.rows), "wait_p99_ms": ms * waits[len(waits) * 99 // 100],
                "wait_max_ms": ms * waits[-1], "drain_p99_ms": ms * drains[len(drains) * 99 // 100],
                "drain_max_ms": ms * drains[-1], "drops_after_wait": after_gap,
                "drops_in_long_drains": after_drain, "drops_other": other,
                "long_drains_ms": ms * drain_wall, "long_drains_cpu_ms": ms * drain_cpu,
                "long_drains_write_ms": ms * drain_write}


def drain_pass(sub, writer, log: DrainLog | None) -> None:
    """One pass of pyelog -c's loop: wait, drain, write (timed with ``log``)."""
    if log is None:
        for run, n in sub.drain_counted(timeout=1.0):
            writer.write_records(run, n)
        return
    t0 = time.perf_counter()
    cpu0 = time.thread_time()
    first = None
    write = 0.0
    for run, n in sub.drain_counted(timeout=1.0):
        t = time.perf_counter()
        first = first or t
        writer.write_records(run, n)
        write += time.perf_counter() - t
    if first is not None:
        log.record(first - t0, time.perf_counter() - first, time.thread_time() - cpu0, write,
                   sub.stats().dropped)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--provider", choices=("test", "tcp"), default="test")
    ap.add_argument("--level", default="VERBOSE")
    ap.add_argument("--getppid-tgid", type=int, default=0,
                    help="test provider: emit one SIMPLE_EVENT per getppid() of this process")
    ap.add_argument("-o", "--output", default="/dev/null")
    ap.add_argument("-b", "--buffer-size", type=int, default=BUFFER_SIZE_DEFAULT)
    ap.add_argument("--nice", type=int, default=None,
                    help="drain at this nice value (default: as pyelog -c, -10 where allowed)")
    ap.add_argument("--drain-log", action="store_true",
                    help="time every drain; add where the drops happened to the last line")
    ap.add_argument("--bpf-stats", action="store_true",
                    help="count BPF run time; print prog_ns (ns per run of the busiest program) "
                         "and bpf_ns (run time of all its programs)")
    a = ap.parse_args()
    stats_fd = enable_bpf_stats() if a.bpf_stats else None

    if a.provider == "test":
        from pyelog.providers import test
        spec = test.provider(getppid_hook=True)
    else:
        from pyelog.providers import tcp
        spec = tcp.provider()
    loader = Loader(providers=[spec])
    sub = loader.add_ring_subscriber(a.buffer_size,
                                     [Subscription(a.provider, LEVELS[a.level.upper()])])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    emitted = -1
    with loader:
        driver = None
        ctl_id = 0
        if a.provider == "test":
            from pyelog.providers.test import TestDriver
            driver = TestDriver(loader, loader.providers[0])
            driver.create_session(1)                  # one SESSION_CREATE record
            ctl_id = prog_id(driver.fd)               # for bench/drivers/testrun_loop
            if a.getppid_tgid:
                driver.arm_getppid(1, tgid=a.getppid_tgid)
        writer = ElogWriter(a.output, sub.providers())
        print(f"ready pid={os.getpid()} prog_id={ctl_id}", flush=True)
        ready = resource.getrusage(resource.RUSAGE_SELF)      # CPU of the compile excluded
        # The loop of pyelog/tools/capture.py, unchanged in substance, at
        # the nice value a capture drains at.
        with draining_at(reader_nice(a.nice)):
            log = DrainLog() if a.drain_log else None
            while not stop:
                drain_pass(sub, writer, log)
                if hasattr(loader, "housekeeping"):   # (also run against older pyelog trees)
                    loader.housekeeping()
        if driver is not None:
            emitted = driver.disarm_getppid() + 1
        if hasattr(loader, "housekeeping"):
            loader.housekeeping(final=True)
        for run, n in sub.drain_counted(timeout=0):
            writer.write_records(run, n)
        st = sub.stats()
        where = "" if log is None else " " + " ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in log.figures().items())
        writer.close(dropped_events=st.dropped)
        funcs = loader.bpf.funcs.values()
        prog_ns = busiest_prog_ns(funcs) if stats_fd is not None else 0.0
        bpf_ns = total_prog_ns(funcs) if stats_fd is not None else 0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"written={writer.event_count} dropped={st.dropped} emitted={emitted} "
          f"bytes={writer.bytes_written} swaps={st.swaps} prog_ns={prog_ns:.1f} "
          f"bpf_ns={bpf_ns} cpu_s={ru.ru_utime + ru.ru_stime - ready.ru_utime - ready.ru_stime:.3f} "
          f"maxrss_kib={ru.ru_maxrss}{where}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
